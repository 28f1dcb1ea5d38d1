//! `SubnetKey` parsing on arbitrary key text: never panics, and a key it accepts
//! formats to text that parses back to an equal key.
#![no_main]

use ringlay::config::SubnetKey;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(key) = text.parse::<SubnetKey>() else {
        return;
    };
    let formatted = key.to_string();
    let again: SubnetKey = formatted.parse().expect("Display output parses");
    assert_eq!(again, key, "{formatted}");
});
