//! The `ringlay` command: the only place that uses `anyhow`.

use std::io::{IsTerminal, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use ringlay::backend::underlay::{Criteria, IfaceArg};
use ringlay::config::{LeaseAttrs, NetworkConfig, SubnetKey};

/// ringlay: a flannel-compatible userspace overlay forwarding engine.
///
/// ringlay reads and writes flannel's etcd schema (/coreos.com/network/config and
/// /coreos.com/network/subnets/<key>) and speaks flannel's udp and vxlan wire formats,
/// so ringlay and flanneld nodes can share one cluster.
#[derive(Debug, Parser)]
#[command(
    name = "ringlay",
    version,
    about,
    long_about,
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// One value, parsed once at start: boxing `run`'s flags would save nothing.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the overlay: create the TUN device, forward between it and the peers, and
    /// keep the table in step with the leases until SIGTERM. With the host-gw
    /// backend (and for peers on the same L2 segment with DirectRouting) ringlay
    /// routes each peer's subnet via its PublicIP instead (route protocol 114).
    ///
    /// The network config and the leases come from etcd, in flanneld's keys (this
    /// host acquires and renews its own lease there), or from --static-leases.
    ///
    /// Signals: SIGHUP re-reads a static leases file (it is also re-read when edited),
    /// SIGUSR1 logs the per-worker counters, SIGTERM or SIGINT stop cleanly.
    Run(RunArgs),
    /// Follow the leases in etcd (or, with --kube-subnet-mgr, the cluster's Nodes)
    /// and log every table a node would build from them,
    /// without acquiring a lease or creating a device (read-only; no privileges).
    /// Stops on SIGINT or SIGTERM and logs how many etcd requests it made.
    Watch {
        #[command(flatten)]
        etcd: EtcdArgs,
        #[command(flatten)]
        kube: KubeArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Show the running daemon: our lease, the peers, the traffic, drops by reason
    /// and the offloads, read from its status socket (root only).
    Status {
        /// The daemon's status socket [default: /run/ringlay/<TUN>-netns<INODE>.sock,
        /// INODE that of this network namespace (/proc/self/ns/net): the daemon's
        /// if run in its namespace].
        #[arg(long, value_name = "PATH", env = "RINGLAY_STATUS_SOCKET")]
        socket: Option<PathBuf>,
        /// The daemon's TUN device name, to find its default socket.
        #[arg(long, value_name = "NAME", default_value = "ringlay0")]
        tun_name: String,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a flannel network config (the value of <prefix>/config) and print it
    /// with every default resolved.
    CheckConfig {
        /// File holding the JSON, or `-` for standard input.
        file: PathBuf,
    },
    /// Validate a lease value (the value of <prefix>/subnets/<key>) and print it as
    /// flanneld would write it.
    CheckLease {
        /// File holding the JSON, or `-` for standard input.
        file: PathBuf,
        /// The lease's key, e.g. `100.96.1.0-24` or `100.96.1.0-24&fd00:100:96:1::-64`.
        #[arg(long)]
        key: Option<String>,
    },
}

/// How to reach etcd (flanneld's flags of the same names).
#[derive(Debug, clap::Args)]
struct EtcdArgs {
    /// etcd endpoints, comma-separated.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',', default_value = ringlay::control::etcd::DEFAULT_ENDPOINT)]
    etcd_endpoints: Vec<String>,
    /// The key prefix of the network: its config is <prefix>/config, the leases
    /// <prefix>/subnets/<key>.
    #[arg(long, value_name = "PREFIX", default_value = ringlay::control::etcd::DEFAULT_PREFIX)]
    etcd_prefix: String,
    /// CA certificate (PEM) that signed the etcd server's certificate (https endpoints).
    #[arg(long, value_name = "FILE")]
    etcd_cafile: Option<PathBuf>,
    /// Client certificate (PEM) for etcd.
    #[arg(long, value_name = "FILE")]
    etcd_certfile: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    etcd_keyfile: Option<PathBuf>,
    /// etcd user name.
    #[arg(long, value_name = "NAME")]
    etcd_username: Option<String>,
    /// etcd password (better passed in the environment, as RINGLAY_ETCD_PASSWORD).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "RINGLAY_ETCD_PASSWORD",
        hide_env_values = true
    )]
    etcd_password: Option<String>,
    /// Renew our lease this many minutes before its 24 h expire.
    #[arg(long, value_name = "MINUTES", default_value_t = 60)]
    subnet_lease_renew_margin: u64,
}

