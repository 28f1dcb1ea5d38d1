//! Reading JSON objects the way Go's `encoding/json` fills a struct: keys match
//! case-insensitively, unknown keys are ignored, and every type error names the
//! field, shows the value and says what would be accepted.

use serde_json::{Map, Value};

use crate::{Error, Result};

/// The largest network config or lease value ringlay parses, in bytes.
///
/// Real values are a few hundred bytes; the cap bounds the work a hostile or
/// corrupt etcd value can cause (etcd itself allows values of 1.5 MiB).
pub const MAX_DOCUMENT_LEN: usize = 64 * 1024;

/// The longest value text an error message repeats.
const SHOW_LEN: usize = 80;

/// Checks size and encoding, then parses `bytes` as a JSON object.
pub(super) fn parse_object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>> {
    if bytes.len() > MAX_DOCUMENT_LEN {
        return Err(Error::TooLarge {
            what,
            len: bytes.len(),
            limit: MAX_DOCUMENT_LEN,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|source| Error::NotUtf8 { what, source })?;
    match serde_json::from_str(text).map_err(|source| Error::Json { what, source })? {
        Value::Object(map) => Ok(map),
        other => Err(Error::invalid(what, show(&other), "a JSON object")),
    }
}

/// `key`'s value in `obj`: an exact match first, else the first key equal to it
/// ignoring ASCII case (as Go's `encoding/json` matches). `null` counts as absent.
pub(super) fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    let value = obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })?;
    (!value.is_null()).then_some(value)
}

/// A string field; `field` is its full name for errors, `expected` what it should hold.
pub(super) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    field: &str,
    expected: &str,
) -> Result<Option<&'a str>> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Error::invalid(field, show(other), expected)),
    }
}

/// A non-negative integer field.
pub(super) fn opt_u64(
    obj: &Map<String, Value>,
    key: &str,
    field: &str,
    expected: &str,
) -> Result<Option<u64>> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| Error::invalid(field, show(v), expected)),
    }
}

/// A boolean field.
pub(super) fn opt_bool(obj: &Map<String, Value>, key: &str, field: &str) -> Result<Option<bool>> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(Error::invalid(field, show(other), "true or false")),
    }
}

/// A value as an error message shows it: strings without their quotes, anything
/// else as compact JSON; long values are clipped.
pub(super) fn show(value: &Value) -> String {
    match value {
        Value::String(s) => clip(s),
        other => clip(&other.to_string()),
    }
}

/// `s`, cut to a length an error message can carry.
pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(SHOW_LEN) {
        None => s.to_owned(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(text: &str) -> Map<String, Value> {
        parse_object(text.as_bytes(), "test").expect("test documents are JSON objects")
    }

    #[test]
    fn keys_match_ignoring_case_exact_first() {
        let o = obj(r#"{"network":"a","NETWORK":"b"}"#);
        assert!(get(&o, "Network").is_some());
        let o = obj(r#"{"network":"a","Network":"b"}"#);
        assert_eq!(get(&o, "Network"), Some(&Value::from("b")));
    }

    #[test]
    fn null_is_absent() {
        assert_eq!(get(&obj(r#"{"Port":null}"#), "Port"), None);
    }

    #[test]
    fn refuses_oversized_non_utf8_and_non_objects() {
        let big = vec![b' '; MAX_DOCUMENT_LEN + 1];
        let err = parse_object(&big, "lease value").expect_err("over the cap");
        assert!(matches!(err, Error::TooLarge { len, .. } if len == MAX_DOCUMENT_LEN + 1));
        let err = parse_object(b"{\"a\":\"\xff\"}", "lease value").expect_err("not UTF-8");
        assert!(matches!(err, Error::NotUtf8 { .. }), "{err}");
        let err = parse_object(b"[1]", "lease value").expect_err("not an object");
        assert!(err.to_string().contains("a JSON object"), "{err}");
        let err = parse_object(b"{", "lease value").expect_err("truncated");
        assert!(matches!(err, Error::Json { .. }), "{err}");
    }

    #[test]
    fn clip_cuts_on_char_boundaries() {
        let long = "é".repeat(200);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), SHOW_LEN + 1);
        assert_eq!(clip("short"), "short");
    }
}
