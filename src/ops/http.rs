//! The operator endpoints: a minimal HTTP/1.1 server (`/metrics`, `/healthz`,
//! `/readyz`) and the `ringlay status` unix socket, served by one thread of their
//! own so that they answer while the daemon is still starting (`/readyz` 503) and
//! never compete with the control loop.
//!
//! Each connection gets one response and is closed (`Connection: close`); a
//! request head larger than [`MAX_HEAD`] or slower than [`CLIENT_TIMEOUT`] is
//! dropped. Only `GET` (and `HEAD`) are served.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};

use super::{metrics, status::Status, State};
use crate::{Error, Result};

/// The largest request head read.
pub const MAX_HEAD: usize = 8192;
/// How long a client may take to send its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// What to serve, and where.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// `--metrics-addr`: `/metrics` (and the health paths too).
    pub metrics: Option<SocketAddr>,
    /// `--healthz-ip`/`--healthz-port`: `/healthz` and `/readyz`.
    pub health: Option<SocketAddr>,
    /// The status socket.
    pub status_socket: Option<PathBuf>,
}

/// The running endpoints; dropping it stops them and removes the status socket.
pub struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    socket: Option<PathBuf>,
    /// The socket's directory, if we created it (removed on drop when empty).
    created_dir: Option<PathBuf>,
}

/// One bound HTTP listener and whether it serves `/metrics`.
struct Http {
    listener: std::net::TcpListener,
    metrics: bool,
}

impl Server {
    /// Binds every endpoint (so that a taken port is a start-up error) and starts
    /// serving `state` on a thread of its own.
    pub fn start(endpoints: &Endpoints, state: Arc<State>) -> Result<Server> {
        let mut http: Vec<Http> = Vec::new();
        for (addr, with_metrics, flag) in [
            (endpoints.metrics, true, "--metrics-addr"),
            (endpoints.health, false, "--healthz-ip/--healthz-port"),
        ] {
            let Some(addr) = addr else { continue };
            if let Some(h) = http
                .iter_mut()
                .find(|h| h.listener.local_addr().ok() == Some(addr))
            {
                h.metrics |= with_metrics;
                continue;
            }
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| Error::setup(format!("{flag}: listening on {addr}"), e))?;
            // (No path names here: test harnesses wait for the word the start-up
            // line ends with.)
            tracing::info!(%addr, metrics = with_metrics, "serving the HTTP endpoints ({flag})");
            http.push(Http {
                listener,
                metrics: with_metrics,
            });
        }
        let (unix, created_dir) = match &endpoints.status_socket {
            Some(path) => bind_status(path)?,
            None => (None, None),
        };
        let socket = unix.as_ref().map(|_| {
            endpoints
                .status_socket
                .clone()
                .expect("a bound socket has a path")
        });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ringlay-ops".into())
            .spawn(move || serve(http, unix, state, stopped))
            .map_err(|e| Error::setup("starting the endpoint thread", e))?;
        Ok(Server {
            stop: Some(stop),
            thread: Some(thread),
            socket,
            created_dir,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
        if let Some(d) = &self.created_dir {
            // Only if empty: another daemon's socket may live there.
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Binds the status socket at `path`, mode 0600 in a directory of mode 0700 it
/// creates if missing (and then returns, so that it is removed again). A socket
/// another live ringlay answers on is left alone (with a warning, and no status
/// socket for us); a stale one is replaced.
fn bind_status(path: &Path) -> Result<(Option<std::os::unix::net::UnixListener>, Option<PathBuf>)> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        tracing::warn!(
            socket = %path.display(),
            "another ringlay answers on this status socket: running without one (give --status-socket)"
        );
        return Ok((None, None));
    }
    let fail = |e| Error::setup(format!("creating the status socket {}", path.display()), e);
    let mut created = None;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Created 0700 (less the umask) rather than chmod-ed after: never wider.
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {
                created = Some(dir.to_path_buf());
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(fail)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(e)),
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(fail(e)),
        _ => {}
    }
    // Bound 0600 from the start (not chmod-ed after), then made exactly 0600
    // whatever the umask took away.
    let listener = crate::sys::socket::unix_listener(path, 0o600).map_err(fail)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok((Some(listener), created))
}

fn serve(
    http: Vec<Http>,
    unix: Option<std::os::unix::net::UnixListener>,
    state: Arc<State>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    // Serving bound sockets needs no privilege: this thread (and the threads
    // its runtime starts) gives up every capability now (see `privilege`).
    if let Err(e) = crate::sys::caps::restrict_thread(crate::sys::caps::CapSet::EMPTY) {
        tracing::error!("cannot drop the endpoint thread's capabilities: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("the endpoint thread cannot start its runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for h in http {
            match TcpListener::from_std(h.listener) {
                Ok(l) => {
                    tasks.spawn(accept_http(l, h.metrics, Arc::clone(&state)));
                }
                Err(e) => tracing::error!("serving HTTP: {e}"),
            }
        }
        if let Some(u) = unix {
            match UnixListener::from_std(u) {
                Ok(l) => {
                    tasks.spawn(accept_status(l, Arc::clone(&state)));
                }
                Err(e) => tracing::error!("serving the status socket: {e}"),
            }
        }
        let _ = stopped.await;
        tasks.abort_all();
    });
}

async fn accept_http(listener: TcpListener, metrics: bool, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(CLIENT_TIMEOUT, answer_http(stream, metrics, &state))
                            .await;
                });
            }
            Err(e) => {
                tracing::debug!("accepting an HTTP connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer_http(
    mut stream: tokio::net::TcpStream,
    metrics: bool,
    state: &State,
) -> io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(
                &mut stream,
                431,
                "text/plain",
                "request head too large\n",
                false,
            )
            .await;
        }
    }
    let (code, body, kind) = route(&head, metrics, state);
    let is_head = head.starts_with(b"HEAD ");
    respond(&mut stream, code, kind, &body, is_head).await
}