impl EtcdArgs {
    fn settings(self) -> anyhow::Result<ringlay::control::etcd::Settings> {
        for e in &self.etcd_endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                anyhow::bail!(
                    "--etcd-endpoints: {e:?} is invalid: URLs like http://127.0.0.1:2379 or https://etcd.example:2379"
                );
            }
        }
        Ok(ringlay::control::etcd::Settings {
            endpoints: self.etcd_endpoints,
            prefix: self.etcd_prefix,
            ca_file: self.etcd_cafile,
            cert_file: self.etcd_certfile,
            key_file: self.etcd_keyfile,
            username: self.etcd_username,
            password: self.etcd_password,
            renew_margin: std::time::Duration::from_secs(
                self.subnet_lease_renew_margin.saturating_mul(60),
            ),
        })
    }
}

/// The Kubernetes subnet manager (flanneld's flags of the same names).
#[derive(Debug, clap::Args)]
struct KubeArgs {
    /// Take the subnet from this node's spec.podCIDR and the peers from the nodes'
    /// flannel annotations, as flanneld --kube-subnet-mgr (the network config comes
    /// from --net-config-path, not etcd). This node is NODE_NAME, else the
    /// spec.nodeName of the pod POD_NAMESPACE/POD_NAME.
    #[arg(
        long,
        conflicts_with_all = [
            "etcd_endpoints", "etcd_prefix", "etcd_cafile", "etcd_certfile",
            "etcd_keyfile", "etcd_username", "etcd_password", "subnet_lease_renew_margin",
        ]
    )]
    kube_subnet_mgr: bool,
    /// The API server's URL [default: the kubeconfig's server, else in-cluster].
    #[arg(long, value_name = "URL", requires = "kube_subnet_mgr")]
    kube_api_url: Option<String>,
    /// A kubeconfig file [default: the pod's service account (in-cluster)].
    #[arg(long, value_name = "FILE", requires = "kube_subnet_mgr")]
    kubeconfig_file: Option<PathBuf>,
    /// The prefix of the node annotations ringlay reads and writes: a domain,
    /// optionally followed by "/name".
    #[arg(long, value_name = "PREFIX", default_value = ringlay::control::kube::DEFAULT_PREFIX)]
    kube_annotation_prefix: String,
    /// The network config file (kube-flannel.yml's ConfigMap kube-flannel-cfg).
    #[arg(long, value_name = "FILE", default_value = ringlay::control::kube::DEFAULT_NET_CONFIG)]
    net_config_path: PathBuf,
    /// Set this node's NetworkUnavailable condition to False once ready.
    #[arg(
        long,
        value_name = "BOOL",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    set_node_network_unavailable: bool,
}

