//! The static-leases pipeline on arbitrary files: `StaticLeases::parse` never
//! panics, and for a file it accepts, picking each node's lease, building its table
//! and rendering its subnet.env never panic either, and the table never holds the
//! node's own lease.

use crate::backend::mtu::tunnel_mtu;
use crate::control::{build_snapshot, find_local, subnet_env, Publics, StaticLeases};

/// Runs the target on one input; it panics (a failed check) only on a bug.
pub fn run(data: &[u8]) {
    let Ok(file) = StaticLeases::parse(data) else {
        return;
    };
    for lease in &file.leases {
        let public = Publics {
            v4: lease.attrs.public_ip,
            v6: lease.attrs.public_ipv6,
        };
        let Ok(local) = find_local(&file.leases, public) else {
            continue;
        };
        let snapshot = build_snapshot(&file.config, &file.leases, &local.key);
        assert_eq!(snapshot.len(), file.leases.len() - 1);
        assert!(snapshot.peers().iter().all(|p| p.key != local.key));
        let mtu = tunnel_mtu(&file.config.backend, 1500, false);
        let env = subnet_env::render(&file.config, &local.key, mtu, true);
        assert!(env.ends_with("FLANNEL_IPMASQ=true\n"), "{env}");
    }
}
