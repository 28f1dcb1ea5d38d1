//! `subnet.env`: what this host tells the flannel CNI plugin, byte for byte as
//! flanneld's `WriteSubnetFile` (`pkg/subnet/subnet.go`) writes it.
//!
//! ```text
//! FLANNEL_NETWORK=100.96.0.0/16
//! FLANNEL_SUBNET=100.96.1.1/24
//! FLANNEL_IPV6_NETWORK=fd00:100:96::/48
//! FLANNEL_IPV6_SUBNET=fd00:100:96:1::1/64
//! FLANNEL_MTU=1450
//! FLANNEL_IPMASQ=true
//! ```
//!
//! The IPv4 pair is written when the config enables IPv4, the IPv6 pair when it
//! enables IPv6; each `*_SUBNET` is the lease's first address after the network
//! address, with the lease's prefix length (flannel's `IncrementIP` on the lease).
//! `FLANNEL_IPMASQ` is Go's `%t`: `true` or `false`. Every line ends in `\n`.
//!
//! flanneld replaces the file atomically (renameio: a temporary file in the same
//! directory, renamed over the target, mode 0644 whatever the umask); the CNI plugin
//! may read it at any moment, so [`write_atomic`] does the same and also fsyncs.
//! Only its owner (root) may write it; everyone may read it, as flanneld's: it
//! holds no secret (the subnet and MTU are in any user's `ip addr`), and readers
//! other than the CNI plugin (scripts, node agents) may not run as root.

use std::fmt::Write as _;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{NetworkConfig, SubnetKey};
use crate::{Error, Result};

/// The mode of a directory [`write_atomic`] creates (less the umask, as `mkdir -p`).
const DIR_MODE: u32 = 0o755;
/// The mode of the written file, set explicitly so the umask does not change it.
const FILE_MODE: u32 = 0o644;

/// Renders `subnet.env` for this host's lease `local` in `config`.
///
/// A family the config enables but `local` lacks is left out (a validated static
/// leases file never has such a lease; flanneld would write a meaningless `/0`).
pub fn render(config: &NetworkConfig, local: &SubnetKey, mtu: u32, ipmasq: bool) -> String {
    let mut out = String::with_capacity(160);
    // Writing to a String cannot fail.
    if let (Some(c), Some(n)) = (config.ipv4, local.v4) {
        // Leases are at most /31 long, so the network address + 1 stays inside.
        let first = Ipv4Addr::from(u32::from(n.network()).wrapping_add(1));
        let _ = writeln!(out, "FLANNEL_NETWORK={}", c.network);
        let _ = writeln!(out, "FLANNEL_SUBNET={first}/{}", n.prefix_len());
    }
    if let (Some(c), Some(n)) = (config.ipv6, local.v6) {
        let first = Ipv6Addr::from(u128::from(n.network()).wrapping_add(1));
        let _ = writeln!(out, "FLANNEL_IPV6_NETWORK={}", c.network);
        let _ = writeln!(out, "FLANNEL_IPV6_SUBNET={first}/{}", n.prefix_len());
    }
    let _ = writeln!(out, "FLANNEL_MTU={mtu}");
    let _ = writeln!(out, "FLANNEL_IPMASQ={ipmasq}");
    out
}

/// The subnets a previous run recorded in the subnet.env at `path`
/// (`FLANNEL_SUBNET`, `FLANNEL_IPV6_SUBNET`), as flanneld reads them back to ask for
/// the same lease again. `None` if the file is missing or names no subnet.
pub fn read_subnets(path: &Path) -> Option<SubnetKey> {
    let text = fs::read_to_string(path).ok()?;
    parse_subnets(&text)
}