impl KubeArgs {
    /// The settings, when --kube-subnet-mgr is given.
    fn settings(&self) -> anyhow::Result<Option<ringlay::control::kube::Settings>> {
        if !self.kube_subnet_mgr {
            return Ok(None);
        }
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let pod = match (var("POD_NAMESPACE"), var("POD_NAME")) {
            (Some(ns), Some(name)) => Some((ns, name)),
            _ => None,
        };
        Ok(Some(ringlay::control::kube::Settings {
            api_url: self.kube_api_url.clone(),
            kubeconfig: self.kubeconfig_file.clone(),
            prefix: ringlay::control::kube::Prefix::parse(&self.kube_annotation_prefix)?,
            net_config: self.net_config_path.clone(),
            set_network_unavailable: self.set_node_network_unavailable,
            node_name: var("NODE_NAME"),
            pod,
        }))
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A static leases file: flannel's network config and every lease in one JSON
    /// document ({"config": {...}, "subnets": {"100.96.1.0-24": {...}, ...}}).
    /// Without it, the config and the leases come from etcd.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "etcd_endpoints", "etcd_prefix", "etcd_cafile", "etcd_certfile",
            "etcd_keyfile", "etcd_username", "etcd_password", "subnet_lease_renew_margin",
            "kube_subnet_mgr",
        ]
    )]
    static_leases: Option<PathBuf>,
    #[command(flatten)]
    etcd: EtcdArgs,
    #[command(flatten)]
    kube: KubeArgs,
    /// The IPv4 address peers reach this host at (its lease's PublicIP). Without
    /// --iface, --iface-regex or --iface-can-reach it also picks the underlay: the
    /// interface holding it (so it must be on one; behind NAT, give --iface too)
    /// [default: the underlay interface's address].
    #[arg(long, value_name = "IP")]
    public_ip: Option<Ipv4Addr>,
    /// The IPv6 address peers reach this host at (its lease's PublicIPv6), used
    /// when the network config enables IPv6 (EnableIPv6) and ignored otherwise.
    /// In an IPv6-only network (EnableIPv4 false) it picks the underlay as
    /// --public-ip does for IPv4; in a dual-stack one it must be an address of
    /// the IPv4 underlay interface, or of no interface here (behind NAT)
    /// [default: the underlay interface's first global IPv6 address].
    #[arg(long, value_name = "IPV6")]
    public_ipv6: Option<Ipv6Addr>,
    /// The underlay interface: a name, or an IPv4 address (the interface holding
    /// it, with that address). Repeat to try several in order: the first usable
    /// one wins; if none is, any --iface-regex and then --iface-can-reach are
    /// tried, and ringlay fails if every one given misses [default: the interface
    /// of --public-ip, else of the default route].
    #[arg(long, value_name = "NAME|IP")]
    iface: Vec<IfaceArg>,
    /// A regex (RE2 syntax, as flanneld's Go regexp), searched for in every
    /// interface's IPv4 addresses, then, if no address matches, in the interface
    /// names; the first match is the underlay. Repeatable, tried in order after
    /// every --iface.
    #[arg(long, value_name = "REGEX")]
    iface_regex: Vec<regex::Regex>,
    /// The underlay is the interface the kernel routes toward this address
    /// (`ip route get IP`), with the route's source address; tried after
    /// --iface and --iface-regex.
    #[arg(long, value_name = "IP")]
    iface_can_reach: Option<IpAddr>,
    /// Name of the TUN device to create.
    #[arg(long, value_name = "NAME", default_value = "ringlay0")]
    tun_name: String,
    /// Worker threads, one TUN queue each [default: the CPUs this process may run
    /// on, at most 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    queues: Option<u16>,
    /// Where to write flannel's subnet.env once forwarding is ready.
    #[arg(long, value_name = "PATH", default_value = "/run/flannel/subnet.env")]
    subnet_file: PathBuf,
    /// Pin worker k to the k-th CPU this process may run on. Best on a dedicated
    /// host; leave off where several daemons share the CPUs (one-machine testbeds).
    #[arg(long)]
    pin_workers: bool,
    /// Offloads: `all`, `off`, or a comma-separated list of `tso` (TUN segmentation
    /// offload: 64 KiB reads, cut into segments in userspace), `gso` (the segments
    /// for one peer leave in one send, UDP_SEGMENT; needs tso), `gro` (receives of
    /// coalesced datagrams, UDP_GRO, merged back into 64 KiB TUN writes). What the
    /// kernel lacks is switched off with a warning.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "all",
        env = "RINGLAY_OFFLOAD"
    )]
    offload: ringlay::dataplane::Offload,
    /// Microseconds a worker that had traffic in the last 10 ms spins for the next
    /// packet before it sleeps, instead of paying a wake-up (at most 10000; 0: never
    /// spin). An idle node does not spin.
    #[arg(
        long,
        value_name = "MICROSECONDS",
        default_value_t = 0,
        env = "RINGLAY_BUSY_POLL",
        value_parser = clap::value_parser!(u64).range(0..=10_000)
    )]
    busy_poll: u64,
    /// How workers read the TUN queues: `auto` (a multishot io_uring read, where
    /// the kernel has one: Linux 6.7; else `poll`) or `poll` (an io_uring poll,
    /// then one read syscall per packet).
    #[arg(
        long,
        value_name = "MODE",
        default_value = "auto",
        env = "RINGLAY_TUN_READ"
    )]
    tun_read: ringlay::dataplane::TunRead,
    /// Packets each TUN queue holds for its worker (the device's txqueuelen,
    /// 16 to 65536; the kernel's default is 500). A full queue drops what the
    /// pods send next, counted as `tun_tx_dropped`.
    #[arg(
        long,
        value_name = "PACKETS",
        default_value_t = ringlay::dataplane::DEFAULT_TUN_QUEUE_LEN,
        env = "RINGLAY_TUN_QUEUE_LEN",
        value_parser = clap::value_parser!(u32).range(16..=65_536)
    )]
    tun_queue_len: u32,
    /// Serve Prometheus metrics (and /healthz, /readyz) on this address, e.g.
    /// 127.0.0.1:9465. Off by default.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<SocketAddr>,
    /// The address /healthz and /readyz listen on (flanneld's flag).
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    healthz_ip: IpAddr,
    /// The port of /healthz and /readyz; 0 (the default, as flanneld's) is off.
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    healthz_port: u16,
    /// The unix socket `ringlay status` reads (mode 0600)
    /// [default: /run/ringlay/<TUN>-netns<INODE>.sock, INODE that of this network
    /// namespace (/proc/self/ns/net), so that daemons in two namespaces never share one].
    #[arg(long, value_name = "PATH", env = "RINGLAY_STATUS_SOCKET")]
    status_socket: Option<PathBuf>,
    /// Masquerade traffic leaving the cluster network, as flanneld's --ip-masq
    /// (an nftables table `ip ringlay`, removed on exit; needs the nft command).
    #[arg(long)]
    ip_masq: bool,
    #[command(flatten)]
    log: LogArgs,
}

