//! The last steps of start-up, the same for every backend and lease source:
//! masquerade traffic leaving the cluster network (`--ip-masq`), tell the
//! container runtime our lease (`subnet.env`, as flanneld writes it), then drop
//! every capability the running daemon no longer needs ([`privilege`]).
//!
//! Order matters: the masquerade rules and subnet.env need CAP_NET_ADMIN and
//! root's file permissions, which the privilege drop gives up. A failure returns
//! an error; the masquerade table already installed is deleted as its owner is
//! dropped, and the caller drops the backend.

use crate::backend::Installed;
use crate::config::NetworkConfig;
use crate::control::{self, LocalLease};
use crate::ops::masq::IpMasq;
use crate::privilege;
use crate::Result;

use super::Options;

/// Installs the masquerade rules if asked, writes subnet.env and drops the
/// capabilities; returns the masquerade rules, which are removed when dropped.
pub fn finish(
    opts: &Options,
    config: &NetworkConfig,
    local: &LocalLease,
    backend: &Installed,
) -> Result<Option<IpMasq>> {
    let masq = if opts.ip_masq {
        masquerade(config, local)?
    } else {
        None
    };
    let env = control::subnet_env::render(config, &local.key, backend.mtu(), opts.ip_masq);
    control::subnet_env::write_or_keep(&opts.subnet_file, &env)?;
    let needs = privilege::needs(backend.route_privilege(), masq.is_some());
    privilege::drop_after_setup(&needs)?;
    Ok(masq)
}

/// flanneld's `--ip-masq` for the IPv4 network; nothing without one.
fn masquerade(config: &NetworkConfig, local: &LocalLease) -> Result<Option<IpMasq>> {
    match (config.ipv4.as_ref(), local.key.v4) {
        (Some(c), Some(subnet)) => IpMasq::install(c.network, subnet).map(Some),
        _ => {
            tracing::warn!("--ip-masq: no IPv4 network or lease; nothing to masquerade");
            Ok(None)
        }
    }
}
