//! The control loop: one for every lease source and every backend.
//!
//! | what | does |
//! |------|------|
//! | a new lease set from the source | routes the new set drops are withdrawn, the new table published, then the routes synced |
//! | SIGHUP | the source re-reads (the static file; etcd has nothing to re-read) |
//! | every [`RECONCILE_INTERVAL`] | the backend's routes are reconciled with the leases, so a route deleted by hand comes back |
//! | SIGUSR1 | every worker's counters and the route counters are logged |
//! | every [`HEALTH_INTERVAL`] | a worker that exited ends the daemon with an error |
//! | the source ends | the daemon ends, with its error (our lease was taken) |
//! | SIGTERM, SIGINT | the daemon stops cleanly |
//!
//! Invariant: *routes ⊆ table*. A direct route (host-gw, DirectRouting) always has
//! its peer in the published table: routes are withdrawn before a table without
//! their peer is published, and added only after a table with it.

use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::backend::routes::RECONCILE_INTERVAL;
use crate::backend::Installed;
use crate::config::{Lease, NetworkConfig};
use crate::control::source::{Event, LeaseSource};
use crate::control::{self, LocalLease};
use crate::table::Table;
use crate::{Error, Result};

/// How often the loop checks that every worker still runs.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// What the loop acts on, besides the source.
struct Host<'a> {
    backend: &'a mut Installed,
    table: &'a Table,
    config: &'a NetworkConfig,
    local: &'a LocalLease,
    leases: Vec<Lease>,
}

/// Runs until SIGTERM or SIGINT (`Ok`), the source ends, or a worker exits.
pub async fn run(
    source: &mut LeaseSource,
    backend: &mut Installed,
    table: &Table,
    config: &NetworkConfig,
    local: &LocalLease,
    leases: Vec<Lease>,
) -> Result<()> {
    let mut host = Host {
        backend,
        table,
        config,
        local,
        leases,
    };
    let mut signals = Signals::install()?;
    let mut reconcile = tokio::time::interval_at(
        tokio::time::Instant::now() + RECONCILE_INTERVAL,
        RECONCILE_INTERVAL,
    );
    let mut health = tokio::time::interval(HEALTH_INTERVAL);
    loop {
        tokio::select! {
            _ = signals.term.recv() => { tracing::info!("SIGTERM: stopping"); return Ok(()); }
            _ = signals.int.recv() => { tracing::info!("SIGINT: stopping"); return Ok(()); }
            _ = signals.usr1.recv() => host.backend.log_counters(),
            _ = signals.hup.recv() => {
                let event = source.hangup();
                host.apply(event)?;
            }
            event = source.next() => host.apply(event)?,
            _ = reconcile.tick() => host.sync_routes("reconcile"),
            _ = health.tick() => host.backend.check_running()?,
        }
    }
}

impl Host<'_> {
    /// Acts on one event of the source; `Err` ends the loop.
    fn apply(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Idle => Ok(()),
            Event::Ended(Ok(())) => Err(Error::setup(
                "following the leases",
                std::io::Error::other("the lease source ended"),
            )),
            Event::Ended(Err(e)) => Err(e),
            Event::Leases {
                leases,
                changed,
                why,
            } => {
                if changed {
                    if let Some(r) = self.backend.routes() {
                        // Routes ⊆ table: dropped peers' routes go before their entries.
                        r.withdraw(&leases, why);
                    }
                    self.publish(&leases, why);
                }
                self.leases = leases;
                self.sync_routes(why);
                Ok(())
            }
        }
    }

    fn publish(&self, leases: &[Lease], why: &str) {
        let snapshot = control::build_snapshot(self.config, leases, &self.local.key);
        let generation = self.table.publish(snapshot);
        tracing::info!(
            generation,
            peers = leases.iter().filter(|l| l.key != self.local.key).count(),
            reason = why,
            "published a new table"
        );
    }

    fn sync_routes(&mut self, why: &str) {
        if let Some(r) = self.backend.routes() {
            r.sync(&self.leases, why);
        }
    }
}

/// The signals the loop answers.
struct Signals {
    hup: Signal,
    usr1: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        let sig =
            |k: SignalKind| signal(k).map_err(|e| Error::setup("installing signal handlers", e));
        Ok(Signals {
            hup: sig(SignalKind::hangup())?,
            usr1: sig(SignalKind::user_defined1())?,
            term: sig(SignalKind::terminate())?,
            int: sig(SignalKind::interrupt())?,
        })
    }
}
