//! The admin HTTP API (health, status, trunks, calls, reload, drain, log level) and the
//! Prometheus `/metrics` endpoint. Handlers never touch the engine: they send a command to the
//! engine task and await its answer.
//!
//! - this file: the settings and state, the router, serving, helpers the routes share;
//! - `access`: who may call (token, loopback rule for changes, failed-attempt limits);
//! - `views`: the read-only routes (health, ready, status, trunks, calls, registrations,
//!   plugins, metrics);
//! - `actions`: the routes that change state (reload, drain, log level, bans);
//! - [`tls`]: the admin API over TLS.

// The workspace lints forbid panicking slicing and arithmetic in code that handles input; tests
// index into data they built themselves.
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::arithmetic_side_effects,
        clippy::cast_possible_truncation
    )
)]

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use sluice_config::ReloadError;
use sluice_transport::Command;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

mod access;
mod actions;
pub mod tls;
mod views;

use access::gate;
pub use access::{is_loopback, AuthFailures};
use actions::{bans, drain, lift_bans, reload, set_log};
use views::{calls, health, metrics, plugins, ready, registrations, status, trunks};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Re-read and validate the configuration; on success, the new configuration's hash after it
/// was applied, else why the running configuration stays.
pub type Reloader = Arc<dyn Fn() -> BoxFuture<Result<String, ReloadError>> + Send + Sync>;
/// Change the log filter at run time.
pub type LogSetter = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The admin settings a reload may change; they take effect at once (a rotated token is the only
/// one accepted from the next request on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSettings {
    /// Bearer token required on every admin route when set.
    pub token: Option<String>,
    /// How long a drain lets calls go on when the request names no deadline.
    pub drain_deadline: Duration,
    /// After an upgrade, how long the old process lets its calls go on.
    pub upgrade_deadline: Duration,
}

/// Shared between the admin API, the signal handlers and the reloader.
pub type SharedSettings = Arc<RwLock<AdminSettings>>;

#[derive(Clone)]
pub struct AdminState {
    pub commands: mpsc::Sender<Command>,
    pub settings: SharedSettings,
    pub reload: Reloader,
    pub set_log: LogSetter,
    pub config_hash: Arc<Mutex<String>>,
    pub metrics: PrometheusHandle,
    /// Why the last plugin or configuration reload was refused, until one succeeds.
    pub load_error: Arc<Mutex<Option<String>>>,
    /// Failed token attempts per source address (an IPv6 source per /64), to rate-limit and
    /// report them.
    pub auth_failures: Arc<Mutex<HashMap<IpAddr, AuthFailures>>>,
    /// Set by the engine's shell when a drain starts: `/ready` reads it without a round trip.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// The admin API router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/status", get(status))
        .route("/trunks", get(trunks))
        .route("/calls", get(calls))
        .route("/registrations", get(registrations))
        .route("/plugins", get(plugins))
        .route("/bans", get(bans).delete(lift_bans))
        .route("/metrics", get(metrics))
        .route("/reload", post(reload))
        .route("/drain", post(drain))
        .route("/log", put(set_log))
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// A router with `/metrics` only, for a separate scrape address.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let h = handle.clone();
            async move { prometheus_text(&h) }
        }),
    )
}

/// Serve the API over TLS (see [`tls`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    router: Router,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // `tap_io` gives the listener the connection address the gate reads.
    axum::serve(
        tls::TlsListener::new(listener, config).tap_io(|_| {}),
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    // The peer's address reaches the gate (failed attempts are counted per source).
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

fn prometheus_text(h: &PrometheusHandle) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        sluice_b2bua::metrics::without_retired(h.render()),
    )
        .into_response()
}

/// The drain deadline the settings give (the default when the lock is poisoned).
pub fn drain_deadline(settings: &SharedSettings) -> Duration {
    settings
        .read()
        .map(|s| s.drain_deadline)
        .unwrap_or(Duration::from_secs(30))
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the engine is not running\n",
    )
        .into_response()
}

/// Ask the engine something and wait (bounded) for its answer.
async fn ask<T>(state: &AdminState, cmd: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
    let (tx, rx) = oneshot::channel();
    state.commands.send(cmd(tx)).await.ok()?;
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .ok()?
        .ok()
}

#[cfg(test)]
mod tests {
    /// The README's admin table and the router agree: every route with each of its methods
    /// has a row, and every row is a route.
    #[test]
    fn the_readme_lists_every_route() {
        use std::collections::BTreeSet;
        let readme = include_str!("../../../README.md");
        let source = include_str!("lib.rs");
        let methods = [
            ("get(", "GET"),
            ("post(", "POST"),
            ("put(", "PUT"),
            ("delete(", "DELETE"),
        ];
        let mut routes = BTreeSet::new();
        for line in source.lines().map(str::trim) {
            let Some(rest) = line.strip_prefix(".route(\"") else {
                continue;
            };
            let Some((path, handlers)) = rest.split_once('"') else {
                continue;
            };
            for (call, method) in methods {
                if handlers.contains(call) {
                    routes.insert(format!("{method} {path}"));
                }
            }
        }
        assert!(
            routes.len() >= 10,
            "the routes were found in the source: {routes:?}"
        );
        // Rows such as "| `DELETE /bans?source=A` | …": the method and the path.
        let rows: BTreeSet<String> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once('`').map(|(cell, _)| cell))
            .filter(|cell| {
                methods
                    .iter()
                    .any(|(_, m)| cell.strip_prefix(m).is_some_and(|r| r.starts_with(" /")))
            })
            .map(|cell| cell.split('?').next().unwrap_or(cell).to_string())
            .collect();
        let missing: Vec<_> = routes.difference(&rows).collect();
        assert!(
            missing.is_empty(),
            "the README's admin table lacks {missing:?}"
        );
        let invented: Vec<_> = rows.difference(&routes).collect();
        assert!(
            invented.is_empty(),
            "the README's admin table names no route {invented:?}"
        );
    }
}
