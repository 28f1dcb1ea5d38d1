//! Multi-host test networks in network namespaces, following the project's test
//! traffic rules: every namespace is created here with a unique name
//! (`<prefix>-<pid>-<n>`), joined to the others only by veth pairs, addressed from
//! the documentation ranges, and deleted by a guard, also when the test panics.
//!
//! - [`Netns`]: one namespace. Runs commands in it ([`Netns::exec`],
//!   [`Netns::sh`]) and starts background processes ([`Netns::spawn`]) that its
//!   `Drop` ends by PID (SIGTERM, SIGKILL after 2 s) before deleting the namespace.
//! - [`Cluster`]: hosts `h1..hn` on the underlay 192.0.2.0/24 (two hosts share a
//!   veth pair; three or more hang off a bridge in a "switch" namespace), each with a
//!   container `ci` at 100.96.i.2/24 and fd00:100:96:i::2/64 behind it, as a CNI
//!   bridge would set it up. [`Cluster::kernel_vxlan_node`] turns a host into a
//!   flannel vxlan node made of the kernel's vxlan device;
//!   [`Cluster::ringlay`] runs the daemon on a host and returns a [`Daemon`] guard.
//! - IPv6 underlays ([`Underlay`]): [`Cluster::dual_stack`] adds 2001:db8::i/64 to
//!   every host's `eth0`, [`Cluster::ipv6_only`] gives `eth0` that address alone
//!   and the containers IPv6 only; both are on a switch.
//!   [`Cluster::kernel_vxlan_node_dual`] / [`Cluster::kernel_vxlan_node_for`]
//!   make a host a flanneld dual-stack vxlan node (`flannel.1` and
//!   `flannel-v6.1`), [`VxlanLease`] is a lease as flanneld writes it, and
//!   [`Cluster::count_underlay_sends`] counts (nftables) what a host sends to
//!   each peer over each underlay family.
//! - [`require_root`]: the skip-or-fail check for tests that need namespaces.
//!
//! Pure std: processes are signalled with `kill(1)`, and a recorded PID is only
//! signalled while `/proc/<pid>/stat` still shows the start time it had at spawn,
//! so a PID reused by an unrelated process is never touched.

use std::env;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The cluster network, as in the leases' `config.Network`.
pub const NETWORK: &str = "100.96.0.0/16";
/// Default MTU of the container veths: flannel's vxlan MTU (1500 − 50), which
/// the udp backend's 1472 also carries.
pub const CONTAINER_MTU: u32 = 1450;
/// Name of the host side of each container's veth.
pub const CONTAINER_VETH: &str = "veth-c";
/// How long [`Cluster::ringlay`] waits for `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The nftables table of [`Cluster::count_underlay_sends`].
pub const NFT_TABLE: &str = "ringlay_test";
/// Grace period between SIGTERM and SIGKILL for processes a [`Netns`] ends.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long [`Daemon::terminate`] waits after SIGTERM.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(5);
/// iperf3's control and data port in the server container.
const IPERF_PORT: u16 = 5201;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// `<prefix>-<pid>-<n>`: unique per process and per call.
pub fn unique_name(prefix: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// True when running under CI, where a missing privilege is a failure, not a skip.
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v == "true")
}

/// True when the effective user is root (read from `/proc/self/status`).
pub fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether `test` can run: true as root. Otherwise prints why it skips and
/// returns false, or panics when `CI=true` (CI runs as root; a skip there would
/// hide a broken setup).
pub fn require_root(test: &str) -> bool {
    if is_root() {
        return true;
    }
    let reason = format!("{test}: needs root (network namespaces)");
    if in_ci() {
        panic!("CI=true and {reason}");
    }
    eprintln!("skipping {reason}");
    false
}

/// Whether the command `cmd` is installed, for a test that needs it. Outside CI a
/// missing one skips the test with the reason and the Debian `package` to install;
/// with `CI=true` it fails.
pub fn require_command(test: &str, cmd: &str, package: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!in_ci(), "{test}: {cmd} is not installed");
        eprintln!("{test}: skipped: {cmd} is not installed (Debian: {package})");
    }
    found
}

/// Polls `check` every 100 ms until it holds (true) or `within` has passed (false).
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Replaces `path` atomically (temporary file + rename), so that a daemon's edit
/// poll never reads a half-written file.
pub fn replace_file(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
}

// --- processes ------------------------------------------------------------------

/// A process identified by PID and start time (field 22 of `/proc/<pid>/stat`).
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: u32,
    start: u64,
}

/// State letter and start time of `pid`, if it exists.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

impl Proc {
    fn of(pid: u32) -> Option<Proc> {
        proc_stat(pid).map(|(_, start)| Proc { pid, start })
    }

    /// Running (not gone, not a zombie, and not a reused PID).
    fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((s, start)) if start == self.start && s != 'Z' && s != 'X')
    }

    fn signal(&self, sig: &str) {
        if self.alive() {
            signal(self.pid, sig);
        }
    }

    /// Waits until the process is no longer running; false on timeout.
    fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.alive() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// SIGTERM, then SIGKILL if still running after `grace`.
    fn stop(&self, grace: Duration) {
        if !self.alive() {
            return;
        }
        self.signal("TERM");
        if !self.wait_gone(grace) {
            self.signal("KILL");
            self.wait_gone(Duration::from_secs(1));
        }
    }
}

