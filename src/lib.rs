//! offboard: HR termination webhooks in, deactivated Adobe Workfront users out.
//!
//! The flow, and where each part lives:
//! 1. [`http::webhooks`] authenticates a delivery ([`sources`]), parses it into [`domain`] events,
//!    and [`intake`] stores delivery, events and actions in one transaction ([`store`]).
//! 2. The [`worker`] claims due actions with a lease and runs each through its pipeline: find the
//!    user ([`workfront`]), check [`safety`], write, verify, retry per policy; every step lands in
//!    the audit trail.
//! 3. Operators look and steer through [`http::admin`]; reconciliations ([`worker::reconcile`])
//!    check lists of leavers against Workfront; [`sim`] stands in for Workfront.
//!
//! [`Application::build`] wires it all for `main`, the demo and the tests.

pub mod admin_client;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod hrapi;
pub mod http;
pub mod intake;
pub mod metrics;
pub mod notify;
pub mod safety;
pub mod sim;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod worker;
pub mod workfront;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::store::Store;
use crate::worker::{Health, Worker};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running service: HTTP server and worker over one store.
pub struct Application {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown_grace: std::time::Duration,
    store: Store,
    cancel: CancellationToken,
    servers: Vec<JoinHandle<()>>,
    worker: JoinHandle<()>,
    retention: JoinHandle<()>,
    reconciler: JoinHandle<()>,
    scheduler: JoinHandle<()>,
}

impl Application {
    /// Connects and migrates the store, binds `server.bind` (port 0 picks a free port) and
    /// starts the server and the worker.
    pub async fn build(settings: Settings) -> Result<Application, BoxError> {
        Self::build_with_clock(settings, domain::clock::Clock::system()).await
    }

    /// As [`Application::build`], with the clock every part of the service reads (tests move a
    /// manual clock forward instead of waiting).
    pub async fn build_with_clock(
        settings: Settings,
        clock: domain::clock::Clock,
    ) -> Result<Application, BoxError> {
        let settings = Arc::new(settings);
        let store = Store::connect(&settings.database.url, clock.clone()).await?;
        store.migrate().await?;
        if store.backend() == store::Backend::Sqlite {
            // One process owns a SQLite file: what is in progress was left by our predecessor.
            let orphans = store.expire_orphaned_leases().await?;
            if orphans > 0 {
                tracing::info!(
                    actions = orphans,
                    "resuming actions an earlier process left in progress"
                );
            }
        }
        let wf = &settings.workfront;
        let limiter: Arc<dyn workfront::limit::Limiter> = match store.backend() {
            store::Backend::Postgres => Arc::new(workfront::limit::Fleet::new(
                store::FleetSlots::connect(
                    &settings.database.url,
                    wf.max_concurrency,
                    clock.clone(),
                )
                .await?,
                wf.max_concurrency,
                wf.adaptive_concurrency,
            )),
            store::Backend::Sqlite => Arc::new(workfront::limit::Local::new(
                wf.max_concurrency,
                wf.adaptive_concurrency,
            )),
        };
        let client = workfront::Client::new(wf, limiter)?;
        let listener = tokio::net::TcpListener::bind(settings.server.bind)
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on {} (server.bind): {e}",
                    settings.server.bind
                )
            })?;
        let addr = listener.local_addr()?;
        let admin_listener = match settings.server.admin_bind {
            None => None,
            Some(a) => Some(
                tokio::net::TcpListener::bind(a)
                    .await
                    .map_err(|e| format!("cannot listen on {a} (server.admin_bind): {e}"))?,
            ),
        };
        let admin_addr = match &admin_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let tls = match &settings.server.tls {
            Some(files) => Some(http::serve::tls_acceptor(files)?),
            None => None,
        };
        let limits = http::serve::Limits::new(&settings.server, tls);
        let cancel = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        let health = Arc::new(Health::default());
        let metrics = Arc::new(metrics::Metrics::new());
        let notifier = notify::Notifier::new(settings.notify.webhook_url.clone());
        let reconcile_wake = Arc::new(Notify::new());
        let state = http::AppState::new(http::Shared {
            store: store.clone(),
            settings: settings.clone(),
            wake: wake.clone(),
            reconcile_wake: reconcile_wake.clone(),
            health: health.clone(),
            metrics: metrics.clone(),
            clock: clock.clone(),
            auth_failures: Arc::new(std::sync::Mutex::new(domain::failures::AuthFailures::new(
                settings.server.auth_failures_per_minute,
            ))),
        });
        let routers = http::routers(state);
        let mut servers = vec![tokio::spawn(http::serve::serve(
            listener,
            routers.public,
            limits.clone(),
            cancel.clone(),
        ))];
        if let (Some(l), Some(app)) = (admin_listener, routers.operator) {
            servers.push(tokio::spawn(http::serve::serve(
                l,
                app,
                limits,
                cancel.clone(),
            )));
        }
        let scheduler = worker::schedule::Scheduler {
            store: store.clone(),
            settings: settings.clone(),
            notifier: notifier.clone(),
            hr_http: worker::hr_http(),
            reconcile_wake: reconcile_wake.clone(),
        };
        let scheduler = tokio::spawn(scheduler.run(cancel.clone()));
        let reconciler = worker::reconcile::Reconciler {
            store: store.clone(),
            client: client.clone(),
            settings: settings.clone(),
            metrics: metrics.clone(),
            notifier: notifier.clone(),
            wake: reconcile_wake,
            worker_wake: wake.clone(),
        };
        let reconciler = tokio::spawn(reconciler.run(cancel.clone()));
        let shared = worker::Shared {
            store: store.clone(),
            settings: settings.clone(),
            health,
            metrics,
            notifier,
            wake,
        };
        let worker = Worker::new(shared, client);
        let worker = tokio::spawn(worker.run(cancel.clone()));
        let retention = tokio::spawn(worker::retention::run(
            store.clone(),
            settings.retention.clone(),
            cancel.clone(),
        ));
        tracing::info!(%addr, admin_addr = ?admin_addr, tls = settings.server.tls.is_some(), database = %settings.database.redacted_url(), sources = settings.sources.len(), "offboard is listening");
        Ok(Application {
            addr,
            admin_addr,
            shutdown_grace: settings.server.shutdown_grace,
            store,
            cancel,
            servers,
            worker,
            retention,
            reconciler,
            scheduler,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The operator listener's address, when `server.admin_bind` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Graceful stop: no new requests, in-flight Workfront calls finish (bounded), leases given
    /// back.
    pub async fn stop(self) {
        self.cancel.cancel();
        for s in self.servers {
            let _ = s.await;
        }
        let _ = self.worker.await;
        let _ = self.retention.await;
        let _ = self.reconciler.await;
        let _ = self.scheduler.await;
        self.store.close().await;
    }

    /// Stops at once without any clean-up, as a crash would (tests of restart safety).
    pub fn abort(self) {
        for s in &self.servers {
            s.abort();
        }
        self.worker.abort();
        self.retention.abort();
        self.reconciler.abort();
        self.scheduler.abort();
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully.
    pub async fn run_until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        let grace = self.shutdown_grace;
        // The servers drain within the grace themselves; this bounds the rest (a Workfront call in
        // flight). Exiting then is safe: its lease expires and the write is verified on resume.
        if tokio::time::timeout(grace + std::time::Duration::from_secs(1), self.stop())
            .await
            .is_err()
        {
            tracing::warn!(?grace, "server.shutdown_grace passed; exiting with work in flight (it resumes from its lease)");
            return;
        }
        tracing::info!("stopped");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