/// How the daemon logs.
#[derive(Debug, clap::Args)]
struct LogArgs {
    /// Log level: error, warn, info, debug or trace (or a tracing filter).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// Log format: human-readable text, or one JSON object per line.
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(log: &LogArgs) -> anyhow::Result<()> {
    let level = &log.log_level;
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("--log-level {level:?}: expected error, warn, info, debug or trace")
    })?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match log.log_format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => fmt.json().with_current_span(false).init(),
    }
    Ok(())
}

fn run_daemon(args: RunArgs) -> anyhow::Result<()> {
    let source = match (args.static_leases, args.kube.settings()?) {
        (Some(path), _) => ringlay::daemon::Source::Static(path),
        (None, Some(kube)) => ringlay::daemon::Source::Kube(kube),
        (None, None) => ringlay::daemon::Source::Etcd(args.etcd.settings()?),
    };
    init_logging(&args.log)?;
    let status_socket = args
        .status_socket
        .unwrap_or_else(|| ringlay::ops::status::default_socket(&args.tun_name));
    let endpoints = ringlay::ops::http::Endpoints {
        metrics: args.metrics_addr,
        health: (args.healthz_port != 0)
            .then(|| SocketAddr::new(args.healthz_ip, args.healthz_port)),
        status_socket: Some(status_socket),
    };
    ringlay::daemon::run(ringlay::daemon::Options {
        source,
        public_ip: args.public_ip,
        public_ipv6: args.public_ipv6,
        underlay: Criteria {
            ifaces: args.iface,
            regexes: args.iface_regex,
            can_reach: args.iface_can_reach,
        },
        tun_name: args.tun_name,
        queues: args.queues.map(usize::from),
        subnet_file: args.subnet_file,
        pin_workers: args.pin_workers,
        offload: args.offload,
        busy_poll: std::time::Duration::from_micros(args.busy_poll),
        tun_read: args.tun_read,
        tun_queue_len: args.tun_queue_len,
        endpoints,
        ip_masq: args.ip_masq,
    })?;
    Ok(())
}

/// Writes `text` to standard output. A reader that went away (`ringlay status |
/// head`) is no error: it has what it wanted.
fn print_to_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run_daemon(args)?,
        Command::Watch { etcd, kube, log } => match kube.settings()? {
            Some(kube) => {
                init_logging(&log)?;
                ringlay::control::kube::watch_only(&kube)?;
            }
            None => {
                let settings = etcd.settings()?;
                init_logging(&log)?;
                ringlay::control::etcd::watch_only(&settings)?;
            }
        },
        Command::Status {
            socket,
            tun_name,
            json,
        } => {
            let path = socket.unwrap_or_else(|| ringlay::ops::status::default_socket(&tun_name));
            let status = ringlay::ops::status::fetch(&path).with_context(|| {
                format!(
                    "reading {} (is ringlay running, and are you root?)",
                    path.display()
                )
            })?;
            let text = if json {
                serde_json::to_string_pretty(&status)? + "\n"
            } else {
                status.render()
            };
            print_to_stdout(&text)?;
        }
        Command::CheckConfig { file } => {
            let bytes = read_input(&file)?;
            let text = std::str::from_utf8(&bytes)
                .with_context(|| format!("{}: not UTF-8 text", file.display()))?;
            let config = NetworkConfig::parse(text)
                .with_context(|| format!("{}: invalid network config", file.display()))?;
            println!("{}", serde_json::to_string_pretty(&config)?);
        }
        Command::CheckLease { file, key } => {
            if let Some(key) = key {
                let key: SubnetKey = key.parse().context("--key: invalid subnet key")?;
                println!("key: {key}");
            }
            let bytes = read_input(&file)?;
            let lease = LeaseAttrs::parse(&bytes)
                .with_context(|| format!("{}: invalid lease value", file.display()))?;
            println!("{}", lease.to_json());
        }
    }
    Ok(())
}