/// Sends `sig` (a name such as `TERM`, `USR1`) to `pid` with `kill(1)`.
fn signal(pid: u32, sig: &str) -> bool {
    Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command in the current namespace and panics with its output on failure.
fn run(cmd: &[&str]) -> Output {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", cmd.join(" ")));
    assert!(
        out.status.success(),
        "{} failed ({}):\nstdout: {}\nstderr: {}",
        cmd.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

// --- Netns ------------------------------------------------------------------------

/// A network namespace created by this test; `Drop` ends the processes started with
/// [`Netns::spawn`] (by PID) and deletes the namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    procs: Mutex<Vec<Proc>>,
}

impl Netns {
    /// Creates `<prefix>-<pid>-<n>` with `lo` up and IPv6 DAD off (a tentative
    /// address would hold NDP back for ~2 s). Panics if `ip netns add` fails.
    pub fn new(prefix: &str) -> Netns {
        let name = unique_name(prefix);
        run(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name,
            procs: Mutex::new(Vec::new()),
        };
        ns.sh("ip link set lo up
             sysctl -qw net.ipv6.conf.all.accept_dad=0
             sysctl -qw net.ipv6.conf.default.accept_dad=0");
        ns
    }

    /// The namespace's name (as `ip netns list` shows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <name> cmd...`, stdin closed, not yet started. `ip netns exec`
    /// execs the command, so a started child's PID is the command's own.
    pub fn command(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(cmd);
        c.stdin(Stdio::null());
        c
    }

    /// Runs `cmd` in the namespace to completion and returns its output, whatever
    /// its exit status. Panics only if it cannot be started.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        let mut c = self.command(cmd);
        c.output()
            .unwrap_or_else(|e| panic!("running {}: {e}", describe(&c)))
    }

    /// Runs `script` with `sh -ec` in the namespace and returns its stdout; panics
    /// with stdout and stderr if it fails.
    pub fn sh(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-ec", script]);
        assert!(
            out.status.success(),
            "in {}: script failed ({}):\n{script}\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `cmd` in the namespace with stdout and stderr piped (read them, or
    /// use [`Netns::spawn_command`] with other `Stdio`s for chatty processes). The
    /// process is ended at drop if still running: SIGTERM, then SIGKILL after 2 s.
    pub fn spawn(&self, cmd: &[&str]) -> Child {
        let mut c = self.command(cmd);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.spawn_command(c)
    }

    /// Starts a command built by [`Netns::command`] and registers it like
    /// [`Netns::spawn`] does.
    pub fn spawn_command(&self, mut cmd: Command) -> Child {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", describe(&cmd)));
        // The child is not reaped before the caller waits for it, so its stat is there.
        if let Some(p) = Proc::of(child.id()) {
            self.procs.lock().unwrap_or_else(|e| e.into_inner()).push(p);
        }
        child
    }

    /// Ends every registered process that is still running (SIGTERM, then SIGKILL
    /// after 2 s).
    pub fn stop_all(&self) {
        let procs: Vec<Proc> = self
            .procs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for p in &procs {
            p.signal("TERM");
        }
        for p in &procs {
            p.stop(KILL_GRACE);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.stop_all();
        let out = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "ip netns delete {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("ip netns delete {}: {e}", self.name),
        }
    }
}

// --- Cluster ----------------------------------------------------------------------

/// How [`Cluster`] starts a ringlay daemon, beyond its arguments.
struct Launch<'a> {
    /// Runs ringlay (exec'ing it): empty for none.
    wrapper: &'a [&'a str],
    /// Extra environment variables.
    env: &'a [(&'a str, &'a str)],
    /// Put the status socket in the cluster's directory.
    socket_in_dir: bool,
}

/// Hosts and their containers (see the module docs). Dropping it ends every
/// process started in its namespaces, deletes the namespaces and its temporary
/// directory.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: containers, hosts, then the switch.
    containers: Vec<Netns>,
    hosts: Vec<Netns>,
    switch: Option<Netns>,
    dir: PathBuf,
    underlay: Underlay,
}

/// The address families of the hosts' underlay (`eth0`) and of the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underlay {
    /// `eth0` holds 192.0.2.i/24 only; containers have IPv4 and IPv6.
    V4,
    /// `eth0` holds 192.0.2.i/24 and 2001:db8::i/64; containers have IPv4 and IPv6.
    Dual,
    /// `eth0` holds 2001:db8::i/64 and no IPv4 address at all; containers have
    /// IPv6 only (fd00:100:96:i::2/64 via fd00:100:96:i::1).
    V6Only,
}

impl Underlay {
    /// Whether hosts have an IPv4 underlay address (and containers an IPv4 address).
    pub fn has_v4(self) -> bool {
        self != Underlay::V6Only
    }

    /// Whether hosts have an IPv6 underlay address.
    pub fn has_v6(self) -> bool {
        self != Underlay::V4
    }
}

/// `0e:00:00:00:0i:00`, host i's VtepMAC (locally administered, fixed).
pub fn vtep_mac(i: usize) -> String {
    format!("0e:00:00:00:{i:02x}:00")
}

/// `02:00:c0:00:02:0i`, host i's underlay `eth0` MAC (fixed for readable captures).
pub fn underlay_mac(i: usize) -> String {
    format!("02:00:c0:00:02:{i:02x}")
}

impl Cluster {
    /// Two hosts whose `eth0`s are the two ends of one veth pair.
    pub fn two_hosts(prefix: &str) -> Cluster {
        Cluster::hosts(prefix, 2)
    }

    /// `n` hosts (2 ≤ n ≤ 250). With n ≥ 3 every host's `eth0` is a veth into a
    /// bridge `br0` in a switch namespace `<prefix>-sw-<pid>-<k>`. Host i is
    /// `<prefix>-h<i>-<pid>-<k>` and its container `<prefix>-c<i>-<pid>-<k>`.
    pub fn hosts(prefix: &str, n: usize) -> Cluster {
        Cluster::with_underlay(prefix, n, Underlay::V4)
    }

    /// `n` hosts (2 ≤ n ≤ 250) whose `eth0` also holds 2001:db8::i/64 (nodad),
    /// always on a switch (so that etcd can join it, see
    /// [`Cluster::attach_to_switch_at`]).
    pub fn dual_stack(prefix: &str, n: usize) -> Cluster {
        Cluster::with_underlay(prefix, n, Underlay::Dual)
    }

    /// `n` hosts (2 ≤ n ≤ 250) on a switch whose `eth0` holds 2001:db8::i/64 and
    /// no IPv4 address; containers have IPv6 only.
    pub fn ipv6_only(prefix: &str, n: usize) -> Cluster {
        Cluster::with_underlay(prefix, n, Underlay::V6Only)
    }

