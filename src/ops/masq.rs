//! `--ip-masq`: flannel's FLANNEL-POSTRTG rules, in an nftables table of
//! ringlay's own (`table ip ringlay`), created at start and deleted on exit.
//!
//! The rules, in flannel's order (its `MasqRules`), for the cluster network `N`
//! and this host's lease `S`:
//!
//! 1. packets kube-proxy marked (`0x4000/0x4000`) are left alone (no double NAT);
//! 2. `N → N`: pod to pod, never masqueraded;
//! 3. `!N → S`: traffic from outside to our pods keeps its source;
//! 4. `N → !224.0.0.0/4`: pods leaving the cluster network are masqueraded;
//! 5. `!N → N`: the host talking to remote pods is masqueraded (so that the
//!    replies come back through the overlay).
//!
//! The table is written with `nft -f -` (one atomic transaction, replacing any
//! leftover of a previous run) and deleted with `nft delete table ip ringlay`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::{Error, Result};

/// The nftables table ringlay owns.
pub const TABLE: &str = "ringlay";

/// The nft script that (re)creates the table for `network` and our `subnet`.
pub fn script(network: Ipv4Net, subnet: Ipv4Net) -> String {
    format!(
        "table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tmeta mark & 0x4000 == 0x4000 return comment \"kube-proxy marked: no double NAT\"\n\
         \t\tip saddr {network} ip daddr {network} return comment \"pod to pod\"\n\
         \t\tip saddr != {network} ip daddr {subnet} return comment \"to our pods from outside\"\n\
         \t\tip saddr {network} ip daddr != 224.0.0.0/4 masquerade fully-random comment \"pods leaving the cluster network\"\n\
         \t\tip saddr != {network} ip daddr {network} masquerade fully-random comment \"host to remote pods\"\n\
         \t}}\n\
         }}\n"
    )
}

/// The installed rules; dropping it deletes the table.
#[derive(Debug)]
pub struct IpMasq {
    _private: (),
}

impl IpMasq {
    /// Creates the table for `network` and our `subnet`.
    pub fn install(network: Ipv4Net, subnet: Ipv4Net) -> Result<IpMasq> {
        nft(&script(network, subnet))
            .map_err(|e| Error::setup("--ip-masq: creating nftables table ip ringlay", e))?;
        tracing::info!(network = %network, subnet = %subnet, "ip-masq: masquerading traffic leaving {network} (nftables table ip {TABLE})");
        Ok(IpMasq { _private: () })
    }
}

impl Drop for IpMasq {
    fn drop(&mut self) {
        match nft(&format!("delete table ip {TABLE}\n")) {
            Ok(()) => tracing::info!("ip-masq: removed nftables table ip {TABLE}"),
            Err(e) => tracing::error!("ip-masq: removing nftables table ip {TABLE}: {e}"),
        }
    }
}

/// Runs `nft -f -` with `script` on its standard input.
fn nft(script: &str) -> std::io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("running nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "nft failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_flannels_masq_rules() {
        let n: Ipv4Net = "100.96.0.0/16".parse().expect("literal");
        let s: Ipv4Net = "100.96.1.0/24".parse().expect("literal");
        let text = script(n, s);
        let rules: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.ends_with('"'))
            .collect();
        assert_eq!(rules.len(), 5, "{text}");
        assert!(rules[1].starts_with("ip saddr 100.96.0.0/16 ip daddr 100.96.0.0/16 return"));
        assert!(rules[2].starts_with("ip saddr != 100.96.0.0/16 ip daddr 100.96.1.0/24 return"));
        assert!(rules[3].contains("daddr != 224.0.0.0/4 masquerade"));
        assert!(text.contains("type nat hook postrouting priority srcnat"));
    }
}
