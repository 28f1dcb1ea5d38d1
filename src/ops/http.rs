//! The operator endpoints: a minimal HTTP/1.1 server (`/metrics`, `/healthz`,
//! `/readyz`), and the thread that serves it together with the `ringlay status`
//! socket (bound and answered by [`super::status`]), so that they answer while
//! the daemon is still starting (`/readyz` 503) and never compete with the
//! control loop.
//!
//! Each connection gets one response and is closed (`Connection: close`); a
//! request head larger than [`MAX_HEAD`] or slower than [`CLIENT_TIMEOUT`] is
//! dropped. Only `GET` (and `HEAD`) are served.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{metrics, status, State, CLIENT_TIMEOUT};
use crate::{Error, Result};

/// The largest request head read.
pub const MAX_HEAD: usize = 8192;

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
    /// Dropped after the thread has stopped (fields drop after [`Drop::drop`]).
    _socket: Option<status::Socket>,
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
        let (socket, unix) = match &endpoints.status_socket {
            Some(path) => status::bind(path)?.unzip(),
            None => (None, None),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ringlay-ops".into())
            .spawn(move || serve(http, unix, state, stopped))
            .map_err(|e| Error::setup("starting the endpoint thread", e))?;
        Ok(Server {
            stop: Some(stop),
            thread: Some(thread),
            _socket: socket,
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
    }
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
            tasks.spawn(status::serve(u, Arc::clone(&state)));
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
