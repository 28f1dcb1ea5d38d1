//! `SubnetKey` parsing on arbitrary key text: never panics, and a key it accepts
//! formats to text that parses back to an equal key.

use crate::config::SubnetKey;

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(key) = text.parse::<SubnetKey>() else {
        return;
    };
    let formatted = key.to_string();
    let again: SubnetKey = formatted.parse().expect("Display output parses");
    assert_eq!(again, key, "{formatted}");
}
