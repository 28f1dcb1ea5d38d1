//! Criterion benches for `encap` (in progress).
fn main() {}
