//! A real kube-apiserver for the tests, backed by a real etcd: each
//! [`KubeApiserver`] has its own etcd ([`Etcd`]), its own certificates (made with
//! the `openssl` CLI), a static token file and a temporary directory, and its
//! `Drop` kills the apiserver by PID, then etcd, and removes the directory, also when
//! the test panics.
//!
//! - [`KubeApiserver::start`]: on 127.0.0.1 in the test's own namespace, on free
//!   ports.
//! - [`KubeApiserver::start_in`]: inside a namespace the test created, on an address
//!   of that namespace (which the server advertises).
//! - [`require_kube`]: the skip-or-fail check, and where the binary comes from:
//!   `RINGLAY_KUBE_APISERVER`, else what `scripts/kube-apiserver.sh` prints (which
//!   builds it once per machine).
//!
//! Authorization is RBAC and authentication is by bearer token from the token file:
//! a token may name any user, e.g. `system:serviceaccount:kube-flannel:ringlay`, so
//! bindings to a ServiceAccount apply without a controller manager minting tokens.
//! Requests go through `curl` ([`KubeApiserver::request`]) or `kubectl` with a
//! kubeconfig for a token ([`KubeApiserver::kubectl`]), run in the server's
//! namespace.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use super::etcd::{free_ports, require_etcd, Etcd};
use super::netns::{in_ci, unique_name, Netns};

/// How long a started apiserver may take to answer `/readyz` (its post-start hooks
/// write the bootstrap RBAC roles and priority classes first).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The port of a server in a test namespace (its own address, so no clash).
const NETNS_PORT: u16 = 6443;
/// The service network, as a kubeadm cluster's default.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The first address of [`SERVICE_CIDR`]: the `kubernetes` service, which the
/// server's certificate names.
const SERVICE_IP: &str = "10.96.0.1";
/// The user behind [`KubeApiserver::admin_token`]: in `system:masters`, which RBAC
/// allows everything.
pub const ADMIN_USER: &str = "ringlay-test-admin";
/// The user flannel's DaemonSet runs as, as a ServiceAccount token would name it.
pub const RINGLAY_SA_USER: &str = "system:serviceaccount:kube-flannel:ringlay";

/// The kube-apiserver binary for `test`, or None when it skips: outside CI a missing
/// tool (etcd, openssl, curl) or a binary that cannot be had skips with a printed
/// reason; with `CI=true` it fails.
pub fn require_kube(test: &str) -> Option<PathBuf> {
    if !require_etcd(test) {
        return None;
    }
    for (cmd, package) in [("openssl", "openssl"), ("curl", "curl")] {
        if !super::netns::require_command(test, cmd, package) {
            return None;
        }
    }
    match apiserver_bin() {
        Ok(bin) => Some(bin),
        Err(why) => {
            let reason = format!("{test}: no kube-apiserver: {why}");
            if in_ci() {
                panic!("CI=true and {reason}");
            }
            eprintln!("skipping {reason}");
            None
        }
    }
}

/// `RINGLAY_KUBE_APISERVER`, else the path `scripts/kube-apiserver.sh` prints; the
/// script runs at most once per test process.
fn apiserver_bin() -> Result<PathBuf, String> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("RINGLAY_KUBE_APISERVER") {
            let p = PathBuf::from(p);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("RINGLAY_KUBE_APISERVER={} is no file", p.display()))
            };
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kube-apiserver.sh");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed ({})", script.display(), out.status));
        }
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Ok(PathBuf::from(path))
    })
    .clone()
}

