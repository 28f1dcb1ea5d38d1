//! `LeaseAttrs::parse` on arbitrary etcd values: never panics, and a value it
//! accepts writes back as JSON that parses to equal attributes.

use crate::config::LeaseAttrs;

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let Ok(attrs) = LeaseAttrs::parse(data) else {
        return;
    };
    let text = attrs.to_json();
    let again = LeaseAttrs::parse(text.as_bytes()).expect("to_json output parses");
    assert_eq!(again, attrs, "{text}");
}