    /// `n` hosts with the given underlay. An IPv4 underlay of two hosts is one
    /// veth pair; every other cluster hangs off a switch.
    pub fn with_underlay(prefix: &str, n: usize, underlay: Underlay) -> Cluster {
        assert!((2..=250).contains(&n), "Cluster::hosts: n = {n}");
        let dir = env::temp_dir().join(unique_name(&format!("ringlay-{prefix}")));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        // Built in place so that a failure halfway drops what exists so far.
        let mut c = Cluster {
            containers: Vec::new(),
            hosts: Vec::new(),
            switch: None,
            dir,
            underlay,
        };
        for i in 1..=n {
            let h = Netns::new(&format!("{prefix}-h{i}"));
            h.sh("sysctl -qw net.ipv4.ip_forward=1
                 sysctl -qw net.ipv6.conf.all.forwarding=1");
            c.hosts.push(h);
            c.containers.push(Netns::new(&format!("{prefix}-c{i}")));
        }

        // underlay
        if n == 2 && underlay == Underlay::V4 {
            c.hosts[0].sh(&format!(
                "ip link add eth0 address {} type veth peer name eth0 address {} netns {}",
                underlay_mac(1),
                underlay_mac(2),
                c.hosts[1].name()
            ));
        } else {
            let sw = Netns::new(&format!("{prefix}-sw"));
            sw.sh("ip link add br0 type bridge stp_state 0 forward_delay 0\nip link set br0 up");
            c.switch = Some(sw);
            for i in 1..=n {
                c.switch().sh(&format!(
                    "ip link add p{i} type veth peer name eth0 address {} netns {}
                     ip link set p{i} master br0 up",
                    underlay_mac(i),
                    c.hosts[i - 1].name()
                ));
            }
        }
        for i in 1..=n {
            let mut script = String::new();
            if underlay.has_v4() {
                script += &format!("ip addr add {}/24 dev eth0\n", c.underlay_ip(i));
            }
            if underlay.has_v6() {
                script += &format!("ip addr add {}/64 dev eth0 nodad\n", c.underlay_ip6(i));
            }
            script += "ip link set eth0 up";
            c.host(i).sh(&script);
        }

        // containers: host side veth-c 100.96.i.1 and fd00:100:96:i::1, container
        // side eth0 100.96.i.2 and fd00:100:96:i::2 (no IPv4 with a V6Only underlay)
        for i in 1..=n {
            let v4 = underlay.has_v4();
            let host4 = if v4 {
                format!("ip addr add 100.96.{i}.1/24 dev {CONTAINER_VETH}\n")
            } else {
                String::new()
            };
            c.host(i).sh(&format!(
                "ip link add {v} mtu {m} type veth peer name eth0 netns {cn}
                 {host4}ip addr add fd00:100:96:{i}::1/64 dev {v} nodad
                 ip link set {v} up",
                v = CONTAINER_VETH,
                m = CONTAINER_MTU,
                cn = c.container(i).name()
            ));
            let ctr4 = if v4 {
                format!(
                    "ip addr add {ip}/24 dev eth0\nip link set eth0 up\nip route add default via 100.96.{i}.1\n",
                    ip = c.container_ip(i)
                )
            } else {
                "ip link set eth0 up\n".to_owned()
            };
            c.container(i).sh(&format!(
                "ip link set eth0 mtu {m}
                 ip addr add {ip6}/64 dev eth0 nodad
                 {ctr4}ip -6 route add default via fd00:100:96:{i}::1",
                m = CONTAINER_MTU,
                ip6 = c.container_ip6(i)
            ));
        }
        c
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Always false: a cluster has at least two hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host i (1-based).
    pub fn host(&self, i: usize) -> &Netns {
        assert!((1..=self.len()).contains(&i), "no host {i}");
        &self.hosts[i - 1]
    }

    /// Container i (1-based), behind host i.
    pub fn container(&self, i: usize) -> &Netns {
        assert!((1..=self.len()).contains(&i), "no container {i}");
        &self.containers[i - 1]
    }

    /// The switch namespace (clusters of three or more hosts).
    pub fn switch(&self) -> &Netns {
        self.switch
            .as_ref()
            .expect("a two-host cluster has no switch")
    }

    /// Every namespace of the cluster, by name.
    pub fn namespace_names(&self) -> Vec<String> {
        self.hosts
            .iter()
            .chain(&self.containers)
            .chain(&self.switch)
            .map(|n| n.name().to_owned())
            .collect()
    }

    /// The cluster's temporary directory (leases and subnet files); removed at drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// 192.0.2.i, host i's `eth0` (its lease's PublicIP).
    pub fn underlay_ip(&self, i: usize) -> Ipv4Addr {
        underlay_ip(i)
    }

    /// 2001:db8::i, host i's IPv6 underlay address (its lease's PublicIPv6);
    /// only [`Underlay::Dual`] and [`Underlay::V6Only`] clusters have it.
    pub fn underlay_ip6(&self, i: usize) -> Ipv6Addr {
        underlay_ip6(i)
    }

    /// The families the hosts' underlay carries.
    pub fn underlay(&self) -> Underlay {
        self.underlay
    }

    /// 100.96.i.2, container i's address.
    pub fn container_ip(&self, i: usize) -> Ipv4Addr {
        container_ip(i)
    }

    /// fd00:100:96:i::2, container i's IPv6 address.
    pub fn container_ip6(&self, i: usize) -> Ipv6Addr {
        container_ip6(i)
    }

    /// Sets the MTU of container i's veth pair (both ends), e.g. to the
    /// `FLANNEL_MTU` the daemon wrote.
    pub fn set_container_mtu(&self, i: usize, mtu: u32) {
        self.host(i)
            .sh(&format!("ip link set {CONTAINER_VETH} mtu {mtu}"));
        self.container(i).sh(&format!("ip link set eth0 mtu {mtu}"));
    }

    /// Plugs namespace `ns` into the switch as `eth0` with `ip`/24 on the underlay
    /// (e.g. an etcd at 192.0.2.254 that every host reaches). Clusters of three or
    /// more hosts only; deleting `ns` unplugs it.
    pub fn attach_to_switch(&self, ns: &Netns, ip: Ipv4Addr) {
        let port = format!("px{}", ip.octets()[3]);
        self.switch().sh(&format!(
            "ip link add {port} type veth peer name eth0 netns {}
             ip link set {port} master br0 up",
            ns.name()
        ));
        ns.sh(&format!(
            "ip addr add {ip}/24 dev eth0\nip link set eth0 up"
        ));
    }

    /// Plugs namespace `ns` into the switch as `eth0` with `v4`/24 and `v6`/64
    /// (nodad), whichever are given: e.g. etcd at 2001:db8::fe on an IPv6-only
    /// underlay. Clusters on a switch only; deleting `ns` unplugs it.
    pub fn attach_to_switch_at(&self, ns: &Netns, v4: Option<Ipv4Addr>, v6: Option<Ipv6Addr>) {
        let tag = match (v4, v6) {
            (Some(a), _) => u16::from(a.octets()[3]),
            (None, Some(b)) => b.segments()[7],
            (None, None) => panic!("attach_to_switch_at: no address for {}", ns.name()),
        };
        let port = format!("px{tag:x}");
        self.switch().sh(&format!(
            "ip link add {port} type veth peer name eth0 netns {}
             ip link set {port} master br0 up",
            ns.name()
        ));
        let mut script = String::new();
        if let Some(a) = v4 {
            script += &format!("ip addr add {a}/24 dev eth0\n");
        }
        if let Some(b) = v6 {
            script += &format!("ip addr add {b}/64 dev eth0 nodad\n");
        }
        script += "ip link set eth0 up";
        ns.sh(&script);
    }

    /// Moves container i into the IPv6 `subnet` (a /64 of fd00:100:96::/48), as a
    /// CNI plugin would after reading `FLANNEL_IPV6_SUBNET`: the host side of its
    /// veth becomes `<subnet>::1`, the container `<subnet>::2` with its default
    /// route via `::1`. Returns the container's new address.
    pub fn readdress_container6(&self, i: usize, subnet: Ipv6Addr) -> Ipv6Addr {
        let base = u128::from(subnet);
        let (gw, ip) = (Ipv6Addr::from(base + 1), Ipv6Addr::from(base + 2));
        self.host(i).sh(&format!(
            "ip -6 addr flush dev {CONTAINER_VETH} scope global
             ip addr add {gw}/64 dev {CONTAINER_VETH} nodad"
        ));
        self.container(i).sh(&format!(
            "ip -6 addr flush dev eth0 scope global
             ip addr add {ip}/64 dev eth0 nodad
             ip -6 route replace default via {gw}"
        ));
        ip
    }

    /// Moves container i into `subnet` (a /24 of the cluster network), as a CNI
    /// plugin would after reading subnet.env: the host side of its veth becomes
    /// the subnet's first address, the container the second, with its default
    /// route via the first. Returns the container's new address.
    pub fn readdress_container(&self, i: usize, subnet: Ipv4Addr) -> Ipv4Addr {
        let base = u32::from(subnet);
        let (gw, ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        self.host(i).sh(&format!(
            "ip -4 addr flush dev {CONTAINER_VETH}\nip addr add {gw}/24 dev {CONTAINER_VETH}"
        ));
        self.container(i).sh(&format!(
            "ip -4 addr flush dev eth0
             ip addr add {ip}/24 dev eth0
             ip route replace default via {gw}"
        ));
        ip
    }

    /// [`static_leases_json`] for this cluster's hosts.
    pub fn static_leases_json(&self, backend: &str, vteps: bool) -> String {
        static_leases_json(self.len(), backend, vteps)
    }

    /// Makes host i a flannel vxlan node out of the kernel's vxlan device, as
    /// flannel's vxlan backend configures it: `flannel.1` (VNI 1, port 8472,
    /// nolearning, MTU 1450, VtepMAC `0e:00:00:00:0i:00`) with 100.96.i.0/32, and
    /// for every other host j a route `100.96.j.0/24 via 100.96.j.0 onlink`, a
    /// permanent neighbour 100.96.j.0 → j's VtepMAC and an fdb entry sending that
    /// MAC to 192.0.2.j. IPv6 rides the same device (fd00:100:96:i::/128, routes to
    /// fd00:100:96:j::/64), as in `scripts/capture-frames.sh`.
    pub fn kernel_vxlan_node(&self, i: usize) {
        let mut s = format!(
            "ip link add flannel.1 address {mac} type vxlan id 1 local {ip} dev eth0 dstport 8472 nolearning
             ip link set flannel.1 addrgenmode none
             ip link set flannel.1 mtu 1450 up
             ip addr add 100.96.{i}.0/32 dev flannel.1
             ip addr add fd00:100:96:{i}::/128 dev flannel.1 nodad\n",
            mac = vtep_mac(i),
            ip = self.underlay_ip(i)
        );
        for j in (1..=self.len()).filter(|&j| j != i) {
            s += &format!(
                "ip route add 100.96.{j}.0/24 via 100.96.{j}.0 dev flannel.1 onlink
                 ip neigh add 100.96.{j}.0 lladdr {mac} dev flannel.1 nud permanent
                 ip -6 route add fd00:100:96:{j}::/64 via fd00:100:96:{j}:: dev flannel.1 onlink
                 ip -6 neigh add fd00:100:96:{j}:: lladdr {mac} dev flannel.1 nud permanent
                 bridge fdb append {mac} dev flannel.1 dst {peer}\n",
                mac = vtep_mac(j),
                peer = self.underlay_ip(j)
            );
        }
        self.host(i).sh(&s);
    }

    /// Makes host i a dual-stack flanneld vxlan node (TESTBED.md) for the fixed
    /// leases of this cluster's hosts ([`VxlanLease::of_host`]): `flannel.1` over
    /// the IPv4 underlay and `flannel-v6.1` over the IPv6 one, as far as the
    /// cluster's [`Underlay`] has them, with a route, a permanent neighbour and an
    /// fdb entry for every other host. See [`Cluster::kernel_vxlan_node_for`].
    pub fn kernel_vxlan_node_dual(&self, i: usize) {
        let own = VxlanLease::of_host(i, self.underlay);
        let peers: Vec<VxlanLease> = (1..=self.len())
            .filter(|&j| j != i)
            .map(|j| VxlanLease::of_host(j, self.underlay))
            .collect();
        self.kernel_vxlan_node_for(i, &own, &peers);
    }

    /// Makes host i a flanneld vxlan node with lease `own` for the remote leases
    /// `peers`, as flannel's vxlan backend does it with `EnableIPv6`:
    ///
    /// - with an IPv4 half in `own`: `flannel.1` (VNI 1, `local` its PublicIP,
    ///   `dev eth0`, port 8472, nolearning, MTU 1450, its VtepMAC) holding the
    ///   subnet's network address as /32;
    /// - with an IPv6 half: `flannel-v6.1` (the same over its PublicIPv6, MTU
    ///   1430: the kernel's cap, 1500 − 70, for a 1500 IPv6 underlay; flanneld
    ///   asks for 1450 and gets 1430) holding the subnet's network address as
    ///   /128;
    /// - for each peer half that this node also has: `<subnet> via <subnet's
    ///   network address> onlink`, a permanent neighbour for that address with the
    ///   peer's VtepMAC of that family (`BackendData` for v4, `BackendV6Data` for
    ///   v6), and an fdb entry sending that MAC to the peer's PublicIP(v6).
    ///
    /// Offloads, checksums and MTUs stay as the kernel sets them (flanneld
    /// touches none of them); only `accept_ra` is off, as flanneld sets it.
    pub fn kernel_vxlan_node_for(&self, i: usize, own: &VxlanLease, peers: &[VxlanLease]) {
        let mut s = String::new();
        let v4 = own.v4.as_ref();
        let v6 = own.v6.as_ref();
        if let Some(h) = v4 {
            s += &format!(
                "ip link add flannel.1 address {mac} type vxlan id 1 local {ip} dev eth0 dstport 8472 nolearning
                 echo 0 > /proc/sys/net/ipv6/conf/flannel.1/accept_ra
                 ip link set flannel.1 mtu 1450 up
                 ip addr add {net}/32 dev flannel.1\n",
                mac = h.vtep_mac,
                ip = h.public_ip,
                net = h.subnet
            );
        }
        if let Some(h) = v6 {
            s += &format!(
                "ip link add flannel-v6.1 address {mac} type vxlan id 1 local {ip} dev eth0 dstport 8472 nolearning
                 echo 0 > /proc/sys/net/ipv6/conf/flannel-v6.1/accept_ra
                 ip link set flannel-v6.1 mtu 1430 up
                 ip addr add {net}/128 dev flannel-v6.1 nodad\n",
                mac = h.vtep_mac,
                ip = h.public_ip,
                net = h.subnet
            );
        }
        for p in peers {
            if let (Some(_), Some(r)) = (v4, &p.v4) {
                s += &format!(
                    "ip route add {net}/{len} via {net} dev flannel.1 onlink
                     ip neigh add {net} lladdr {mac} dev flannel.1 nud permanent
                     bridge fdb append {mac} dev flannel.1 dst {ip}\n",
                    net = r.subnet,
                    len = r.prefix_len,
                    mac = r.vtep_mac,
                    ip = r.public_ip
                );
            }
            if let (Some(_), Some(r)) = (v6, &p.v6) {
                s += &format!(
                    "ip -6 route add {net}/{len} via {net} dev flannel-v6.1 onlink
                     ip -6 neigh add {net} lladdr {mac} dev flannel-v6.1 nud permanent
                     bridge fdb append {mac} dev flannel-v6.1 dst {ip}\n",
                    net = r.subnet,
                    len = r.prefix_len,
                    mac = r.vtep_mac,
                    ip = r.public_ip
                );
            }
        }
        self.host(i).sh(&s);
    }

    /// Counts, in host i's namespace, the UDP datagrams it sends to `port` on each
    /// other host's underlay addresses: an nftables table `inet ringlay_test`
    /// with an output-hook chain and one named counter per peer and family,
    /// `v4_<j>` (`ip daddr 192.0.2.j udp dport PORT`) and `v6_<j>` (`ip6 daddr
    /// 2001:db8::j udp dport PORT`), for the families the underlay has. Every
    /// local send passes the output hook, the kernel vxlan device's too (one
    /// UDP_SEGMENT super-packet counts once: compare bytes, not only packets).
    /// Read with [`Cluster::underlay_sends`]; the table goes with the namespace.
    pub fn count_underlay_sends(&self, i: usize, port: u16) {
        let t = NFT_TABLE;
        let mut s = format!(
            "nft add table inet {t}
             nft add chain inet {t} out '{{ type filter hook output priority 0; policy accept; }}'\n"
        );
        for j in (1..=self.len()).filter(|&j| j != i) {
            if self.underlay.has_v4() {
                s += &format!(
                    "nft add counter inet {t} v4_{j}
                     nft add rule inet {t} out ip daddr {a} udp dport {port} counter name v4_{j}\n",
                    a = self.underlay_ip(j)
                );
            }
            if self.underlay.has_v6() {
                s += &format!(
                    "nft add counter inet {t} v6_{j}
                     nft add rule inet {t} out ip6 daddr {a} udp dport {port} counter name v6_{j}\n",
                    a = self.underlay_ip6(j)
                );
            }
        }
        self.host(i).sh(&s);
    }

    /// The counters [`Cluster::count_underlay_sends`] installed on host i: name
    /// (`v4_2`, `v6_2`, …) → (packets, bytes).
    pub fn underlay_sends(&self, i: usize) -> std::collections::BTreeMap<String, (u64, u64)> {
        let text = self
            .host(i)
            .sh(&format!("nft list counters table inet {NFT_TABLE}"));
        parse_nft_counters(&text)
    }

    /// IPv6 fragments host i's own stack has made (`Ip6FragCreates` of its
    /// namespace's /proc/net/snmp6): an encapsulated datagram too big for the
    /// IPv6 underlay is fragmented at the source after every netfilter hook, so
    /// this, not a counter rule, shows it.
    pub fn ip6_frag_creates(&self, i: usize) -> u64 {
        let text = self.host(i).sh("cat /proc/net/snmp6");
        text.lines()
            .find_map(|l| l.strip_prefix("Ip6FragCreates"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Ip6FragCreates in /proc/net/snmp6 of host {i}"))
    }

    /// Routes every other host's container subnet over the underlay
    /// (`100.96.j.0/24 via 192.0.2.j`): no tunnel, the throughput ceiling.
    pub fn underlay_routes(&self, i: usize) {
        let s: String = (1..=self.len())
            .filter(|&j| j != i)
            .map(|j| format!("ip route add 100.96.{j}.0/24 via {}\n", self.underlay_ip(j)))
            .collect();
        self.host(i).sh(&s);
    }

    /// Writes `leases_json` to `<dir>/leases-<i>.json` and runs ringlay on host i:
    /// `ringlay run --static-leases FILE --public-ip 192.0.2.i --subnet-file
    /// <dir>/subnet-<i>.env EXTRA...`, then waits up to 10 s for a line holding
    /// `ready: ` (its ready line; not `already`) on its stderr. The binary is `$RINGLAY_BIN` if set, else the one
    /// cargo built for this test. Panics with the daemon's log if it exits or
    /// times out first.
    pub fn ringlay(&self, i: usize, leases_json: &str, extra_args: &[&str]) -> Daemon {
        self.try_ringlay(i, leases_json, extra_args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Cluster::ringlay`], returning the failure (with the log) instead.
    pub fn try_ringlay(
        &self,
        i: usize,
        leases_json: &str,
        extra_args: &[&str],
    ) -> Result<Daemon, String> {
        self.try_ringlay_at(i, self.underlay_ip(i), leases_json, extra_args)
    }

    /// [`Cluster::ringlay`] with `--public-ip public_ip` instead of 192.0.2.i, for
    /// a host the test moved to another underlay prefix.
    pub fn ringlay_at(
        &self,
        i: usize,
        public_ip: Ipv4Addr,
        leases_json: &str,
        extra_args: &[&str],
    ) -> Daemon {
        self.try_ringlay_at(i, public_ip, leases_json, extra_args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Cluster::ringlay_at`], returning the failure (with the log) instead.
    pub fn try_ringlay_at(
        &self,
        i: usize,
        public_ip: Ipv4Addr,
        leases_json: &str,
        extra_args: &[&str],
    ) -> Result<Daemon, String> {
        let leases = self.write_leases(i, leases_json);
        self.try_ringlay_from(i, public_ip, &["--static-leases", &leases], extra_args)
    }

    /// Writes host i's static leases file; returns its path.
    fn write_leases(&self, i: usize, leases_json: &str) -> String {
        let leases = self.dir.join(format!("leases-{i}.json"));
        fs::write(&leases, leases_json)
            .unwrap_or_else(|e| panic!("writing {}: {e}", leases.display()));
        leases.display().to_string()
    }

    /// Runs `ringlay run --etcd-endpoints <endpoint>` on host i (its lease comes
    /// from etcd) and waits for `ready`, like [`Cluster::ringlay`].
    pub fn ringlay_etcd(&self, i: usize, endpoint: &str, extra_args: &[&str]) -> Daemon {
        self.try_ringlay_from(
            i,
            self.underlay_ip(i),
            &["--etcd-endpoints", endpoint],
            extra_args,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `ringlay run --etcd-endpoints <endpoint>` on host i with the public
    /// addresses its underlay has, `--public-ip 192.0.2.i` (IPv4) and
    /// `--public-ipv6 2001:db8::i` (IPv6), then `extra_args`, and waits for
    /// `ready` like [`Cluster::ringlay`].
    pub fn ringlay_etcd_dual(&self, i: usize, endpoint: &str, extra_args: &[&str]) -> Daemon {
        self.try_ringlay_etcd_dual(i, endpoint, extra_args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Cluster::ringlay_etcd_dual`], returning the failure (with the log) instead.
    pub fn try_ringlay_etcd_dual(
        &self,
        i: usize,
        endpoint: &str,
        extra_args: &[&str],
    ) -> Result<Daemon, String> {
        let public_ip = self.underlay.has_v4().then(|| self.underlay_ip(i));
        let v6 = self.underlay_ip6(i).to_string();
        let mut extra: Vec<&str> = Vec::new();
        if self.underlay.has_v6() {
            extra.extend_from_slice(&["--public-ipv6", &v6]);
        }
        extra.extend_from_slice(extra_args);
        let launch = Launch {
            wrapper: &[],
            env: &[],
            socket_in_dir: true,
        };
        self.start_ringlay(
            i,
            public_ip,
            &["--etcd-endpoints", endpoint],
            &extra,
            launch,
        )
    }

    /// Runs `ringlay run <source_args> --public-ip <public_ip> --subnet-file …
    /// --status-socket <dir>/status-<i>.sock` on host i and waits for `ready`.
    pub fn try_ringlay_from(
        &self,
        i: usize,
        public_ip: Ipv4Addr,
        source_args: &[&str],
        extra_args: &[&str],
    ) -> Result<Daemon, String> {
        self.try_ringlay_env(i, public_ip, source_args, extra_args, &[])
    }

    /// [`Cluster::try_ringlay_from`] with extra environment variables for ringlay.
    pub fn try_ringlay_env(
        &self,
        i: usize,
        public_ip: Ipv4Addr,
        source_args: &[&str],
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, String> {
        let launch = Launch {
            wrapper: &[],
            env,
            socket_in_dir: true,
        };
        self.start_ringlay(i, Some(public_ip), source_args, extra_args, launch)
    }

    /// [`Cluster::try_ringlay_env`] with static leases and without `--public-ip`:
    /// `extra_args` (`--iface` and the like) and `env` choose the underlay and
    /// with it the public IP, which must be one of the leases'.
    pub fn try_ringlay_choosing(
        &self,
        i: usize,
        leases_json: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, String> {
        let leases = self.write_leases(i, leases_json);
        let launch = Launch {
            wrapper: &[],
            env,
            socket_in_dir: true,
        };
        let source = ["--static-leases", leases.as_str()];
        self.start_ringlay(i, None, &source, extra_args, launch)
    }

    /// [`Cluster::try_ringlay_env`] with ringlay started by `wrapper` (e.g.
    /// `unshare -m sh -c '…; exec "$@"' sh`), which must exec it in the same
    /// process so that the daemon's PID stays ringlay's.
    pub fn try_ringlay_wrapped(
        &self,
        i: usize,
        wrapper: &[&str],
        source_args: &[&str],
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Daemon, String> {
        let launch = Launch {
            wrapper,
            env,
            socket_in_dir: true,
        };
        let public_ip = Some(self.underlay_ip(i));
        self.start_ringlay(i, public_ip, source_args, extra_args, launch)
    }

    /// [`Cluster::try_ringlay`] without `--status-socket`: the daemon listens at
    /// its default path in /run/ringlay (which it removes on exit).
    pub fn try_ringlay_default_status(
        &self,
        i: usize,
        leases_json: &str,
        extra_args: &[&str],
    ) -> Result<Daemon, String> {
        let leases = self.write_leases(i, leases_json);
        let source = ["--static-leases", leases.as_str()];
        let launch = Launch {
            wrapper: &[],
            env: &[],
            socket_in_dir: false,
        };
        self.start_ringlay(i, Some(self.underlay_ip(i)), &source, extra_args, launch)
    }

    /// Starts ringlay on host i (with `--public-ip`, if given) and waits for
    /// `ready`; with `launch.socket_in_dir`, its status socket is
    /// `<dir>/status-<i>.sock` unless `extra_args` names one.
    fn start_ringlay(
        &self,
        i: usize,
        public_ip: Option<Ipv4Addr>,
        source_args: &[&str],
        extra_args: &[&str],
        launch: Launch<'_>,
    ) -> Result<Daemon, String> {
        let Launch {
            wrapper,
            env,
            socket_in_dir,
        } = launch;
        let subnet_file = self.dir.join(format!("subnet-{i}.env"));
        let bin = ringlay_bin();
        let public_ip = public_ip.map(|ip| ip.to_string());
        let subnet_s = subnet_file.display().to_string();
        let mut argv: Vec<&str> = wrapper.to_vec();
        argv.extend_from_slice(&[&bin, "run"]);
        argv.extend_from_slice(source_args);
        if let Some(ip) = &public_ip {
            argv.extend_from_slice(&["--public-ip", ip]);
        }
        argv.extend_from_slice(&["--subnet-file", &subnet_s]);
        argv.extend_from_slice(extra_args);
        // The status socket in the test's directory, not in /run.
        let socket = self
            .dir
            .join(format!("status-{i}.sock"))
            .display()
            .to_string();
        if socket_in_dir && !extra_args.contains(&"--status-socket") {
            argv.extend_from_slice(&["--status-socket", &socket]);
        }
        let mut cmd = self.host(i).command(&argv);
        cmd.envs(env.iter().copied());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.host(i).spawn_command(cmd);
        let proc = Proc::of(child.id());

        let log = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(pump(out, Arc::clone(&log)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(pump(err, Arc::clone(&log)));
        }
        let mut daemon = Daemon {
            host: i,
            child,
            proc,
            log,
            readers,
            status: None,
            subnet_file,
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if daemon.log().lines().any(|l| l.contains("ready: ")) {
                return Ok(daemon);
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                daemon.status = Some(status);
                daemon.join_readers();
                return Err(format!(
                    "ringlay on host {i} exited ({status}) before `ready`:\n{}",
                    daemon.log()
                ));
            }
            if Instant::now() >= deadline {
                daemon.stop_quietly();
                return Err(format!(
                    "ringlay on host {i}: no `ready` within {READY_TIMEOUT:?}:\n{}",
                    daemon.log()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Pings `to` from container `from_container`: `ping -c count -W 1 -i 0.2`
    /// (under `timeout`); true if any reply came back.
    pub fn ping(&self, from_container: usize, to: IpAddr, count: u32) -> bool {
        let count_s = count.max(1).to_string();
        let bound = (count.max(1) / 5 + 5).to_string();
        let to_s = to.to_string();
        let family = if to.is_ipv6() { "-6" } else { "-4" };
        let out = self.container(from_container).exec(&[
            "timeout", &bound, "ping", family, "-n", "-q", "-c", &count_s, "-W", "1", "-i", "0.2",
            &to_s,
        ]);
        out.status.success()
    }

    /// iperf3 TCP from container `client_container` to container
    /// `server_container` for `secs` (≤ 10) seconds with `streams` parallel streams;
    /// the receiver's throughput (`end.sum_received.bits_per_second`) in Gbit/s.
    /// Both ends run under `timeout`; panics with iperf3's output if it fails.
    pub fn iperf3(
        &self,
        server_container: usize,
        client_container: usize,
        secs: u32,
        streams: u32,
    ) -> f64 {
        let ip = self.container_ip(server_container);
        self.iperf3_to(server_container, ip, client_container, secs, streams)
    }

    /// [`Cluster::iperf3`] to the server container at `server_ip` (a container
    /// moved into its host's lease, see [`Cluster::readdress_container`]).
    pub fn iperf3_to(
        &self,
        server_container: usize,
        server_ip: Ipv4Addr,
        client_container: usize,
        secs: u32,
        streams: u32,
    ) -> f64 {
        self.iperf3_to_ip(
            server_container,
            server_ip.into(),
            client_container,
            secs,
            streams,
        )
    }

    /// [`Cluster::iperf3_to`] at an IPv4 or IPv6 address of the server container.
    pub fn iperf3_to_ip(
        &self,
        server_container: usize,
        server_ip: IpAddr,
        client_container: usize,
        secs: u32,
        streams: u32,
    ) -> f64 {
        assert!(
            (1..=10).contains(&secs),
            "iperf3: secs = {secs}, bound is 10"
        );
        let port = IPERF_PORT.to_string();
        let server = self.container(server_container);
        let mut cmd = server.command(&[
            "timeout",
            &(secs + 15).to_string(),
            "iperf3",
            "-s",
            "-1",
            "-p",
            &port,
        ]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut srv = server.spawn_command(cmd);
        wait_listening(server, IPERF_PORT, Duration::from_secs(5));

        let ip = server_ip.to_string();
        let out = self.container(client_container).exec(&[
            "timeout",
            &(secs + 10).to_string(),
            "iperf3",
            "-c",
            &ip,
            "-p",
            &port,
            "-t",
            &secs.to_string(),
            "-P",
            &streams.max(1).to_string(),
            "-J",
        ]);
        let json = String::from_utf8_lossy(&out.stdout);
        let bps = sum_received_bps(&json);
        // The server exits after its one test; bounded by its `timeout` anyway.
        let srv_ok = wait_child(&mut srv, Duration::from_secs(5));
        match bps {
            Some(bps) if out.status.success() => bps / 1e9,
            _ => panic!(
                "iperf3 {client_container} -> {server_container} failed ({}; server exit {srv_ok:?}):\n{json}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }
}

impl Cluster {
    /// Sends `bytes` random bytes over one TCP connection from container
    /// `client_container` to a listener in container `server_container` at
    /// `server_ip` (port 5202), and returns true if what arrived is exactly what
    /// was sent (length and SHA-256). Both ends are python3 under `timeout 30`.
    pub fn tcp_transfer_intact(
        &self,
        server_container: usize,
        server_ip: IpAddr,
        client_container: usize,
        bytes: usize,
    ) -> bool {
        let server = self.container(server_container);
        let family = if server_ip.is_ipv6() { "6" } else { "4" };
        let mut cmd = server.command(&["timeout", "30", python3(), "-c", TCP_SINK_PY, family]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let srv = server.spawn_command(cmd);
        wait_listening(server, TCP_TRANSFER_PORT, Duration::from_secs(5));
        let ip = server_ip.to_string();
        let n = bytes.to_string();
        let out = self.container(client_container).exec(&[
            "timeout",
            "30",
            python3(),
            "-c",
            TCP_SOURCE_PY,
            &ip,
            &n,
        ]);
        let sent = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let got = srv
            .wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        eprintln!("tcp transfer {client_container} -> {server_container} ({ip}): sent {sent}, received {got}");
        out.status.success() && !sent.is_empty() && sent == got
    }
}

/// Port of [`Cluster::tcp_transfer_intact`]'s listener.
const TCP_TRANSFER_PORT: u16 = 5202;

/// Accepts one connection on port 5202 (argv[1]: 4 or 6), reads to EOF, prints
/// `<length> <sha256>`.
const TCP_SINK_PY: &str = r#"
import hashlib, socket, sys
fam = socket.AF_INET6 if sys.argv[1] == '6' else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::' if fam == socket.AF_INET6 else '0.0.0.0', 5202))
s.listen(1)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b)
    n += len(b)
print(n, h.hexdigest())
"#;

/// Connects to argv[1]:5202, sends argv[2] random bytes, prints `<length> <sha256>`.
const TCP_SOURCE_PY: &str = r#"
import hashlib, os, socket, sys
data = os.urandom(int(sys.argv[2]))
s = socket.create_connection((sys.argv[1], 5202), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(len(data), hashlib.sha256(data).hexdigest())
"#;

/// python3 for the helpers' scripts: Debian's, if there, else the one on PATH.
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Namespaces (fields) are dropped after this: processes first, then the
        // directory they might still write to goes last but is harmless either way.
        for ns in self
            .containers
            .iter()
            .chain(&self.hosts)
            .chain(&self.switch)
        {
            ns.stop_all();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A static leases file for hosts 1..=n: `config` with Network 100.96.0.0/16 and
/// `Backend.Type` = `backend`, and one lease `100.96.i.0-24` per host with
/// PublicIP 192.0.2.i. With `vteps` every lease carries
/// `"BackendType": "vxlan", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:0i:00"}`
/// (flannel's vxlan lease value); without, the udp backend's
/// `{"PublicIP": "192.0.2.i", "PublicIPv6": null}`.
pub fn static_leases_json(n: usize, backend: &str, vteps: bool) -> String {
    let leases: Vec<String> = (1..=n)
        .map(|i| {
            let ip = underlay_ip(i);
            let value = if vteps {
                format!(
                    r#"{{"PublicIP": "{ip}", "BackendType": "vxlan", "BackendData": {{"VNI": 1, "VtepMAC": "{}"}}}}"#,
                    vtep_mac(i)
                )
            } else {
                format!(r#"{{"PublicIP": "{ip}", "PublicIPv6": null}}"#)
            };
            format!(r#"    "100.96.{i}.0-24": {value}"#)
        })
        .collect();
    format!(
        "{{\"config\": {{\"Network\": \"{NETWORK}\", \"Backend\": {{\"Type\": \"{backend}\"}}}},\n \"subnets\": {{\n{}\n }}}}\n",
        leases.join(",\n")
    )
}

/// 192.0.2.i, host i's `eth0` (its lease's PublicIP).
pub fn underlay_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, host_octet(i))
}

/// 2001:db8::i, host i's IPv6 underlay address.
pub fn underlay_ip6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host_octet(i)))
}

/// `0e:00:00:06:0i:00`, host i's IPv6 VtepMAC (`flannel-v6.1`, the lease's
/// `BackendV6Data`): deliberately not its IPv4 VtepMAC, so that a frame sent to
/// the wrong one is not accepted.
pub fn vtep_mac6(i: usize) -> String {
    format!("0e:00:00:06:{i:02x}:00")
}

/// One half (one address family) of a flannel vxlan lease: the subnet, the
/// node's public address on that family's underlay, and its VtepMAC there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanHalf<A> {
    /// The subnet's network address.
    pub subnet: A,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// `PublicIP` (v4) or `PublicIPv6` (v6).
    pub public_ip: A,
    /// `BackendData.VtepMAC` (v4) or `BackendV6Data.VtepMAC` (v6).
    pub vtep_mac: String,
}

/// A flannel vxlan lease as a flanneld node uses it: an IPv4 half, an IPv6 half,
/// or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanLease {
    /// `100.96.i.0/24` at `PublicIP` with `BackendData.VtepMAC`.
    pub v4: Option<VxlanHalf<Ipv4Addr>>,
    /// `fd00:100:96:i::/64` at `PublicIPv6` with `BackendV6Data.VtepMAC`.
    pub v6: Option<VxlanHalf<Ipv6Addr>>,
}

impl VxlanLease {
    /// Host i's fixed lease on an `underlay`: 100.96.i.0/24 at 192.0.2.i with
    /// [`vtep_mac`] (if it has IPv4), fd00:100:96:i::/64 at 2001:db8::i with
    /// [`vtep_mac6`] (if it has IPv6).
    pub fn of_host(i: usize, underlay: Underlay) -> VxlanLease {
        let o = host_octet(i);
        VxlanLease {
            v4: underlay.has_v4().then(|| VxlanHalf {
                subnet: Ipv4Addr::new(100, 96, o, 0),
                prefix_len: 24,
                public_ip: underlay_ip(i),
                vtep_mac: vtep_mac(i),
            }),
            v6: underlay.has_v6().then(|| VxlanHalf {
                subnet: Ipv6Addr::new(0xfd00, 0x100, 0x96, u16::from(o), 0, 0, 0, 0),
                prefix_len: 64,
                public_ip: underlay_ip6(i),
                vtep_mac: vtep_mac6(i),
            }),
        }
    }

    /// flannel's etcd key for it: `100.96.1.0-24`, `100.96.1.0-24&fd00:100:96:1::-64`
    /// or, without IPv4, `0.0.0.0-0&fd00:100:96:1::-64` (`MakeSubnetKey`).
    pub fn key(&self) -> String {
        let v4 = match &self.v4 {
            Some(h) => format!("{}-{}", h.subnet, h.prefix_len),
            None => "0.0.0.0-0".to_owned(),
        };
        match &self.v6 {
            Some(h) => format!("{v4}&{}-{}", h.subnet, h.prefix_len),
            None => v4,
        }
    }

    /// The value flanneld's vxlan backend writes for it (Go's encoding/json of
    /// `LeaseAttrs`: fields in declaration order, `PublicIP` "0.0.0.0" without
    /// IPv4, `PublicIPv6` null without IPv6, `BackendData` / `BackendV6Data`
    /// omitted when empty).
    pub fn flannel_value(&self) -> String {
        let public = self
            .v4
            .as_ref()
            .map_or("0.0.0.0".to_owned(), |h| h.public_ip.to_string());
        let public6 = self
            .v6
            .as_ref()
            .map_or("null".to_owned(), |h| format!("\"{}\"", h.public_ip));
        let mut v =
            format!(r#"{{"PublicIP":"{public}","PublicIPv6":{public6},"BackendType":"vxlan""#);
        if let Some(h) = &self.v4 {
            v += &format!(r#","BackendData":{{"VNI":1,"VtepMAC":"{}"}}"#, h.vtep_mac);
        }
        if let Some(h) = &self.v6 {
            v += &format!(r#","BackendV6Data":{{"VNI":1,"VtepMAC":"{}"}}"#, h.vtep_mac);
        }
        v.push('}');
        v
    }
}

/// 100.96.i.2, container i's address.
pub fn container_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(100, 96, host_octet(i), 2)
}

/// fd00:100:96:i::2, container i's IPv6 address.
pub fn container_ip6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0x100, 0x96, u16::from(host_octet(i)), 0, 0, 0, 2)
}

fn host_octet(i: usize) -> u8 {
    u8::try_from(i)
        .ok()
        .filter(|&o| (1..=250).contains(&o))
        .unwrap_or_else(|| panic!("host index {i} out of range"))
}

/// The daemon under test: `$RINGLAY_BIN`, else cargo's build of this package.
pub fn ringlay_bin() -> String {
    env::var("RINGLAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ringlay").to_owned())
}

/// Reads `r` line by line into `log` until EOF, so the pipe never fills.
fn pump<R: Read + Send + 'static>(r: R, log: Arc<Mutex<String>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.push_str(&String::from_utf8_lossy(&line));
                    if !l.ends_with('\n') {
                        l.push('\n');
                    }
                }
            }
        }
    })
}

/// Waits until something listens on TCP `port` in `ns`; panics after `timeout`.
pub fn wait_listening(ns: &Netns, port: u16, timeout: Duration) {
    let filter = format!("sport = :{port}");
    let deadline = Instant::now() + timeout;
    loop {
        let out = ns.exec(&["ss", "-Hltn", &filter]);
        if out.status.success() && !out.stdout.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} in {} after {timeout:?}",
            ns.name()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child` up to `timeout`; kills it after that (it must be the caller's).
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// `counter NAME { packets P bytes B }` blocks of `nft list counters`: name →
/// (packets, bytes).
pub fn parse_nft_counters(text: &str) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    let mut name: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("counter ") {
            name = rest.split_whitespace().next().map(str::to_owned);
        } else if let (Some(n), Some(rest)) = (&name, line.strip_prefix("packets ")) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let packets = f.first().and_then(|v| v.parse().ok()).unwrap_or(0);
            let bytes = f.get(2).and_then(|v| v.parse().ok()).unwrap_or(0);
            out.insert(n.clone(), (packets, bytes));
            name = None;
        }
    }
    out
}

/// `end.sum_received.bits_per_second` from iperf3's `-J` output. `sum_received`
/// appears only in `end`, and its first `bits_per_second` is its own.
pub fn sum_received_bps(json: &str) -> Option<f64> {
    let rest = &json[json.find("\"sum_received\"")?..];
    let rest = &rest[rest.find("\"bits_per_second\"")? + "\"bits_per_second\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

// --- Daemon -----------------------------------------------------------------------

/// A running `ringlay run` (see [`Cluster::ringlay`]). Its stdout and stderr are
/// collected in the background into [`Daemon::log`]. Dropped while running, it is
/// sent SIGTERM and, after 5 s, SIGKILL.
#[derive(Debug)]
pub struct Daemon {
    host: usize,
    child: Child,
    proc: Option<Proc>,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    subnet_file: PathBuf,
}

impl Daemon {
    /// The daemon's PID (ringlay itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The host it runs on (1-based).
    pub fn host(&self) -> usize {
        self.host
    }

    /// Everything it printed so far, stdout and stderr interleaved by line.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The subnet file it was told to write (`--subnet-file`).
    pub fn subnet_file(&self) -> &Path {
        &self.subnet_file
    }

    /// Waits up to `timeout` until the log holds `needle` at or after byte `from`
    /// (pass `log().len()` taken before a signal to see only what followed it).
    pub fn wait_log(&self, needle: &str, from: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.get(from..).is_some_and(|s| s.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGUSR1 (print counters).
    pub fn sigusr1(&self) {
        self.send("USR1");
    }

    /// Sends SIGHUP.
    pub fn sighup(&self) {
        self.send("HUP");
    }

    fn send(&self, sig: &str) {
        assert!(self.status.is_none(), "ringlay already exited");
        assert!(
            self.proc.is_some_and(|p| p.alive()),
            "ringlay (pid {}) is not running:\n{}",
            self.pid(),
            self.log()
        );
        assert!(signal(self.pid(), sig), "kill -s {sig} {}", self.pid());
    }

    /// SIGTERM, then waits up to 5 s for it to exit and for its output to be read;
    /// returns its exit status. Panics (after SIGKILL) if it does not exit in time.
    /// Calling it again returns the same status.
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        if let Ok(Some(s)) = self.child.try_wait() {
            return self.finish(s);
        }
        signal(self.pid(), "TERM");
        match wait_child_no_kill(&mut self.child, TERMINATE_TIMEOUT) {
            Some(s) => self.finish(s),
            None => {
                let _ = self.child.kill();
                let s = self.child.wait().expect("wait for ringlay");
                self.finish(s);
                panic!(
                    "ringlay (pid {}) did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM:\n{}",
                    self.pid(),
                    self.log()
                );
            }
        }
    }

    /// SIGKILL by PID (a crash: nothing is cleaned up), and reaps it; returns its
    /// exit status.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let _ = self.child.kill();
        let s = self.child.wait().expect("wait for ringlay");
        self.finish(s)
    }

    fn finish(&mut self, s: ExitStatus) -> ExitStatus {
        self.status = Some(s);
        self.join_readers();
        s
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// Like `terminate` but never panics (for Drop and early failures).
    fn stop_quietly(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(Some(s)) = self.child.try_wait() {
            self.finish(s);
            return;
        }
        signal(self.pid(), "TERM");
        let s = match wait_child_no_kill(&mut self.child, TERMINATE_TIMEOUT) {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                match self.child.wait() {
                    Ok(s) => s,
                    Err(_) => return,
                }
            }
        };
        self.finish(s);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

fn wait_child_no_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}
