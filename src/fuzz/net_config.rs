//! `NetworkConfig::parse` on arbitrary text: never panics, and a config it accepts
//! serializes to text that parses back to an equal config.

use crate::config::NetworkConfig;

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let Ok(cfg) = NetworkConfig::parse_bytes(data) else {
        return;
    };
    let text = cfg.to_json();
    let again = NetworkConfig::parse(&text).expect("to_json output parses");
    assert_eq!(again, cfg, "{text}");
}
