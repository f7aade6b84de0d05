//! Serving (SPEC §10): our own accept loop over hyper, so that every phase of a connection has
//! a deadline and the number of connections has a cap.
//!
//! `axum::serve` sets no timer: a client that sends nothing, trickles header lines, or idles on
//! keep-alive holds its connection (and a file descriptor) forever. Here, per listener:
//!
//! - a permit of the listener's `max_connections` semaphore is taken *before* accepting, so beyond
//!   the cap new connections wait in the kernel's backlog while the open ones keep working. The
//!   operator listener (`admin_bind`) has its own permits: a flood on the public port never locks
//!   the operators out;
//! - each connection runs in its own task: the TLS handshake when configured (bounded by
//!   `header_read_timeout`), then hyper's HTTP/1.1 with a watchdog that knows the connection's
//!   phase: *headers* (a new connection, or the first byte of a further request arrived, and the
//!   request has not started; closed after `header_read_timeout`), *idle* (between requests on
//!   keep-alive; closed after `idle_timeout`), *busy* (a request is being handled; its deadline,
//!   `request_timeout`, is the request middleware's). A new connection must send its first
//!   headers within `header_read_timeout`, as nginx's `client_header_timeout`: connecting and
//!   sending nothing buys an attacker no more than trickling;
//! - on stop, nothing more is accepted, every connection is asked to finish (idle ones close at
//!   once, busy ones after their answer), and whatever is left after `shutdown_grace` is dropped.
//!
//! Why not hyper's own `header_read_timeout`: in hyper 1.x its timer also runs while a keep-alive
//! connection waits for its next request, so it would silently cut `idle_timeout` down to
//! `header_read_timeout` — and an ingress whose keep-alive outlives the backend's sees resets.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::config::{ServerSettings, TlsFiles};

/// What one listener needs besides its socket and its routes.
#[derive(Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub tls: Option<TlsAcceptor>,
}

impl Limits {
    pub fn new(s: &ServerSettings, tls: Option<TlsAcceptor>) -> Limits {
        Limits {
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_connections: s.max_connections,
            shutdown_grace: s.shutdown_grace,
            tls,
        }
    }
}

/// Reads the PEM certificate chain and key of `[server] tls_cert`/`tls_key`; errors name the key
/// and never quote the key file.
pub fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("server.tls_cert: cannot read {}: {e}", files.cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls_cert: {} holds no PEM certificate",
            files.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "server.tls_key: cannot read a PEM private key from {}: {}",
            files.key.display(),
            // The error names the section it expected; it never holds key material.
            e
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls_cert: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls_key: does not fit server.tls_cert: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` until `stop`, then drains for at most `shutdown_grace`.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    // Connections are told to finish through their own token, so that the accept loop can stop
    // first and the drain below is what the grace bounds.
    let finish = CancellationToken::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: back off a
                    // little rather than spin, and keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        while conns.try_join_next().is_some() {}
        let _ = tcp.set_nodelay(true);
        let (app, limits, finish) = (app.clone(), limits.clone(), finish.clone());
        conns.spawn(async move {
            connection(tcp, peer, app, &limits, finish).await;
            drop(permit);
        });
    }
    drop(listener);
    finish.cancel();
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            grace = ?limits.shutdown_grace,
            "shutdown grace passed; closing the connections still open"
        );
        conns.shutdown().await;
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: &Limits,
    finish: CancellationToken,
) {
    match &limits.tls {
        None => drive(tcp, peer, app, limits, finish).await,
        Some(acceptor) => {
            let handshake = tokio::select! {
                r = tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp)) => r,
                _ = finish.cancelled() => return,
            };
            match handshake {
                Ok(Ok(tls)) => drive(tls, peer, app, limits, finish).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

async fn drive<I>(io: I, peer: SocketAddr, app: Router, limits: &Limits, finish: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let phase = Arc::new(Phase::new());
    let io = TokioIo::new(Watched {
        inner: io,
        phase: phase.clone(),
    });
    let svc_phase = phase.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        svc_phase.set(BUSY);
        req.extensions_mut().insert(ConnectInfo(peer));
        let answer = app.clone().call(req);
        let done = BusyGuard(svc_phase.clone());
        async move {
            let resp = answer.await;
            drop(done);
            resp
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    let mut finishing = false;
    loop {
        let deadline = phase.deadline(limits);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = phase.changed.notified() => {}
            _ = sleep_until(deadline) => {
                match phase.get() {
                    IDLE if phase.elapsed() >= limits.idle_timeout => {
                        tracing::debug!(%peer, "idle keep-alive connection closed");
                        return;
                    }
                    HEADERS if phase.elapsed() >= limits.header_read_timeout => {
                        tracing::info!(%peer, "connection closed: headers not complete within server.header_read_timeout");
                        return;
                    }
                    _ => {}
                }
            }
            _ = finish.cancelled(), if !finishing => {
                finishing = true;
                // Idle connections close at once; a busy one after its answer.
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

const IDLE: u8 = 0;
const HEADERS: u8 = 1;
const BUSY: u8 = 2;

/// Where a connection is, and since when; shared by the IO wrapper, the service and the
/// watchdog.
struct Phase {
    state: AtomicU8,
    /// Milliseconds after `origin` at which `state` was entered.
    since_ms: AtomicU64,
    origin: Instant,
    changed: Notify,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            state: AtomicU8::new(HEADERS),
            since_ms: AtomicU64::new(0),
            origin: Instant::now(),
            changed: Notify::new(),
        }
    }

    fn get(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    fn set(&self, state: u8) {
        self.since_ms
            .store(self.origin.elapsed().as_millis() as u64, Ordering::Release);
        self.state.store(state, Ordering::Release);
        self.changed.notify_one();
    }

    /// Idle → headers, when the first byte of a request arrives.
    fn bytes_arrived(&self) {
        if self.get() == IDLE {
            self.set(HEADERS);
        }
    }

    fn elapsed(&self) -> Duration {
        let since = Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        self.origin.elapsed().saturating_sub(since)
    }

    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let since = self.origin + Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        match self.get() {
            IDLE => Some(since + limits.idle_timeout),
            HEADERS => Some(since + limits.header_read_timeout),
            _ => None,
        }
    }
}

/// Back to idle when the answer is ready, also when the request future is dropped.
struct BusyGuard(Arc<Phase>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set(IDLE);
    }
}

/// The connection's IO, telling [`Phase`] when bytes arrive.
struct Watched<I> {
    inner: I,
    phase: Arc<Phase>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.bytes_arrived();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