/// [`read_subnets`] of the file's text.
pub fn parse_subnets(text: &str) -> Option<SubnetKey> {
    let mut key = SubnetKey { v4: None, v6: None };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("FLANNEL_SUBNET=") {
            key.v4 = v.trim().parse::<ipnet::Ipv4Net>().ok().map(|n| n.trunc());
        } else if let Some(v) = line.strip_prefix("FLANNEL_IPV6_SUBNET=") {
            key.v6 = v.trim().parse::<ipnet::Ipv6Net>().ok().map(|n| n.trunc());
        }
    }
    (key.v4.is_some() || key.v6.is_some()).then_some(key)
}

/// Replaces the file at `path` with `contents` so that a reader sees the old file or
/// the new one, never a part: creates the parent directory if missing (0755), writes
/// a temporary file beside the target, fsyncs it, sets mode 0644 and renames it over
/// the target. Errors name the path and the step that failed; a failed write leaves
/// the old file in place and removes the temporary one.
pub fn write_atomic(path: &Path, contents: &str) -> Result<()> {
    /// Tells apart temporary files of concurrent writes in one process.
    static SEQ: AtomicU64 = AtomicU64::new(0);

    let Some(name) = path.file_name() else {
        return Err(Error::invalid(
            "subnet file",
            path.display(),
            "a path naming a file, like /run/flannel/subnet.env",
        ));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|source| Error::Io {
            path: dir.to_owned(),
            action: "create the subnet file's directory",
            source,
        })?;

    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        // The umask may have narrowed the mode at creation; flanneld ignores it too.
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        // Named after the target: the temporary copy is gone, the file is what
        // the operator looks for.
        return Err(Error::Io {
            path: path.to_owned(),
            action: "write the subnet file (through a temporary copy beside it)",
            source,
        });
    }
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Io {
            path: path.to_owned(),
            action: "replace the subnet file",
            source,
        });
    }
    // Make the rename itself durable. Best effort: the file is already in place,
    // and some filesystems refuse fsync on a directory.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes subnet.env with [`write_atomic`]; if that fails but the file already
