//! The `ringlay` command's validators: accepted values print resolved, refused ones
//! exit non-zero with a message naming the field.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn ringlay(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringlay"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringlay");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("ringlay runs")
}

#[test]
fn check_config_resolves_flannel_defaults() {
    let out = ringlay(
        &["check-config", "-"],
        r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON out");
    assert_eq!(v["SubnetLen"], 24);
    assert_eq!(v["SubnetMin"], "100.96.1.0");
    assert_eq!(v["SubnetMax"], "100.96.255.0");
    assert_eq!(v["Backend"]["VNI"], 1);
    assert_eq!(v["Backend"]["Port"], 8472);
}

#[test]
fn check_config_names_the_bad_field() {
    for (json, field) in [
        (r#"{"Network":"100.96.0.0/16","SubnetLen":33}"#, "SubnetLen"),
        (
            r#"{"Network":"100.96.0.0/16","Backend":{"Type":"gre"}}"#,
            "Backend.Type",
        ),
        (r#"{"Network":"100.96.0.0/30"}"#, "Network"),
        (r#"{"Network":"#, "JSON"),
    ] {
        let out = ringlay(&["check-config", "-"], json);
        assert_eq!(out.status.code(), Some(1), "{json}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(field), "{json}: {err}");
        assert_eq!(err.lines().count(), 1, "one clear line: {err}");
    }
}

#[test]
fn check_lease_accepts_flannels_udp_value_and_refuses_a_bad_mac() {
    let out = ringlay(
        &["check-lease", "--key", "100.96.1.0-24", "-"],
        r#"{"PublicIP":"192.0.2.1","PublicIPv6":null}"#,
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(r#"{"PublicIP":"192.0.2.1","PublicIPv6":null}"#));

    let out = ringlay(
        &["check-lease", "-"],
        r#"{"PublicIP":"192.0.2.1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"zz"}}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BackendData.VtepMAC"));

    let out = ringlay(&["check-lease", "--key", "100.96.1.0-33", "-"], "{}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn static_leases_and_etcd_are_exclusive() {
    let out = ringlay(
        &[
            "run",
            "--static-leases",
            "leases.json",
            "--etcd-endpoints",
            "http://192.0.2.254:2379",
        ],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--static-leases")
            && err.contains("--etcd-endpoints")
            && err.contains("cannot be used with"),
        "{err}"
    );
}

#[test]
fn etcd_endpoints_must_be_urls() {
    let out = ringlay(&["run", "--etcd-endpoints", "192.0.2.254:2379"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--etcd-endpoints") && err.contains("http://"),
        "{err}"
    );
}

/// `ringlay watch` with `vars` set (and every RINGLAY_/FLANNELD_ variable of the
/// test's own environment removed): its stderr. The endpoint is refused before
/// anything connects.
fn watch_with_env(vars: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringlay"));
    for (k, _) in std::env::vars() {
        if k.starts_with("RINGLAY_") || k.starts_with("FLANNELD_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg("watch")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("ringlay runs");
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn flags_come_from_ringlay_then_flanneld_variables() {
    // FLANNELD_ETCD_ENDPOINTS is read as --etcd-endpoints...
    let err = watch_with_env(&[("FLANNELD_ETCD_ENDPOINTS", "etcd.invalid:1")]);
    assert!(err.contains("\"etcd.invalid:1\" is invalid"), "{err}");
    // ...unless RINGLAY_ETCD_ENDPOINTS is set...
    let err = watch_with_env(&[
        ("FLANNELD_ETCD_ENDPOINTS", "etcd.invalid:1"),
        ("RINGLAY_ETCD_ENDPOINTS", "etcd.invalid:2"),
    ]);
    assert!(err.contains("\"etcd.invalid:2\" is invalid"), "{err}");
    // ...and a flag beats both.
    let out = Command::new(env!("CARGO_BIN_EXE_ringlay"))
        .args(["watch", "--etcd-endpoints", "etcd.invalid:3"])
        .env("RINGLAY_ETCD_ENDPOINTS", "etcd.invalid:2")
        .stdin(Stdio::null())
        .output()
        .expect("ringlay runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"etcd.invalid:3\" is invalid"), "{err}");
    // Every flag has its RINGLAY_ variable.
    let err = watch_with_env(&[("RINGLAY_LOG_FORMAT", "yaml")]);
    assert!(err.contains("--log-format"), "{err}");
}

#[test]
fn kube_subnet_mgr_is_exclusive_with_static_leases_and_etcd() {
    for other in [
        ["--static-leases", "leases.json"],
        ["--etcd-endpoints", "http://192.0.2.254:2379"],
    ] {
        let mut args = vec!["run", "--kube-subnet-mgr"];
        args.extend_from_slice(&other);
        let out = ringlay(&args, "");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--kube-subnet-mgr")
                && err.contains(other[0])
                && err.contains("cannot be used with"),
            "{err}"
        );
    }
}

#[test]
fn kube_flags_are_checked_before_anything_connects() {
    // A bad annotation prefix, from flanneld's variable as from the flag.
    let err = watch_with_env(&[
        ("FLANNELD_KUBE_SUBNET_MGR", "true"),
        ("FLANNELD_KUBE_ANNOTATION_PREFIX", "a/b/c"),
    ]);
    assert!(
        err.contains("--kube-annotation-prefix: \"a/b/c\" is invalid")
            && err.contains("at most a single '/'"),
        "{err}"
    );
    // The network config is read first, and named.
    let err = watch_with_env(&[
        ("RINGLAY_KUBE_SUBNET_MGR", "true"),
        ("RINGLAY_NET_CONFIG_PATH", "/nonexistent/net-conf.json"),
    ]);
    assert!(
        err.contains("/nonexistent/net-conf.json") && err.contains("--net-config-path"),
        "{err}"
    );
    // Outside a pod, with neither a URL nor a kubeconfig: what to give instead.
    let dir = std::env::temp_dir().join(format!("ringlay-cli-kube-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let conf = dir.join("net-conf.json");
    std::fs::write(
        &conf,
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#,
    )
    .expect("write net-conf.json");
    let out = Command::new(env!("CARGO_BIN_EXE_ringlay"))
        .args(["watch", "--kube-subnet-mgr", "--net-config-path"])
        .arg(&conf)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdin(Stdio::null())
        .output()
        .expect("ringlay runs");
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("in-cluster configuration") && err.contains("--kubeconfig-file"),
        "{err}"
    );
}

#[test]
fn iface_values_are_checked_before_anything_starts() {
    // A regex that does not compile, an --iface-can-reach that is no address:
    // refused while parsing the flags (exit 2), naming the flag, as root or not.
    for (flag, value) in [("--iface-regex", "eth("), ("--iface-can-reach", "eth0")] {
        let out = ringlay(&["run", "--static-leases", "/nonexistent", flag, value], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag) && err.contains(value), "{err}");
    }
}

/// Asserts that `ringlay run` refuses each of `values` for `flag` while parsing
/// its flags (exit 2), naming the flag.
fn refuses_out_of_range(flag: &str, values: &[&str]) {
    for value in values {
        let arg = format!("{flag}={value}");
        let out = ringlay(&["run", "--static-leases", "/nonexistent", &arg], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{err}");
    }
}

#[test]
fn busy_poll_is_bounded() {
    refuses_out_of_range("--busy-poll", &["10001", "-1", "fast"]);
}

#[test]
fn tun_queue_len_is_bounded() {
    refuses_out_of_range("--tun-queue-len", &["15", "65537", "0", "many"]);
}

#[test]
fn tun_read_names_the_modes() {
    let out = ringlay(
        &[
            "run",
            "--static-leases",
            "/nonexistent",
            "--tun-read",
            "uring",
        ],
        "",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--tun-read") && err.contains("expected `auto` or `poll`"),
        "{err}"
    );
}

#[test]
fn public_ipv6_must_be_an_ipv6_address() {
    // Refused while parsing the flags (exit 2), naming the flag and the value,
    // whether given as the flag or through flanneld's variable.
    for value in ["192.0.2.1", "2001:db8::1/64", "eth0", "2001:db8:::1"] {
        let out = ringlay(
            &[
                "run",
                "--static-leases",
                "/nonexistent",
                "--public-ipv6",
                value,
            ],
            "",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--public-ipv6 {value}: {err}");
        assert!(
            err.contains("--public-ipv6") && err.contains(value),
            "{err}"
        );
    }
    for var in ["FLANNELD_PUBLIC_IPV6", "RINGLAY_PUBLIC_IPV6"] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringlay"));
        for (k, _) in std::env::vars() {
            if k.starts_with("RINGLAY_") || k.starts_with("FLANNELD_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .args(["run", "--static-leases", "/nonexistent"])
            .env(var, "not-an-address")
            .stdin(Stdio::null())
            .output()
            .expect("ringlay runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(
            err.contains("--public-ipv6") && err.contains("not-an-address"),
            "{err}"
        );
    }
    // The help names what it is for.
    let out = ringlay(&["run", "--help"], "");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--public-ipv6 <IPV6>") && help.contains("EnableIPv6"),
        "{help}"
    );
}