/// The documents of `dist/kube-ringlay.yml` whose `kind` is one of `kinds`, as
/// one YAML stream.
pub fn manifest_docs(kinds: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/kube-ringlay.yml");
    let text = fs::read_to_string(&path).expect("read the manifest");
    text.split("\n---\n")
        .filter(|doc| {
            doc.lines()
                .any(|l| kinds.iter().any(|k| l == format!("kind: {k}")))
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The manifest's namespace, ServiceAccount, ClusterRole and ClusterRoleBinding.
pub fn manifest_rbac() -> String {
    manifest_docs(&[
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
    ])
}

/// A user the token file names: its token, name and groups.
#[derive(Debug, Clone)]
struct TokenUser {
    token: String,
    name: String,
    groups: Vec<String>,
}

/// One kube-apiserver under test with its etcd. Dropping it kills the server (by
/// PID), then etcd, and removes its directory.
#[derive(Debug)]
pub struct KubeApiserver {
    child: Option<Child>,
    // Dropped after `child` is killed (fields drop after `Drop::drop`).
    etcd: Etcd,
    dir: PathBuf,
    ns: Option<String>,
    url: String,
    users: Vec<TokenUser>,
    ready_after: Duration,
    /// What [`KubeApiserver::restart`] starts again.
    bin: PathBuf,
    ip: Ipv4Addr,
    port: u16,
}

impl KubeApiserver {
    /// The server on `https://127.0.0.1:<free port>` in the test's namespace, with
    /// tokens for the admin and for each of `users` (see [`KubeApiserver::token`]).
    pub fn start(bin: &Path, tag: &str, users: &[&str]) -> KubeApiserver {
        let etcd = Etcd::start(&format!("kube-{tag}"));
        let (port, _) = free_ports();
        let ip = Ipv4Addr::LOCALHOST;
        KubeApiserver::launch(bin, tag, etcd, None, ip, port, users)
    }

    /// The server inside `ns` on `https://<ip>:6443`, advertising `ip` (an address
    /// of `ns`), with its etcd on `ip:2379`. Requests from the test run in `ns`.
    pub fn start_in(
        ns: &Netns,
        ip: Ipv4Addr,
        bin: &Path,
        tag: &str,
        users: &[&str],
    ) -> KubeApiserver {
        let etcd = Etcd::start_in(ns, ip, &format!("kube-{tag}"));
        let name = Some(ns.name());
        KubeApiserver::launch(bin, tag, etcd, name, ip, NETNS_PORT, users)
    }

    fn launch(
        bin: &Path,
        tag: &str,
        etcd: Etcd,
        ns: Option<&str>,
        ip: Ipv4Addr,
        port: u16,
        users: &[&str],
    ) -> KubeApiserver {
        let dir = std::env::temp_dir().join(unique_name(&format!("ringlay-kube-{tag}")));
        fs::create_dir_all(&dir).expect("apiserver dir");
        let mut users: Vec<TokenUser> = users
            .iter()
            .map(|u| TokenUser {
                token: random_token(),
                name: (*u).to_owned(),
                groups: groups_of(u),
            })
            .collect();
        users.insert(
            0,
            TokenUser {
                token: random_token(),
                name: ADMIN_USER.to_owned(),
                groups: vec!["system:masters".to_owned()],
            },
        );
        let mut s = KubeApiserver {
            child: None,
            etcd,
            dir,
            ns: ns.map(str::to_owned),
            url: format!("https://{ip}:{port}"),
            users,
            ready_after: Duration::ZERO,
            bin: bin.to_owned(),
            ip,
            port,
        };
        s.write_certs(ip);
        s.write_token_file();
        s.spawn();
        s
    }

    /// CA, server certificate (for `ip`, 127.0.0.1, the service IP and the
    /// `kubernetes` names) and the service-account signing key pair.
    fn write_certs(&self, ip: Ipv4Addr) {
        let script = format!(
            "set -e
             cd {dir}
             openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ringlay-test-kube-ca \
                -keyout ca.key -out ca.pem 2>/dev/null
             printf '%s\\n' \
                'subjectAltName=IP:{ip},IP:127.0.0.1,IP:{SERVICE_IP},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc' \
                'extendedKeyUsage=serverAuth' > server.ext
             openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
                -keyout server.key -out server.csr 2>/dev/null
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
                -extfile server.ext -out server.pem 2>/dev/null
             openssl genrsa -out sa.key 2048 2>/dev/null
             openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null",
            dir = self.dir.display()
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
    }

    /// `token,user,uid,"group,..."` lines, as `--token-auth-file` reads them.
    fn write_token_file(&self) {
        let mut f = fs::File::create(self.dir.join("tokens.csv")).expect("token file");
        for u in &self.users {
            writeln!(
                f,
                "{},{},{},\"{}\"",
                u.token,
                u.name,
                u.name,
                u.groups.join(",")
            )
            .expect("write token file");
        }
    }

    fn spawn(&mut self) {
        let (bin, ip, port) = (self.bin.clone(), self.ip, self.port);
        let d = |name: &str| self.dir.join(name).display().to_string();
        let args: Vec<String> = vec![
            format!("--etcd-servers={}", self.etcd.endpoint()),
            format!("--bind-address={ip}"),
            format!("--advertise-address={ip}"),
            format!("--secure-port={port}"),
            // 1.20 still has the unauthenticated port (8080 by default): off.
            "--insecure-port=0".into(),
            format!("--cert-dir={}", d("certs")),
            format!("--tls-cert-file={}", d("server.pem")),
            format!("--tls-private-key-file={}", d("server.key")),
            format!("--client-ca-file={}", d("ca.pem")),
            format!("--token-auth-file={}", d("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            // Nodes with a podCIDR of each family (alpha in 1.20, default since
            // 1.21): what a dual-stack cluster's node IPAM assigns.
            "--feature-gates=IPv6DualStack=true".into(),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            // No kubelets, no aggregated APIs: nothing to reach outside.
            "--profiling=false".into(),
            "--logtostderr=true".into(),
            "--v=1".into(),
        ];
        let log = fs::File::create(self.dir.join("apiserver.log")).expect("apiserver log");
        let mut cmd = match &self.ns {
            // `ip netns exec` execs the server, so the child's PID is its own.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let started = Instant::now();
        self.child = Some(cmd.spawn().expect("spawn kube-apiserver"));
        loop {
            // Anonymous, as a load balancer's probe: `system:public-info-viewer`
            // allows it. A 500 lists the checks that still fail.
            let out = self.request("GET", "/readyz", None, None);
            if out.status.success() && String::from_utf8_lossy(&out.stdout).ends_with("\n200") {
                self.ready_after = started.elapsed();
                return;
            }
            if let Some(Ok(Some(s))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("kube-apiserver exited ({s}) at start:\n{}", self.log_tail());
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "kube-apiserver not ready within {READY_TIMEOUT:?}:\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last 60 lines of the server's output.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// The server's URL (`https://127.0.0.1:port` or `https://<ip>:6443`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA certificate (PEM) that signed the server's certificate.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A token of a user in `system:masters`.
    pub fn admin_token(&self) -> &str {
        &self.users[0].token
    }

    /// The token of `user`, one of those given at start. Panics for another name:
    /// the token file is read only at start.
    pub fn token(&self, user: &str) -> &str {
        self.users
            .iter()
            .find(|u| u.name == user)
            .map(|u| u.token.as_str())
            .unwrap_or_else(|| panic!("no token for {user}: name it at start"))
    }

    /// How long the server took from spawn to its first `ok` on `/readyz`.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The etcd behind it.
    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// The temporary directory (certificates, token file, log, kubeconfigs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a kubeconfig that reaches this server as the holder of `token`, and
    /// returns its path.
    pub fn write_kubeconfig(&self, token: &str) -> PathBuf {
        let path = self.dir.join(unique_name("kubeconfig"));
        let config = format!(
            "apiVersion: v1
kind: Config
clusters:
  - name: ringlay-test
    cluster:
      server: {url}
      certificate-authority: {ca}
users:
  - name: ringlay-test
    user:
      token: {token}
contexts:
  - name: ringlay-test
    context:
      cluster: ringlay-test
      user: ringlay-test
current-context: ringlay-test
",
            url = self.url,
            ca = self.ca_path().display(),
        );
        fs::write(&path, config).expect("write kubeconfig");
        path
    }

    /// A command run where the server is reachable: in its namespace, if any.
    pub fn command(&self, program: &str) -> Command {
        let mut c = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        c.stdin(Stdio::null());
        c
    }

    /// `curl` of `path` with `method`, as the holder of `token` (none: anonymous),
    /// with `body` as JSON (or as `content_type` for a PATCH). Stdout is the body
    /// followed by a last line with the HTTP status; the exit status is curl's own
    /// (success also for 4xx).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> Output {
        let mut c = self.command("curl");
        c.args([
            "-sS",
            "-m",
            "10",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(self.ca_path());
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some((content_type, data)) = body {
            c.args(["-H", &format!("Content-Type: {content_type}")]);
            c.args(["--data-binary", data]);
        }
        c.arg(format!("{}{path}", self.url));
        c.output().expect("run curl")
    }

    /// Like [`KubeApiserver::request`], but returns the HTTP status and the body,
    /// panicking only if curl itself fails (no connection, timeout).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<(&str, &str)>,
    ) -> (u16, String) {
        let out = self.request(method, path, Some(token), body);
        assert!(
            out.status.success(),
            "curl -X {method} {path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code.trim().parse().expect("curl's %{http_code}");
        (code, body.to_owned())
    }

    /// `kubectl --kubeconfig=<one for token> args...`, with `stdin` piped in.
    pub fn kubectl(&self, token: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let config = self.write_kubeconfig(token);
        let mut c = self.command("kubectl");
        c.arg(format!("--kubeconfig={}", config.display()))
            .args(["--request-timeout=20s"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("run kubectl");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).expect("kubectl's stdin");
        }
        let out = child.wait_with_output().expect("wait for kubectl");
        let _ = fs::remove_file(config);
        out
    }

    /// Kills the server and starts it again on the same etcd, address and
    /// certificates; returns once it is ready.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGKILL by PID, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for KubeApiserver {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The groups a token-file user gets, as the ServiceAccount authenticator would
/// give a ServiceAccount; `system:authenticated` the server adds itself.
fn groups_of(user: &str) -> Vec<String> {
    match user.strip_prefix("system:serviceaccount:") {
        Some(rest) => {
            let ns = rest.split(':').next().unwrap_or_default();
            vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{ns}"),
            ]
        }
        None => Vec::new(),
    }
}

/// 32 hex digits from /dev/urandom.
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
