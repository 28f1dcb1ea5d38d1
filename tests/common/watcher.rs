//! A `ringlay watch` process for the scale tests, its log lines timestamped as
//! they are read.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A `ringlay watch` process whose log lines arrive, with the instant each was
/// read, on a channel. Killed by PID on drop.
pub struct Watcher {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    /// Every line read so far.
    pub log: Vec<String>,
}

impl Watcher {
    /// Runs `ringlay ARGS…` (the binary cargo built for the test).
    pub fn start(args: &[&str]) -> Watcher {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ringlay"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringlay watch");
        let err = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Watcher {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a line holding `needle`; returns when it was read and the line.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> (Instant, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((t, line)) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return (t, line);
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {timeout:?}:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// (VmRSS, VmHWM) in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the watcher runs");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
