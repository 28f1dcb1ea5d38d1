//! The `kube_node` fuzz target: the body is [`ringlay::fuzz::kube_node::run`], where the
//! input format and what is checked are documented, so that the unit test
//! replaying the committed inputs (tests/fuzz_regressions.rs) runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringlay::fuzz::kube_node::run(data));