/// flanneld's flags that ringlay has under the same name: `FLANNELD_<FLAG>` is
/// read as `RINGLAY_<FLAG>` when that is unset. A repeatable flag takes one value
/// from its variable, not a list: flanneld sets the flag once from the whole
/// variable (coreos/pkg `flagutil.SetFlagsFromEnv`), and a comma is no separator
/// for a regex like `eth[0-9]{1,2}`.
const FLANNELD_FLAGS: [&str; 23] = [
    "etcd-endpoints",
    "etcd-prefix",
    "etcd-keyfile",
    "etcd-certfile",
    "etcd-cafile",
    "etcd-username",
    "etcd-password",
    "iface",
    "iface-regex",
    "iface-can-reach",
    "public-ip",
    "public-ipv6",
    "subnet-file",
    "subnet-lease-renew-margin",
    "ip-masq",
    "healthz-ip",
    "healthz-port",
    "kube-subnet-mgr",
    "kube-api-url",
    "kubeconfig-file",
    "kube-annotation-prefix",
    "net-config-path",
    "set-node-network-unavailable",
];

/// `FLAG` → `PREFIX_FLAG` (upper case, `-` → `_`), flanneld's convention.
fn env_name(prefix: &str, flag: &str) -> String {
    format!("{prefix}_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Copies each `FLANNELD_<FLAG>` of [`FLANNELD_FLAGS`] to `RINGLAY_<FLAG>` where
/// that is unset, so the precedence is: flag, `RINGLAY_`, `FLANNELD_`, default.
fn import_flanneld_env() {
    for flag in FLANNELD_FLAGS {
        let ours = env_name("RINGLAY", flag);
        if std::env::var_os(&ours).is_some() {
            continue;
        }
        if let Some(v) = std::env::var_os(env_name("FLANNELD", flag)) {
            std::env::set_var(ours, v);
        }
    }
}

/// The commands whose flags are also read from `RINGLAY_<FLAG>` (the validators
/// take their input from the command line only).
const ENV_COMMANDS: [&str; 3] = ["run", "watch", "status"];

/// Every long flag of [`ENV_COMMANDS`] also read from `RINGLAY_<FLAG>`.
fn with_env(cmd: clap::Command) -> clap::Command {
    ENV_COMMANDS
        .iter()
        .fold(cmd, |cmd, name| cmd.mut_subcommand(*name, flags_from_env))
}

fn flags_from_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        match a.get_long() {
            Some(long) if a.get_env().is_none() && long != "help" && long != "version" => {
                // clap keeps `&'static str`s; the command is built once per process.
                let name: &'static str = Box::leak(env_name("RINGLAY", long).into_boxed_str());
                a.env(name)
            }
            _ => a,
        }
    })
}

fn parse() -> Cli {
    let matches = with_env(Cli::command()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    import_flanneld_env();
    match run(parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringlay: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, each cause once: ringlay's own errors
/// already end with their source (`…: cannot write …: No space left on device`),
/// which the chain would otherwise repeat.
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // A message that ends with its cause's text (`…: {source}`) has said it.
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e: anyhow::Error = ringlay::Error::Io {
            path: "/run/flannel/subnet.env".into(),
            action: "write the subnet file",
            source: io,
        }
        .into();
        let text = describe(&e);
        assert_eq!(text.matches("No space left on device").count(), 1, "{text}");
        assert!(
            text.starts_with("/run/flannel/subnet.env: cannot write"),
            "{text}"
        );
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&e), "outer: inner");
        // A short cause that only appears inside an earlier message is kept.
        let e = anyhow::anyhow!("timed out").context("etcd timed out once, then refused");
        assert_eq!(describe(&e), "etcd timed out once, then refused: timed out");
    }
}
