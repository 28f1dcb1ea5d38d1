//! Choosing the underlay interface as flanneld does, on a host with several
//! interfaces: `--iface` by name, by address and as a list; `--iface-regex` on
//! addresses, then names; `--iface-can-reach`; their precedence; the same from
//! `RINGLAY_*` and `FLANNELD_*` variables; the start-up error when nothing
//! matches; and per address family: a dual-stack network on the IPv4 interface
//! with its IPv6 address, an IPv6-only one (host-gw) by IPv6 addresses and the
//! IPv6 default route. Every case starts the real daemon (static leases, udp backend) in
//! the host's namespace and reads the interface and public IP it chose from its
//! ready line; the public IP must also be one of the leases', or it would not
//! start.

mod common;

use std::net::Ipv4Addr;

use common::netns::{self, Cluster};

/// Host 1 of a two-host cluster (eth0 192.0.2.1/24) given more interfaces:
/// eth1 198.51.100.1/24 with the secondary 198.51.100.11/24, eth2
/// 203.0.113.1/24 holding the default route, eth3 with no address; a route
/// to 10.9.0.0/16 out of eth1 from 198.51.100.11 (the secondary, so that the
/// route's source address shows, not the interface's first); and 198.18.99.0/24
/// unreachable.
fn many_interfaces() -> Cluster {
    let c = Cluster::two_hosts("iface");
    c.host(1).sh("ip link add eth1 type veth peer name eth1p
         ip link add eth2 type veth peer name eth2p
         ip link add eth3 type veth peer name eth3p
         ip addr add 198.51.100.1/24 dev eth1
         ip addr add 198.51.100.11/24 dev eth1
         ip addr add 203.0.113.1/24 dev eth2
         for l in eth1 eth1p eth2 eth2p eth3 eth3p; do ip link set $l up; done
         ip route add default via 203.0.113.254 dev eth2
         ip route add 10.9.0.0/16 via 198.51.100.254 dev eth1 src 198.51.100.11
         ip route add unreachable 198.18.99.0/24");
    c
}

/// One lease per address the host could choose: 100.96.k.0/24 for the k-th.
const PUBLIC_IPS: [&str; 4] = ["192.0.2.1", "198.51.100.1", "198.51.100.11", "203.0.113.1"];

fn leases() -> String {
    let subnets: Vec<String> = PUBLIC_IPS
        .iter()
        .zip(1..)
        .map(|(ip, k)| format!(r#""100.96.{k}.0-24": {{"PublicIP": "{ip}", "PublicIPv6": null}}"#))
        .collect();
    format!(
        r#"{{"config": {{"Network": "100.96.0.0/16", "Backend": {{"Type": "udp"}}}}, "subnets": {{{}}}}}"#,
        subnets.join(", ")
    )
}

/// The `key=value` field of a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Starts ringlay on host 1 with `args` and `env`, and returns the interface and
/// public IP of its ready line (and stops it).
fn chosen(c: &Cluster, args: &[&str], env: &[(&str, &str)]) -> (String, Ipv4Addr) {
    let mut all = vec!["--queues", "1"];
    all.extend_from_slice(args);
    let mut d = c
        .try_ringlay_choosing(1, &leases(), &all, env)
        .unwrap_or_else(|e| panic!("{args:?} {env:?}: {e}"));
    let log = d.log();
    d.terminate();
    let ready = log
        .lines()
        .find(|l| l.contains("ready: "))
        .expect("a ready line");
    let iface = field(ready, "iface").expect("iface=").to_owned();
    let ip = field(ready, "public_ip").expect("public_ip=");
    let ip = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
    println!("{args:?} {env:?}: {iface} {ip}");
    (iface, ip)
}

/// The error of a ringlay that must not start.
fn refused(c: &Cluster, args: &[&str]) -> String {
    let mut all = vec!["--queues", "1"];
    all.extend_from_slice(args);
    let err = match c.try_ringlay_choosing(1, &leases(), &all, &[]) {
        Ok(d) => panic!("{args:?} started:\n{}", d.log()),
        Err(e) => e,
    };
    println!("{args:?}: {err}");
    assert!(!c
        .host(1)
        .exec(&["ip", "link", "show", "ringlay0"])
        .status
        .success());
    err
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("valid address")
}

#[test]
fn iface_by_name_by_address_and_as_a_list() {
    if !netns::require_root("iface_by_name_by_address_and_as_a_list") {
        return;
    }
    let c = many_interfaces();
    // By name: its first address.
    assert_eq!(
        chosen(&c, &["--iface", "eth1"], &[]),
        ("eth1".into(), v4("198.51.100.1"))
    );
    // By address: the interface holding it, and that address.
    assert_eq!(
        chosen(&c, &["--iface", "198.51.100.11"], &[]),
        ("eth1".into(), v4("198.51.100.11"))
    );
    // A list: the first usable wins, past a missing one and one without IPv4.
    let list = [
        "--iface", "nosuch0", "--iface", "eth3", "--iface", "eth2", "--iface", "eth0",
    ];
    assert_eq!(chosen(&c, &list, &[]), ("eth2".into(), v4("203.0.113.1")));
    // --public-ip is the lease's address, but does not move the interface.
    assert_eq!(
        chosen(&c, &["--iface", "eth2", "--public-ip", "192.0.2.1"], &[]),
        ("eth2".into(), v4("192.0.2.1"))
    );
    // Nothing given: the default route's interface.
    assert_eq!(chosen(&c, &[], &[]), ("eth2".into(), v4("203.0.113.1")));
    // Only --public-ip: the interface holding it.
    assert_eq!(
        chosen(&c, &["--public-ip", "198.51.100.11"], &[]),
        ("eth1".into(), v4("198.51.100.11"))
    );
}

#[test]
fn iface_regex_matches_addresses_then_names() {
    if !netns::require_root("iface_regex_matches_addresses_then_names") {
        return;
    }
    let c = many_interfaces();
    // An address: the matching one, not the interface's first.
    assert_eq!(
        chosen(&c, &["--iface-regex", r"^198\.51\.100\.1[0-9]$"], &[]),
        ("eth1".into(), v4("198.51.100.11"))
    );
    // A name.
    assert_eq!(
        chosen(&c, &["--iface-regex", "^eth2$"], &[]),
        ("eth2".into(), v4("203.0.113.1"))
    );
    // Addresses before names: eth0 comes first and its name matches, but eth2's
    // address matches too.
    assert_eq!(
        chosen(&c, &["--iface-regex", r"^eth0$|^203\."], &[]),
        ("eth2".into(), v4("203.0.113.1"))
    );
    // Repeated: in order, after every --iface.
    let args = [
        "--iface",
        "nosuch0",
        "--iface-regex",
        "^nomatch$",
        "--iface-regex",
        "^eth1$",
    ];
    assert_eq!(chosen(&c, &args, &[]), ("eth1".into(), v4("198.51.100.1")));
}

#[test]
fn iface_can_reach_takes_the_routes_interface_and_source() {
    if !netns::require_root("iface_can_reach_takes_the_routes_interface_and_source") {
        return;
    }
    let c = many_interfaces();
    assert_eq!(
        chosen(&c, &["--iface-can-reach", "10.9.8.7"], &[]),
        ("eth1".into(), v4("198.51.100.11"))
    );
    // Through the default route.
    assert_eq!(
        chosen(&c, &["--iface-can-reach", "198.18.0.1"], &[]),
        ("eth2".into(), v4("203.0.113.1"))
    );
    // Last in precedence: a usable --iface-regex wins over it.
    let args = ["--iface-can-reach", "10.9.8.7", "--iface-regex", "^eth0$"];
    assert_eq!(chosen(&c, &args, &[]), ("eth0".into(), v4("192.0.2.1")));
}

#[test]
fn iface_flags_from_ringlay_and_flanneld_variables() {
    if !netns::require_root("iface_flags_from_ringlay_and_flanneld_variables") {
        return;
    }
    let c = many_interfaces();
    let env = [("FLANNELD_IFACE", "198.51.100.11")];
    assert_eq!(chosen(&c, &[], &env), ("eth1".into(), v4("198.51.100.11")));
    // One value per variable, commas and all, as flanneld reads it.
    let env = [("FLANNELD_IFACE_REGEX", "^eth[2-2]{1,1}$")];
    assert_eq!(chosen(&c, &[], &env), ("eth2".into(), v4("203.0.113.1")));
    let env = [
        ("RINGLAY_IFACE_CAN_REACH", "10.9.0.1"),
        ("FLANNELD_IFACE_CAN_REACH", "198.18.0.1"),
    ];
    assert_eq!(chosen(&c, &[], &env), ("eth1".into(), v4("198.51.100.11")));
    // A flag beats the variable.
    let env = [("RINGLAY_IFACE", "eth1")];
    assert_eq!(
        chosen(&c, &["--iface", "eth0"], &env),
        ("eth0".into(), v4("192.0.2.1"))
    );
}

#[test]
fn nothing_matching_is_a_start_up_error() {
    if !netns::require_root("nothing_matching_is_a_start_up_error") {
        return;
    }
    let c = many_interfaces();
    // No fallback to the (usable) default route once a flag is given.
    let err = refused(
        &c,
        &[
            "--iface",
            "nosuch0",
            "--iface-regex",
            "^nomatch$",
            "--iface-can-reach",
            "198.18.99.1",
        ],
    );
    let line = err
        .lines()
        .find(|l| l.starts_with("ringlay: "))
        .unwrap_or_else(|| panic!("no error line:\n{err}"));
    assert!(
        line.contains("--iface, --iface-regex, --iface-can-reach: \"nosuch0, ^nomatch$, 198.18.99.1\" is invalid"),
        "{line}"
    );
    assert!(
        line.contains("--iface nosuch0: there is no interface nosuch0"),
        "{line}"
    );
    assert!(
        line.contains("--iface-regex ^nomatch$: matches no interface"),
        "{line}"
    );
    assert!(
        line.contains("--iface-can-reach 198.18.99.1: no route: "),
        "{line}"
    );
    assert!(line.contains("give an interface name"), "{line}");

    // An address no interface holds, and an interface without IPv4.
    let err = refused(&c, &["--iface", "192.0.2.99", "--iface", "eth3"]);
    assert!(
        err.contains("no interface has the address 192.0.2.99"),
        "{err}"
    );
    assert!(err.contains("eth3 has no usable IPv4 address"), "{err}");

    // Only a --public-ip that no interface holds (behind NAT): flanneld refuses
    // it too; the fix is --iface.
    let err = refused(&c, &["--public-ip", "198.18.0.1"]);
    assert!(
        err.contains("--public-ip: \"198.18.0.1\" is invalid"),
        "{err}"
    );
    assert!(err.contains("also give --iface"), "{err}");
}

/// [`many_interfaces`] with IPv6 (without duplicate address detection, so the
/// addresses are usable at once): eth1 2001:db8:1::1/64, eth2 2001:db8:2::1/64
/// holding the IPv6 default route, eth0 with its link-local address only.
fn many_interfaces_v6() -> Cluster {
    let c = many_interfaces();
    c.host(1).sh("ip addr add 2001:db8:1::1/64 dev eth1 nodad
         ip addr add 2001:db8:2::1/64 dev eth2 nodad
         ip -6 route add default via 2001:db8:2::254 dev eth2");
    c
}

/// Leases for `config` (a JSON object), one per `(key, PublicIP, PublicIPv6)`,
/// each with `extra` fields.
fn leases_of(config: &str, extra: &str, leases: &[(&str, &str, &str)]) -> String {
    let subnets: Vec<String> = leases
        .iter()
        .map(|(k, ip, ip6)| format!(r#""{k}": {{"PublicIP": "{ip}", "PublicIPv6": {ip6}{extra}}}"#))
        .collect();
    format!(
        r#"{{"config": {config}, "subnets": {{{}}}}}"#,
        subnets.join(", ")
    )
}

/// Starts ringlay on host 1 with `leases` and `args`: the ready line's
/// `iface public_ip public_ipv6`, or the start-up error.
fn placed(c: &Cluster, leases: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--queues", "1"];
    all.extend_from_slice(args);
    let mut d = c.try_ringlay_choosing(1, leases, &all, &[])?;
    let log = d.log();
    d.terminate();
    let ready = log
        .lines()
        .find(|l| l.contains("ready: "))
        .expect("a ready line");
    let got: Vec<&str> = ["iface", "public_ip", "public_ipv6"]
        .iter()
        .map(|k| field(ready, k).unwrap_or_else(|| panic!("{k}= in {ready}")))
        .collect();
    println!("{args:?}: {got:?}");
    Ok(got.join(" "))
}

#[test]
fn dual_stack_takes_the_ipv4_interface_and_its_ipv6_address() {
    if !netns::require_root("dual_stack_takes_the_ipv4_interface_and_its_ipv6_address") {
        return;
    }
    let c = many_interfaces_v6();
    let config = r#"{"Network": "100.96.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00:100:96::/48", "Backend": {"Type": "udp"}}"#;
    let leases = leases_of(
        config,
        "",
        &[
            ("100.96.1.0-24&fd00:100:96:1::-64", "192.0.2.1", "null"),
            (
                "100.96.2.0-24&fd00:100:96:2::-64",
                "198.51.100.1",
                r#""2001:db8:1::1""#,
            ),
            (
                "100.96.3.0-24&fd00:100:96:3::-64",
                "203.0.113.1",
                r#""2001:db8:2::1""#,
            ),
        ],
    );
    let ok = |s: &str| Ok(s.to_owned());
    // Nothing given: both default routes leave by eth2.
    assert_eq!(
        placed(&c, &leases, &[]),
        ok("eth2 203.0.113.1 2001:db8:2::1")
    );
    assert_eq!(
        placed(&c, &leases, &["--iface", "eth1"]),
        ok("eth1 198.51.100.1 2001:db8:1::1")
    );
    // One interface for both families.
    let err = placed(
        &c,
        &leases,
        &["--iface", "eth1", "--public-ipv6", "2001:db8:2::1"],
    )
    .expect_err("on eth2");
    assert!(
        err.contains("it is on eth2, but the underlay is eth1"),
        "{err}"
    );
    let err = placed(&c, &leases, &["--iface", "eth0"]).expect_err("link-local only");
    assert!(
        err.contains(
            "EnableIPv6 is true but eth0 has no global IPv6 address: add one or set --public-ipv6"
        ),
        "{err}"
    );
}

#[test]
fn ipv6_only_chooses_by_ipv6_addresses_and_the_ipv6_default_route() {
    if !netns::require_root("ipv6_only_chooses_by_ipv6_addresses_and_the_ipv6_default_route") {
        return;
    }
    let c = many_interfaces_v6();
    let config = r#"{"EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd00:100:96::/48", "Backend": {"Type": "host-gw"}}"#;
    let leases = leases_of(
        config,
        r#", "BackendType": "host-gw""#,
        &[
            (
                "0.0.0.0-0&fd00:100:96:1::-64",
                "0.0.0.0",
                r#""2001:db8:1::1""#,
            ),
            (
                "0.0.0.0-0&fd00:100:96:2::-64",
                "0.0.0.0",
                r#""2001:db8:2::1""#,
            ),
        ],
    );
    let ok = |s: &str| Ok(s.to_owned());
    assert_eq!(placed(&c, &leases, &[]), ok("eth2 0.0.0.0 2001:db8:2::1"));
    assert_eq!(
        placed(&c, &leases, &["--iface", "2001:db8:1::1"]),
        ok("eth1 0.0.0.0 2001:db8:1::1")
    );
    assert_eq!(
        placed(&c, &leases, &["--iface-regex", "^2001:db8:1:"]),
        ok("eth1 0.0.0.0 2001:db8:1::1")
    );
    assert_eq!(
        placed(&c, &leases, &["--public-ipv6", "2001:db8:1::1"]),
        ok("eth1 0.0.0.0 2001:db8:1::1")
    );
    let err = placed(&c, &leases, &["--public-ip", "192.0.2.1"]).expect_err("no IPv4");
    assert!(
        err.contains("--public-ip") && err.contains("EnableIPv4 false"),
        "{err}"
    );
}
