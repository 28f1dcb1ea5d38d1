//! Subnet keys, the last segment of `<prefix>/subnets/<key>`, as flannel's
//! `MakeSubnetKey` writes them and `ParseSubnetKey` reads them (`pkg/subnet/subnet.go`).

use core::fmt;
use core::str::FromStr;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};

use super::json::clip;
use super::SubnetKey;
use crate::{Error, Result};

/// The accepted form, repeated in every key error.
const FORM: &str = "the form a.b.c.d-N (N from 1 to 31), optionally followed by \
                    &ipv6-M (lowercase hex, M from 1 to 127), with no host bits set, \
                    e.g. 100.96.1.0-24 or 100.96.1.0-24&fd00:100:96:1::-64";

/// flannel's empty IPv4 network, which stands for "no IPv4 subnet" in a key.
const NO_V4: &str = "0.0.0.0-0";

impl SubnetKey {
    /// A key for an IPv4-only lease.
    pub const fn v4(net: Ipv4Net) -> SubnetKey {
        SubnetKey {
            v4: Some(net),
            v6: None,
        }
    }

    /// A key for a dual-stack lease.
    pub const fn dual(v4: Ipv4Net, v6: Ipv6Net) -> SubnetKey {
        SubnetKey {
            v4: Some(v4),
            v6: Some(v6),
        }
    }

    /// The subnet key of an etcd key under `<prefix>/subnets/`.
    ///
    /// `None` when `full_key` is not a lease key of `prefix` at all (e.g.
    /// `<prefix>/config`); `Some(Err)` when it is one but the key is malformed.
    /// `prefix` may be given with or without its trailing `/`.
    pub fn from_etcd_key(full_key: &str, prefix: &str) -> Option<Result<SubnetKey>> {
        let rest = full_key
            .strip_prefix(prefix.trim_end_matches('/'))?
            .strip_prefix("/subnets/")?;
        Some(rest.parse())
    }

    /// The etcd key of this lease under `prefix`: `<prefix>/subnets/<key>`.
    pub fn to_etcd_key(&self, prefix: &str) -> String {
        format!("{}/subnets/{self}", prefix.trim_end_matches('/'))
    }
}

/// Parses a key as flannel writes it: `100.96.1.0-24`, `100.96.1.0-24&fd00:100:96:1::-64`,
/// or, for a lease without IPv4, `0.0.0.0-0&fd00:100:96:1::-64`.
///
/// This is flannel's `ParseSubnetKey` (IPv4 prefix lengths up to 31, IPv6 up to 127,
/// the IPv6 part in lowercase hex) made strict: the whole string must be the key,
/// and networks with host bits set are refused, since flannel never writes them.
impl FromStr for SubnetKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<SubnetKey> {
        let bad =
            |why: &str| Error::invalid("subnet key", clip(s), format!("{why}; expected {FORM}"));
        let (v4_part, v6_part) = match s.split_once('&') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };

        let (addr, len) = split_prefix(v4_part, 31).ok_or_else(|| bad("no IPv4 part a.b.c.d-N"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("the IPv4 address is malformed"))?;
        let v4 = if addr.is_unspecified() && len == 0 {
            None
        } else {
            let net = Ipv4Net::new(addr, len).expect("split_prefix keeps IPv4 lengths at most 31");
            if net.trunc() != net {
                return Err(bad(&format!(
                    "{net} has host bits set (the network is {})",
                    net.trunc()
                )));
            }
            Some(net)
        };

        let v6 = match v6_part {
            None => None,
            Some(part) => {
                let (addr, len) =
                    split_prefix(part, 127).ok_or_else(|| bad("the IPv6 part is not ipv6-M"))?;
                if !addr
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b':')
                {
                    return Err(bad("the IPv6 address may hold only 0-9, a-f and ':'"));
                }
                let addr: Ipv6Addr = addr
                    .parse()
                    .map_err(|_| bad("the IPv6 address is malformed"))?;
                if len == 0 {
                    return Err(bad(
                        "an IPv6 /0 is flannel's empty network; leave out the &… part",
                    ));
                }
                let net =
                    Ipv6Net::new(addr, len).expect("split_prefix keeps IPv6 lengths at most 127");
                if net.trunc() != net {
                    return Err(bad(&format!(
                        "{net} has host bits set (the network is {})",
                        net.trunc()
                    )));
                }
                Some(net)
            }
        };
        if v4.is_none() && v6.is_none() {
            return Err(bad("0.0.0.0-0 alone names no subnet"));
        }
        Ok(SubnetKey { v4, v6 })
    }
}

