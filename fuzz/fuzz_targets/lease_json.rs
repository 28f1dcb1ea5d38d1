//! `LeaseAttrs::parse` on arbitrary etcd values: never panics, and a value it
//! accepts writes back as JSON that parses to equal attributes.
#![no_main]

use ringlay::config::LeaseAttrs;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(attrs) = LeaseAttrs::parse(data) else {
        return;
    };
    let text = attrs.to_json();
    let again = LeaseAttrs::parse(text.as_bytes()).expect("to_json output parses");
    assert_eq!(again, attrs, "{text}");
});
