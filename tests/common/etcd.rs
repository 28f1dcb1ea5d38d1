//! A real etcd for the tests: started on free ports (or on an underlay address in a
//! test namespace) with a fresh data directory, and killed by PID when the guard
//! drops. etcdctl (v3 API) reads and writes keys as flanneld or an operator would.
//!
//! - [`Etcd::start`]: on 127.0.0.1 in the test's own namespace, two free ports.
//! - [`Etcd::start_tls`]: the same over TLS with client certificates ([`Certs`],
//!   made with the `openssl` CLI).
//! - [`Etcd::start_in`]: inside a test namespace, listening on an underlay address.
//! - [`Etcd::kill`] / [`Etcd::restart`]: an outage, then the same member back on the
//!   same data directory and ports.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::netns::{unique_name, Netns};

/// How long a started etcd may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// True when the `etcd` and `etcdctl` binaries are installed. Outside CI a test
/// without them skips with a printed reason; with `CI=true` it fails.
pub fn require_etcd(test: &str) -> bool {
    let found = [("etcd", "--version"), ("etcdctl", "version")]
        .iter()
        .all(|(b, arg)| {
            Command::new(b)
                .arg(arg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    if found {
        return true;
    }
    let reason = format!("{test}: needs etcd and etcdctl (Debian: etcd-server etcd-client)");
    if super::netns::in_ci() {
        panic!("CI=true and {reason}");
    }
    eprintln!("skipping {reason}");
    false
}

/// Two distinct free TCP ports on 127.0.0.1 (both bound at once, then released).
pub fn free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("a free port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("bound").port();
    (port(&a), port(&b))
}

/// Certificates for a TLS etcd: a CA, a server certificate for 127.0.0.1 and a
/// client certificate, all signed by the CA (PEM files in `dir`).
#[derive(Debug)]
pub struct Certs {
    /// The directory holding them.
    pub dir: PathBuf,
}

impl Certs {
    /// Makes the certificates with `openssl` in a fresh directory.
    pub fn generate(tag: &str) -> Certs {
        let dir = std::env::temp_dir().join(unique_name(&format!("ringlay-certs-{tag}")));
        fs::create_dir_all(&dir).expect("cert dir");
        let d = dir.display();
        let script = format!(
            "set -e
             cd {d}
             openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ringlay-test-ca \
                -keyout ca.key -out ca.pem 2>/dev/null
             printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
             openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
                -extfile server.ext -out server.pem 2>/dev/null
             printf 'extendedKeyUsage=clientAuth\\n' > client.ext
             openssl req -newkey rsa:2048 -nodes -subj /CN=ringlay -keyout client.key -out client.csr 2>/dev/null
             openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
                -extfile client.ext -out client.pem 2>/dev/null"
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Certs { dir }
    }

    /// The path of `name` (`ca.pem`, `client.pem`, `client.key`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One etcd member under test. Dropping it kills the process (by PID) and removes
/// its data directory.
#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    argv: Vec<String>,
    ns: Option<String>,
    client_url: String,
    tls: bool,
    ctl_tls: Vec<String>,
}

impl Etcd {
    /// etcd on 127.0.0.1 (free client and peer ports) in the current namespace.
    pub fn start(tag: &str) -> Etcd {
        let (c, p) = free_ports();
        Etcd::launch(tag, None, "127.0.0.1", c, p, None)
    }

    /// etcd on https://127.0.0.1 requiring client certificates signed by `certs`'s CA.
    pub fn start_tls(tag: &str, certs: &Certs) -> Etcd {
        let (c, p) = free_ports();
        Etcd::launch(tag, None, "127.0.0.1", c, p, Some(certs))
    }

    /// etcd inside `ns`, listening on `ip:2379` (`[ip]:2379` for an IPv6
    /// address; peer port 2380 on 127.0.0.1).
    pub fn start_in(ns: &Netns, ip: impl Into<IpAddr>, tag: &str) -> Etcd {
        let host = match ip.into() {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("[{a}]"),
        };
        Etcd::launch(tag, Some(ns.name()), &host, 2379, 2380, None)
    }

    fn launch(
        tag: &str,
        ns: Option<&str>,
        ip: &str,
        client_port: u16,
        peer_port: u16,
        certs: Option<&Certs>,
    ) -> Etcd {
        let dir = std::env::temp_dir().join(unique_name(&format!("ringlay-etcd-{tag}")));
        fs::create_dir_all(&dir).expect("etcd dir");
        let scheme = if certs.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://{ip}:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut argv: Vec<String> = vec![
            "etcd".into(),
            "--name".into(),
            "ringlay-test".into(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("ringlay-test={peer_url}"),
            "--log-level".into(),
            "warn".into(),
            "--logger".into(),
            "zap".into(),
        ];
        let mut ctl_tls = Vec::new();
        if let Some(c) = certs {
            for (flag, file) in [
                ("--cert-file", "server.pem"),
                ("--key-file", "server.key"),
                ("--trusted-ca-file", "ca.pem"),
            ] {
                argv.push(flag.into());
                argv.push(c.path(file).display().to_string());
            }
            argv.push("--client-cert-auth".into());
            for (flag, file) in [
                ("--cacert", "ca.pem"),
                ("--cert", "client.pem"),
                ("--key", "client.key"),
            ] {
                ctl_tls.push(format!("{flag}={}", c.path(file).display()));
            }
        }
        let mut e = Etcd {
            child: None,
            dir,
            argv,
            ns: ns.map(str::to_owned),
            client_url,
            tls: certs.is_some(),
            ctl_tls,
        };
        e.spawn();
        e
    }

    fn command(&self, argv: &[String]) -> Command {
        let mut c = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        c.stdin(Stdio::null());
        c
    }

    fn spawn(&mut self) {
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))
            .expect("etcd log");
        let mut cmd = self.command(&self.argv.clone());
        cmd.stdout(log.try_clone().expect("log fd")).stderr(log);
        self.child = Some(cmd.spawn().expect("spawn etcd"));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let out = self.ctl(&["endpoint", "health", "--command-timeout=1s"]);
            if out.status.success() {
                return;
            }
            if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("etcd exited ({s}) at start:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "etcd not healthy within {READY_TIMEOUT:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// etcd's own output so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    /// The client URL (`http://127.0.0.1:port`, `https://…`, `http://192.0.2.254:2379`).
    pub fn endpoint(&self) -> &str {
        &self.client_url
    }

    /// The member's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL by PID (as a crash would), and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the member again on the same data directory and ports.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs `etcdctl` (v3 API) against this member.
    pub fn ctl(&self, args: &[&str]) -> Output {
        let mut argv: Vec<String> = vec![
            "etcdctl".into(),
            format!("--endpoints={}", self.client_url),
            "--dial-timeout=2s".into(),
        ];
        argv.extend(self.ctl_tls.iter().cloned());
        argv.extend(args.iter().map(|s| (*s).to_owned()));
        let mut c = self.command(&argv);
        c.env("ETCDCTL_API", "3");
        c.output().expect("run etcdctl")
    }

    fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `etcdctl put key value`.
    pub fn put(&self, key: &str, value: &str) {
        self.ctl_ok(&["put", key, "--", value]);
    }

    /// `etcdctl put` of raw bytes: the key as given (it need not be UTF-8), the
    /// value through standard input (it may be larger than an argument may be).
    pub fn put_bytes(&self, key: &[u8], value: &[u8]) {
        use std::os::unix::ffi::OsStrExt;
        let mut argv: Vec<String> = vec![
            "etcdctl".into(),
            format!("--endpoints={}", self.client_url),
            "--dial-timeout=2s".into(),
        ];
        argv.extend(self.ctl_tls.iter().cloned());
        argv.push("put".into());
        let mut c = self.command(&argv);
        c.arg(std::ffi::OsStr::from_bytes(key));
        c.env("ETCDCTL_API", "3");
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run etcdctl");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(value).expect("etcdctl's stdin");
        }
        let out = child.wait_with_output().expect("wait for etcdctl");
        assert!(
            out.status.success(),
            "etcdctl put {}: {}{}",
            String::from_utf8_lossy(key),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `etcdctl del key`.
    pub fn del(&self, key: &str) {
        self.ctl_ok(&["del", key]);
    }

    /// The value at `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        let out = self.ctl_ok(&["get", key, "--print-value-only"]);
        let v = out.trim_end_matches('\n');
        (!v.is_empty()).then(|| v.to_owned())
    }

    /// Every key and value under `prefix`.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.ctl_ok(&["get", prefix, "--prefix"]);
        let lines: Vec<&str> = out.lines().collect();
        lines
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (c[0].to_owned(), c[1].to_owned()))
            .collect()
    }

    /// The etcd lease id and remaining TTL of `key` (`etcdctl get -w json` and
    /// `lease timetolive`).
    pub fn lease_ttl(&self, key: &str) -> Option<(i64, i64)> {
        let out = self.ctl_ok(&["get", key, "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        let id = v["kvs"][0]["lease"].as_i64()?;
        let hex = format!("{id:x}");
        let out = self.ctl_ok(&["lease", "timetolive", &hex, "-w", "json"]);
        let t: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        Some((id, t["ttl"].as_i64()?))
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let out = self.ctl_ok(&[
            "get",
            "/",
            "--prefix",
            "--keys-only",
            "--limit=1",
            "-w",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("etcdctl json");
        v["header"]["revision"].as_i64().expect("revision")
    }

    /// `etcdctl compact <revision>`.
    pub fn compact(&self, revision: i64) {
        self.ctl_ok(&["compact", &revision.to_string()]);
    }

    /// gRPC requests etcd has started, per method (`grpc_server_started_total` of
    /// its `/metrics`; a watch stream counts once). Only for a plain-HTTP member in the test's
    /// own namespace.
    pub fn handled(&self) -> std::collections::BTreeMap<String, u64> {
        assert!(
            self.ns.is_none() && !self.tls,
            "metrics of a local http member only"
        );
        let addr = self.client_url.trim_start_matches("http://");
        let mut s = TcpStream::connect(addr).expect("connect to etcd");
        write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("metrics");
        let mut out = std::collections::BTreeMap::new();
        for line in body
            .lines()
            .filter(|l| l.starts_with("grpc_server_started_total{"))
        {
            let method = line
                .split("grpc_method=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?")
                .to_owned();
            let n: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            *out.entry(method).or_insert(0) += n as u64;
        }
        out
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
