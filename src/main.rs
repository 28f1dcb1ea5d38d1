//! The `ringlay` command: the only place that uses `anyhow`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringlay::config::{LeaseAttrs, NetworkConfig, SubnetKey};

/// ringlay: a flannel-compatible userspace overlay forwarding engine.
///
/// ringlay reads and writes flannel's etcd schema (/coreos.com/network/config and
/// /coreos.com/network/subnets/<key>) and speaks flannel's udp and vxlan wire formats,
/// so ringlay and flanneld nodes can share one cluster.
#[derive(Debug, Parser)]
#[command(name = "ringlay", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringlay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
