//! `ringlay run`: the daemon's life, start to stop, as one short sequence.
//!
//! 1. check CAP_NET_ADMIN; start the operator endpoints ([`ops`]: metrics, health,
//!    the status socket), so that `/readyz` answers 503 during start-up;
//! 2. start the lease source ([`LeaseSource`]: the static file; etcd — wait for
//!    the config, acquire our lease, list the others; or Kubernetes — wait for our
//!    Node's podCIDR, write our annotations, list the Nodes) and publish the table
//!    of every other lease;
//! 3. as soon as the source has the network config (inside 2, before any lease
//!    is written), find this host's place on the underlay for the config's
//!    address families ([`Underlay`]: `--iface`, `--iface-regex`,
//!    `--iface-can-reach`, else the interface of `--public-ip` / `--public-ipv6`,
//!    else the default route's);
//! 4. start the backend the config names ([`Installed`]: the TUN device and the
//!    workers for udp and vxlan, kernel routes for host-gw);
//! 5. finish as flanneld does ([`ready`]): the masquerade rules (`--ip-masq`),
//!    `subnet.env`, then drop every capability no longer needed; mark the daemon
//!    ready (`/readyz`) and log `ready`;
//! 6. run the control loop ([`control_loop`]) until SIGTERM or SIGINT (or the
//!    lease source ends: our lease was taken);
//! 7. stop: mark not ready, and drop everything in reverse order — the masquerade
//!    table, the backend (its routes first, then the workers and the TUN device,
//!    which the kernel removes with its address and route), the endpoints last.
//!
//! Any failure before 6 is one clear error; what was set up is undone by the
//! owners' `Drop`, so a failed start leaves nothing behind.

pub mod control_loop;
pub mod ready;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::underlay::{Criteria, Given, Stack};
use crate::backend::{Installed, TunnelOptions, Underlay};
use crate::config::{Backend, Features, NetworkConfig};
use crate::control::source::{LeaseSource, Started};
use crate::control::{self, LocalLease};
use crate::dataplane::{Offload, TunRead};
use crate::ops::{self, LeaseInfo};
use crate::sys::caps;
use crate::table::Table;
use crate::{Error, Result};

pub use crate::control::source::Source;

/// What `ringlay run` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the config and the leases come from.
    pub source: Source,
    /// The public IP peers reach us at, if given (`--public-ip`).
    pub public_ip: Option<Ipv4Addr>,
    /// The public IPv6 address peers reach us at, if given (`--public-ipv6`).
    pub public_ipv6: Option<Ipv6Addr>,
    /// How to choose the underlay interface (`--iface`, `--iface-regex`,
    /// `--iface-can-reach`); empty: by the public IP or the default route.
    pub underlay: Criteria,
    /// The TUN device's name.
    pub tun_name: String,
    /// Worker count; `None`: one per CPU this process may run on.
    pub queues: Option<usize>,
    /// Where to write subnet.env.
    pub subnet_file: PathBuf,
    /// Pin worker `k` to the `k`-th CPU this process may run on.
    pub pin_workers: bool,
    /// The offloads to use, where the kernel has them.
    pub offload: Offload,
    /// How long a busy worker spins before it sleeps (`--busy-poll`).
    pub busy_poll: std::time::Duration,
    /// How the workers read the TUN queues (`--tun-read`).
    pub tun_read: TunRead,
    /// Packets each TUN queue holds (`--tun-queue-len`).
    pub tun_queue_len: u32,
    /// The operator endpoints: metrics, health, the status socket.
    pub endpoints: ops::http::Endpoints,
    /// Masquerade traffic leaving the cluster network (flanneld's `--ip-masq`).
    pub ip_masq: bool,
}

