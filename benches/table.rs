//! Criterion benches for `table` (in progress).
fn main() {}