/// The status, body and content type answering a request head.
pub fn route(head: &[u8], metrics: bool, state: &State) -> (u16, String, &'static str) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" && method != "HEAD" {
        return (405, "only GET\n".into(), TEXT);
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/healthz" => (200, "ok\n".into(), TEXT),
        "/readyz" if state.is_ready() => (200, "ready\n".into(), TEXT),
        "/readyz" => (503, "not ready\n".into(), TEXT),
        "/metrics" if metrics => (
            200,
            metrics::render(&state.sample()),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        _ => (404, "not found\n".into(), TEXT),
    }
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    code: u16,
    kind: &str,
    body: &str,
    head_only: bool,
) -> io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

async fn accept_status(listener: UnixListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let doc = Status::of(&state.sample());
                    let mut json = serde_json::to_vec(&doc).unwrap_or_default();
                    json.push(b'\n');
                    let _ = tokio::time::timeout(CLIENT_TIMEOUT, stream.write_all(&json)).await;
                });
            }
            Err(e) => {
                tracing::debug!("accepting a status connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads the status from the daemon's socket at `path` (the `ringlay status` client).
pub fn fetch_status(path: &Path) -> io::Result<Status> {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_health_and_metrics() {
        let state = State::new();
        let get =
            |p: &str, m: bool| route(format!("GET {p} HTTP/1.1\r\n\r\n").as_bytes(), m, &state).0;
        assert_eq!(get("/healthz", false), 200);
        assert_eq!(get("/readyz", false), 503);
        assert_eq!(get("/metrics", false), 404);
        assert_eq!(get("/metrics", true), 200);
        state.set_ready(true);
        assert_eq!(get("/readyz", false), 200);
        assert_eq!(get("/readyz?verbose", false), 200);
        assert_eq!(
            route(b"POST /healthz HTTP/1.1\r\n\r\n", true, &state).0,
            405
        );
    }
}