impl Options {
    fn tunnel(&self) -> TunnelOptions {
        TunnelOptions {
            tun_name: self.tun_name.clone(),
            queues: self.queues,
            pin_workers: self.pin_workers,
            offload: self.offload,
            busy_poll: self.busy_poll,
            tun_read: self.tun_read,
            tun_queue_len: self.tun_queue_len,
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(opts: Options) -> Result<()> {
    require_net_admin()?;
    let runtime = control_runtime()?;
    let state = ops::State::new();
    let _endpoints = ops::http::Server::start(&opts.endpoints, Arc::clone(&state))?;
    let mut placed: Option<(Underlay, Stack)> = None;
    let place = |config: &NetworkConfig| {
        Installed::check(config)?;
        let stack = stack_of(config)?;
        let under = Underlay::find(&opts.underlay, given(&opts), stack)?;
        let publics = under.publics();
        placed = Some((under, stack));
        Ok(publics)
    };
    let start = LeaseSource::start(&opts.source, &opts.subnet_file, advertised(&opts), place);
    let Some(started) = runtime.block_on(unless_stopped(start))? else {
        // Waiting for etcd's config or our Node's podCIDR: nothing set up yet.
        tracing::info!("stopped by a signal before a lease was held");
        return Ok(());
    };
    let (mut under, stack) =
        placed.expect("every lease source places the underlay before it holds a lease");
    let Started {
        config,
        local,
        leases,
        follow_stats,
        kube_stats,
        mut source,
    } = started;
    if let Some(stats) = follow_stats {
        state.set_follow(stats);
    }
    if let Some(stats) = kube_stats {
        state.set_kube(stats);
    }
    let v6_moved = local.public_ipv6.is_some() && local.public_ipv6 != under.public_ipv6;
    if local.public_ip != under.public_ip || v6_moved {
        // The source named another public address (Kubernetes' node-public-ip
        // and node-public-ipv6 annotations, which flanneld takes as --public-ip
        // and --public-ipv6; a static lease's PublicIPv6): chosen again with it.
        let again = Given {
            public_ip: Some(local.public_ip).filter(|a| !a.is_unspecified()),
            public_ipv6: local.public_ipv6.or(opts.public_ipv6),
        };
        under = Underlay::find(&opts.underlay, again, stack)?;
    }
    let table = Table::new();
    table.publish(control::build_snapshot(&config, &leases, &local.key));
    state.set_table(&table);
    let mut backend = Installed::start(&config, &local, &under, &leases, &table, &opts.tunnel())?;
    state.set_lease(lease_info(&config, &local, &backend));
    if let Installed::Tunnel(t) = &backend {
        state.set_dataplane(t.dataplane().stats(), t.offload());
    }
    let masq = ready::finish(&opts, &config, &local, &backend)?;
    state.set_ready(true);
    log_ready(&config, &local, &under, &leases, &backend);

    let result = runtime.block_on(control_loop::run(
        &mut source,
        &mut backend,
        &table,
        &config,
        &local,
        leases,
    ));
    drop(source);
    state.set_ready(false);
    drop(masq);
    drop(backend);
    result
}

/// The public addresses the flags give.
fn given(opts: &Options) -> Given {
    Given {
        public_ip: opts.public_ip,
        public_ipv6: opts.public_ipv6,
    }
}

/// The address families of `config` (EnableIPv4, EnableIPv6).
fn stack_of(config: &NetworkConfig) -> Result<Stack> {
    Stack::of(config.ipv4.is_some(), config.ipv6.is_some()).ok_or_else(|| {
        Error::invalid(
            "EnableIPv4",
            false,
            "true, or EnableIPv6 true: the network config enables no address family",
        )
    })
}

/// `start`, unless SIGTERM or SIGINT comes first (`None`): a lease source may
/// wait long at start (for etcd's config, for our Node's podCIDR), and a stop
/// then must not wait for it.
async fn unless_stopped<T>(
    start: impl std::future::Future<Output = Result<T>>,
) -> Result<Option<T>> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k: SignalKind| signal(k).map_err(|e| Error::setup("installing signal handlers", e));
    let (mut term, mut int) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    tokio::select! {
        r = start => r.map(Some),
        _ = term.recv() => Ok(None),
        _ = int.recv() => Ok(None),
    }
}

/// What our lease tells ringlay peers: with TUN offloads requested (a virtio
/// header on every TUN write), partial inner checksums are ours to hand to the
/// kernel, so peers may leave them partial.
fn advertised(opts: &Options) -> Features {
    Features {
        partial_csum: opts.offload.tso,
    }
}

fn require_net_admin() -> Result<()> {
    if caps::has_cap_net_admin() {
        return Ok(());
    }
    Err(Error::Privilege(
        "ringlay run needs CAP_NET_ADMIN to create its TUN device and routes: run it as \
         root (or grant the capability, e.g. AmbientCapabilities=CAP_NET_ADMIN)"
            .into(),
    ))
}

/// The control plane's runtime: one thread.
fn control_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // No idle blocking threads: one started before the capabilities are
        // dropped would keep them (see `privilege`).
        .thread_keep_alive(Duration::ZERO)
        .build()
        .map_err(|e| Error::setup("starting the control runtime", e))
}

/// What `ringlay status` shows of this host's lease.
fn lease_info(config: &NetworkConfig, local: &LocalLease, backend: &Installed) -> LeaseInfo {
    LeaseInfo {
        subnet: ops::subnets(&local.key),
        public_ip: local.public_ip,
        public_ipv6: local.public_ipv6,
        vtep_mac: matches!(config.backend, Backend::Vxlan { .. })
            .then(|| local.vtep_mac.to_string()),
        backend: config.backend.backend_type().as_str().to_owned(),
        tun: backend.tun_name().map(str::to_owned),
    }
}

fn log_ready(
    config: &NetworkConfig,
    local: &LocalLease,
    under: &Underlay,
    leases: &[crate::config::Lease],
    backend: &Installed,
) {
    let peers = leases.iter().filter(|l| l.key != local.key).count();
    let backend_type = config.backend.backend_type().as_str();
    let mtu = backend.mtu();
    match backend {
        Installed::Tunnel(t) => tracing::info!(
            tun = %t.tun_name(), subnet = %local.key, public_ip = %under.public_ip,
            public_ipv6 = %show6(under.public_ipv6),
            iface = %under.iface, mtu, backend = backend_type,
            workers = t.dataplane().stats().len(), peers,
            "ready: forwarding"
        ),
        Installed::HostGw(_) => tracing::info!(
            subnet = %local.key, public_ip = %under.public_ip,
            public_ipv6 = %show6(under.public_ipv6), iface = %under.iface, mtu,
            backend = backend_type, peers,
            "ready: routing (host-gw, route protocol {})",
            crate::backend::routes::ROUTE_PROTOCOL
        ),
    }
}

/// An optional IPv6 address for a log line: `-` for none.
fn show6(a: Option<Ipv6Addr>) -> String {
    a.map_or_else(|| "-".to_owned(), |a| a.to_string())
}
