//! Criterion benches for `checksum` (in progress).
fn main() {}
