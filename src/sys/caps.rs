//! Capabilities of this process, read from `/proc/self/status` (proc(5)), so
//! that a missing privilege is reported up front rather than as an `EPERM` from
//! the first ioctl.

use std::fs;

/// The `CAP_NET_ADMIN` bit (include/uapi/linux/capability.h): creating TUN
/// devices, configuring interfaces, forcing socket buffer sizes.
pub const CAP_NET_ADMIN: u32 = 12;

/// The effective capability set in the text of `/proc/<pid>/status`: the hex
/// value of its `CapEff:` line, or `None` if there is no well-formed one.
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|value| u64::from_str_radix(value.trim(), 16).ok())
}

/// Whether this process has capability `bit` in its effective set. `false` if
/// the set cannot be read.
pub fn has_capability(bit: u32) -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_cap_eff)
        .is_some_and(|caps| bit < 64 && caps & (1 << bit) != 0)
}

/// Whether this process may create TUN devices and configure interfaces.
pub fn has_cap_net_admin() -> bool {
    has_capability(CAP_NET_ADMIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unprivileged_status() {
        let root = "Name:\tringlay\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                    CapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n";
        let caps = parse_cap_eff(root).expect("CapEff line");
        assert_eq!(caps, 0x01ff_ffff_ffff);
        assert_ne!(caps & (1 << CAP_NET_ADMIN), 0);

        let user = "Name:\tringlay\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n";
        assert_eq!(parse_cap_eff(user), Some(0));

        // Only CAP_NET_ADMIN (e.g. granted by setcap or a container runtime).
        let net_admin = "CapEff:\t0000000000001000\n";
        assert_eq!(parse_cap_eff(net_admin), Some(1 << CAP_NET_ADMIN));
    }

    #[test]
    fn malformed_status() {
        assert_eq!(parse_cap_eff(""), None);
        assert_eq!(parse_cap_eff("CapPrm:\t0000000000001000\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\tnot-hex\n"), None);
        assert_eq!(parse_cap_eff("CapEff:\n"), None);
    }

    #[test]
    fn reads_this_process() {
        // Whatever the answer, reading it must not panic; root has the bit.
        let _ = has_cap_net_admin();
        assert!(!has_capability(64));
    }
}