/// Splits `addr-N` at its last `-`; `N` must be ASCII digits (leading zeros allowed,
/// as Go's `ParseUint` allows them) and at most `max`.
fn split_prefix(part: &str, max: u8) -> Option<(&str, u8)> {
    let (addr, len) = part.rsplit_once('-')?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    (len <= max).then_some((addr, len))
}

/// Writes the key as flannel's `MakeSubnetKey` does; no IPv4 subnet is written as
/// `0.0.0.0-0`, flannel's empty network.
impl fmt::Display for SubnetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.v4 {
            Some(n) => write!(f, "{}-{}", n.addr(), n.prefix_len())?,
            None => f.write_str(NO_V4)?,
        }
        if let Some(n) = self.v6 {
            f.write_str("&")?;
            write_v6_hex(f, n.addr())?;
            write!(f, "-{}", n.prefix_len())?;
        }
        Ok(())
    }
}

/// An IPv6 address in RFC 5952 form but always in hex groups: the text flannel's Go
/// formatter gives for every address it can lease, and the only one its key
/// pattern reads. (Rust writes `::ffff:a.b.c.d` for mapped addresses; a key must
/// not hold dots.)
fn write_v6_hex(f: &mut fmt::Formatter<'_>, addr: Ipv6Addr) -> fmt::Result {
    let groups = addr.segments();
    // The longest run of two or more zero groups, the first one on a tie.
    let mut best: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < groups.len() {
        if groups[i] == 0 {
            let start = i;
            while i < groups.len() && groups[i] == 0 {
                i += 1;
            }
            let len = i - start;
            if len >= 2 && best.is_none_or(|(_, l)| len > l) {
                best = Some((start, len));
            }
        } else {
            i += 1;
        }
    }
    let write_groups = |f: &mut fmt::Formatter<'_>, gs: &[u16]| -> fmt::Result {
        for (k, g) in gs.iter().enumerate() {
            if k > 0 {
                f.write_str(":")?;
            }
            write!(f, "{g:x}")?;
        }
        Ok(())
    };
    match best {
        None => write_groups(f, &groups),
        Some((start, len)) => {
            write_groups(f, &groups[..start])?;
            f.write_str("::")?;
            write_groups(f, &groups[start + len..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(s: &str) -> SubnetKey {
        s.parse().expect("a key flannel writes")
    }

    fn net4(s: &str) -> Ipv4Net {
        s.parse().expect("test networks are valid")
    }

    fn net6(s: &str) -> Ipv6Net {
        s.parse().expect("test networks are valid")
    }

    #[test]
    fn ipv4_key() {
        let k = key("100.96.1.0-24");
        assert_eq!(k, SubnetKey::v4(net4("100.96.1.0/24")));
        assert_eq!(k.to_string(), "100.96.1.0-24");
    }

    #[test]
    fn dual_stack_key() {
        let k = key("100.96.1.0-24&fd00:100:96:1::-64");
        assert_eq!(
            k,
            SubnetKey::dual(net4("100.96.1.0/24"), net6("fd00:100:96:1::/64"))
        );
        assert_eq!(k.to_string(), "100.96.1.0-24&fd00:100:96:1::-64");
    }

    #[test]
    fn ipv6_only_key_uses_flannels_empty_ipv4_network() {
        let k = key("0.0.0.0-0&fd00:100:96:1::-64");
        assert_eq!(k.v4, None);
        assert_eq!(k.v6, Some(net6("fd00:100:96:1::/64")));
        assert_eq!(k.to_string(), "0.0.0.0-0&fd00:100:96:1::-64");
    }

    #[test]
    fn leading_zeros_in_the_prefix_length_are_read_as_flannel_reads_them() {
        assert_eq!(key("10.5.1.0-024"), key("10.5.1.0-24"));
    }

    #[test]
    fn non_canonical_ipv6_text_is_read_and_written_canonically() {
        let k = key("10.5.1.0-24&fd00:0:0:0:0:0:0:0-64");
        assert_eq!(k.to_string(), "10.5.1.0-24&fd00::-64");
    }

    #[test]
    fn rejects_malformed_keys_naming_the_key_and_the_form() {
        for s in [
            "",
            "garbage",
            "100.96.1.0",
            "100.96.1.0-",
            "100.96.1.0-+24",
            "100.96.1.0-24 ",
            " 100.96.1.0-24",
            "100.96.1.1-24", // host bits
            "100.96.1.0-32", // flannel reads at most 31
            "100.96.1.0-33",
            "100.96.1.0-999999999999",
            "100.96.01.0-24", // leading zero in an octet
            "100.96.1-24",
            "100.96.1.0-24&",
            "100.96.1.0-24&fd00::",
            "100.96.1.0-24&fd00::1-64", // host bits
            "100.96.1.0-24&FD00::-64",  // flannel's pattern is lowercase
            "100.96.1.0-24&::ffff:1.2.3.4-128",
            "100.96.1.0-24&fd00::-128",
            "100.96.1.0-24&::-0",
            "100.96.1.0-24&fd00::-64&fd01::-64",
            "0.0.0.0-0",
            "0.0.0.0-00",
            "/coreos.com/network/subnets/100.96.1.0-24",
        ] {
            let err = s.parse::<SubnetKey>().expect_err(s);
            let msg = err.to_string();
            assert!(msg.starts_with("subnet key:"), "{msg}");
            assert!(msg.contains("a.b.c.d-N"), "{msg}");
        }
    }

    #[test]
    fn host_bit_errors_say_which_network_was_meant() {
        let err = "100.96.1.1-24".parse::<SubnetKey>().expect_err("host bits");
        assert!(err.to_string().contains("100.96.1.0/24"), "{err}");
    }

    #[test]
    fn from_etcd_key_strips_the_prefix() {
        let k = SubnetKey::from_etcd_key(
            "/coreos.com/network/subnets/10.5.1.0-24",
            "/coreos.com/network",
        )
        .expect("a lease key")
        .expect("well formed");
        assert_eq!(k, SubnetKey::v4(net4("10.5.1.0/24")));
        let k = SubnetKey::from_etcd_key(
            "/coreos.com/network/subnets/10.5.1.0-24",
            "/coreos.com/network/",
        )
        .expect("a lease key")
        .expect("well formed");
        assert_eq!(
            k.to_etcd_key("/coreos.com/network/"),
            "/coreos.com/network/subnets/10.5.1.0-24"
        );
        assert!(
            SubnetKey::from_etcd_key("/coreos.com/network/config", "/coreos.com/network").is_none()
        );
        assert!(
            SubnetKey::from_etcd_key("/other/subnets/10.5.1.0-24", "/coreos.com/network").is_none()
        );
        assert!(SubnetKey::from_etcd_key(
            "/coreos.com/networks/subnets/10.5.1.0-24",
            "/coreos.com/network"
        )
        .is_none());
        let bad = SubnetKey::from_etcd_key(
            "/coreos.com/network/subnets/10.5.1.0-24/x",
            "/coreos.com/network",
        )
        .expect("under subnets/");
        assert!(bad.is_err());
    }

    #[test]
    fn v6_text_matches_rfc5952_and_never_holds_dots() {
        for (addr, text) in [
            ("fd00:100:96:1::", "fd00:100:96:1::"),
            ("2001:db8:0:1:0:0:0:0", "2001:db8:0:1::"),
            ("2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:0:0:1:0:0:0:0", "2001:0:0:1::"),
            ("fd00:1:2:3:4:5:6:7", "fd00:1:2:3:4:5:6:7"),
            ("fd00:0:2:3:4:5:6:7", "fd00:0:2:3:4:5:6:7"),
            ("::", "::"),
            ("::ffff:0:0", "::ffff:0:0"),
        ] {
            let k = SubnetKey {
                v4: None,
                v6: Some(Ipv6Net::new(addr.parse().expect("valid"), 127).expect("valid")),
            };
            assert_eq!(k.to_string(), format!("0.0.0.0-0&{text}-127"));
        }
    }

    fn canonical_v4() -> impl Strategy<Value = Ipv4Net> {
        (any::<u32>(), 1u8..=31).prop_map(|(a, l)| {
            Ipv4Net::new(Ipv4Addr::from(a), l)
                .expect("length in range")
                .trunc()
        })
    }

    fn canonical_v6() -> impl Strategy<Value = Ipv6Net> {
        (any::<u128>(), 1u8..=127).prop_map(|(a, l)| {
            Ipv6Net::new(Ipv6Addr::from(a), l)
                .expect("length in range")
                .trunc()
        })
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(v4 in proptest::option::of(canonical_v4()), v6 in proptest::option::of(canonical_v6())) {
            prop_assume!(v4.is_some() || v6.is_some());
            let k = SubnetKey { v4, v6 };
            let text = k.to_string();
            prop_assert_eq!(text.parse::<SubnetKey>().expect("formatted keys parse"), k);
        }

        #[test]
        fn v6_text_is_rusts_rfc5952_text_wherever_that_has_no_dots(a in any::<u128>()) {
            let addr = Ipv6Addr::from(a);
            let k = SubnetKey { v4: None, v6: Some(Ipv6Net::new(addr, 128).expect("valid")) };
            let ours = k.to_string();
            let std = format!("0.0.0.0-0&{addr}-128");
            if !std.contains('.') {
                prop_assert_eq!(ours, std);
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,64}") {
            let _ = s.parse::<SubnetKey>();
        }
    }
}