/// holds exactly `contents` (a restart with the same lease, on a filesystem that
/// has since become full or read-only), logs the error and returns `Ok`: the CNI
/// plugin reads the right values, and refusing to start would stop forwarding
/// for nothing. Any other failure is returned.
pub fn write_or_keep(path: &Path, contents: &str) -> Result<()> {
    match write_atomic(path, contents) {
        Ok(()) => Ok(()),
        Err(e) if fs::read(path).is_ok_and(|b| b == contents.as_bytes()) => {
            tracing::error!(
                "{e}; it already holds the current values, so the CNI plugin reads them and forwarding continues"
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::control::TempDir;

    #[test]
    fn reads_back_the_subnets_it_wrote() {
        let c = config(
            r#"{"Network":"100.96.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:100:96::/48"}"#,
        );
        let key: SubnetKey = "100.96.7.0-24&fd00:100:96:7::-64".parse().expect("key");
        assert_eq!(parse_subnets(&render(&c, &key, 1450, false)), Some(key));
        assert_eq!(parse_subnets("FLANNEL_MTU=1450\n"), None);
        assert_eq!(parse_subnets("FLANNEL_SUBNET=garbage\n"), None);
        let t = TempDir::new("env-read");
        assert_eq!(read_subnets(&t.0.join("absent")), None);
    }

    fn config(text: &str) -> NetworkConfig {
        NetworkConfig::parse(text).expect("valid config")
    }

    fn key(s: &str) -> SubnetKey {
        s.parse().expect("valid key")
    }

    #[test]
    fn vxlan_golden() {
        let c = config(r#"{"Network":"100.96.0.0/16","Backend":{"Type":"vxlan"}}"#);
        assert_eq!(
            render(&c, &key("100.96.1.0-24"), 1450, true),
            "FLANNEL_NETWORK=100.96.0.0/16\nFLANNEL_SUBNET=100.96.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
        );
    }

    #[test]
    fn udp_golden() {
        let c = config(r#"{"Network":"10.1.0.0/16","SubnetLen":26}"#);
        assert_eq!(
            render(&c, &key("10.1.17.64-26"), 1472, false),
            "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.17.65/26\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n"
        );
    }

    #[test]
    fn dual_stack_golden() {
        let c = config(
            r#"{"EnableIPv6":true,"Network":"100.96.0.0/16","IPv6Network":"fd00:100:96::/48","Backend":{"Type":"vxlan"}}"#,
        );
        assert_eq!(
            render(&c, &key("100.96.1.0-24&fd00:100:96:1::-64"), 1450, true),
            "FLANNEL_NETWORK=100.96.0.0/16\n\
             FLANNEL_SUBNET=100.96.1.1/24\n\
             FLANNEL_IPV6_NETWORK=fd00:100:96::/48\n\
             FLANNEL_IPV6_SUBNET=fd00:100:96:1::1/64\n\
             FLANNEL_MTU=1450\n\
             FLANNEL_IPMASQ=true\n"
        );
    }

    #[test]
    fn ipv6_only_golden() {
        let c = config(
            r#"{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:100:96::/48","Backend":{"Type":"host-gw"}}"#,
        );
        assert_eq!(
            render(&c, &key("0.0.0.0-0&fd00:100:96:7::-64"), 1500, false),
            "FLANNEL_IPV6_NETWORK=fd00:100:96::/48\nFLANNEL_IPV6_SUBNET=fd00:100:96:7::1/64\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"
        );
    }

    #[test]
    fn write_atomic_creates_replaces_and_leaves_no_temporary_files() {
        let t = TempDir::new("subnet-env");
        let path = t.0.join("run").join("flannel").join("subnet.env");
        write_atomic(&path, "FLANNEL_MTU=1450\n").expect("first write");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "FLANNEL_MTU=1450\n"
        );
        let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let dir_mode = fs::metadata(path.parent().expect("has a parent"))
            .expect("stat dir")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o700, 0o700, "{dir_mode:o}");

        write_atomic(&path, "FLANNEL_MTU=1400\n").expect("second write");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "FLANNEL_MTU=1400\n"
        );
        let names: Vec<_> = fs::read_dir(path.parent().expect("has a parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["subnet.env"]);
    }

    #[test]
    fn write_or_keep_writes_and_returns_a_failure_that_would_leave_other_values() {
        let t = TempDir::new("subnet-env-keep");
        let path = t.0.join("subnet.env");
        write_or_keep(&path, "FLANNEL_MTU=1450\n").expect("written");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "FLANNEL_MTU=1450\n"
        );
        // Unwritable (a directory is in the way) and not holding these values.
        let taken = t.0.join("taken");
        fs::create_dir(&taken).expect("mkdir");
        let err = write_or_keep(&taken, "FLANNEL_MTU=1450\n").expect_err("a directory");
        assert!(
            matches!(&err, Error::Io { path, .. } if *path == taken),
            "{err}"
        );
    }

    #[test]
    fn write_atomic_errors_name_the_path() {
        let t = TempDir::new("subnet-env-err");
        // The target is a directory: the rename fails, the old entry stays.
        let dir_target = t.0.join("taken");
        fs::create_dir(&dir_target).expect("mkdir");
        let err = write_atomic(&dir_target, "x").expect_err("a directory");
        assert!(
            matches!(&err, Error::Io { path, .. } if *path == dir_target),
            "{err}"
        );
        assert!(
            err.to_string().contains("cannot replace the subnet file"),
            "{err}"
        );
        assert_eq!(fs::read_dir(&t.0).expect("list").count(), 1);

        // A parent that is a file cannot be created.
        let file = t.0.join("file");
        fs::write(&file, "").expect("write");
        let err = write_atomic(&file.join("subnet.env"), "x").expect_err("parent is a file");
        assert!(
            matches!(&err, Error::Io { path, .. } if *path == file),
            "{err}"
        );

        let err = write_atomic(Path::new("/"), "x").expect_err("no file name");
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
    }
}
