//! The `ringlay` command.
fn main() {}
