//! The admin HTTP API (health, status, trunks, calls, reload, drain, log level) and the
//! Prometheus `/metrics` endpoint. Handlers never touch the engine: they send a command to the
//! engine task and await its answer.

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

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use sluice_b2bua::Direction;
use sluice_config::{ReloadError, MAX_DRAIN_SECONDS};
use sluice_transport::{Command, Status};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

pub mod tls;

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

/// Sources whose failed attempts are remembered at once; past it, the oldest are forgotten.
const MAX_FAILING_SOURCES: usize = 1024;

/// One source's failed token attempts: past [`AuthFailures::LIMIT`] in a minute, its requests
/// get 429 until the minute is over (other sources, the operator's, are not affected); one
/// warning per 10 s says how many failed.
#[derive(Debug, Default)]
pub struct AuthFailures {
    window_start: Option<std::time::Instant>,
    in_window: u32,
    unreported: u32,
    last_report: Option<std::time::Instant>,
}

impl AuthFailures {
    pub const LIMIT: u32 = 20;

    /// Whether requests are being turned away now (over the limit this minute).
    fn blocked(&self, now: std::time::Instant) -> bool {
        self.in_window >= Self::LIMIT
            && self
                .window_start
                .is_some_and(|s| now.saturating_duration_since(s) < Duration::from_secs(60))
    }

    /// A failed attempt: counted, reported at most every 10 s.
    fn failed(&mut self, now: std::time::Instant, source: IpAddr) {
        if self
            .window_start
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(60))
        {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        self.unreported = self.unreported.saturating_add(1);
        if self
            .last_report
            .is_none_or(|r| now.saturating_duration_since(r) >= Duration::from_secs(10))
        {
            warn!(
                %source,
                failures = self.unreported,
                this_minute = self.in_window,
                "admin API: requests with a missing or wrong token refused"
            );
            self.unreported = 0;
            self.last_report = Some(now);
        }
    }
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

/// Whether a request to a route may proceed: `None`, or the answer that refuses it.
/// `changes` marks a route that changes state (reload, drain, log level, bans).
fn refusal(
    state: &AdminState,
    headers: &HeaderMap,
    changes: bool,
    source: IpAddr,
) -> Option<Response> {
    // A poisoned lock (a panic while it was held) cannot happen: writers only assign a value.
    // Refuse rather than guess if it ever does.
    let token = match state.settings.read() {
        Ok(s) => s.token.clone(),
        Err(_) => return Some(unauthorised()),
    };
    let Some(token) = token else {
        // No token (loopback only). A web page in the operator's browser must not reach it: not
        // by posting a form (a browser's Origin), nor by DNS rebinding (a Host that is a name).
        if !loopback_host(headers) {
            return Some(
                (StatusCode::FORBIDDEN, "Host must be a loopback address\n").into_response(),
            );
        }
        if changes && headers.contains_key(header::ORIGIN) {
            return Some(
                (
                    StatusCode::FORBIDDEN,
                    "cross-origin requests may not change state\n",
                )
                    .into_response(),
            );
        }
        return None;
    };
    // RFC 7235: the scheme is case-insensitive.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
        // The right token always passes: a neighbour guessing cannot lock the operator out.
        return None;
    }
    let now = std::time::Instant::now();
    let Ok(mut all) = state.auth_failures.lock() else {
        return Some(unauthorised());
    };
    let source = sluice_guard::key(source);
    if !all.contains_key(&source) && all.len() >= MAX_FAILING_SOURCES {
        // Make room: forget the source whose window started first.
        let oldest = all
            .iter()
            .min_by_key(|(_, f)| f.window_start)
            .map(|(ip, _)| *ip);
        if let Some(ip) = oldest {
            all.remove(&ip);
        }
    }
    let failures = all.entry(source).or_default();
    let blocked = failures.blocked(now);
    failures.failed(now, source);
    if blocked {
        return Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "60")],
                "too many failed token attempts; try again in a minute\n",
            )
                .into_response(),
        );
    }
    Some(unauthorised())
}

/// Whether the request's Host names a loopback address or `localhost` (a tokenless API
/// listens on loopback only; another name is a page rebinding its own name to us).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        // HTTP/1.0 clients may send none; they are no browser.
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Every route but `/health` and `/ready` (which load balancers probe, and which reveal
/// nothing) needs the token when one is set; see [`refusal`].
async fn gate(
    State(state): State<AdminState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if path == "/health" || path == "/ready" {
        return next.run(req).await;
    }
    let changes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let source = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if let Some(r) = refusal(&state, req.headers(), changes, source) {
        return r;
    }
    next.run(req).await
}

/// The drain deadline the settings give (the default when the lock is poisoned).
pub fn drain_deadline(settings: &SharedSettings) -> Duration {
    settings
        .read()
        .map(|s| s.drain_deadline)
        .unwrap_or(Duration::from_secs(30))
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a valid bearer token is required\n",
    )
        .into_response()
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the engine is not running\n",
    )
        .into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn engine_status(state: &AdminState) -> Option<Status> {
    ask(state, Command::Status).await
}

/// Open without the token: load balancers probe it, and it reveals nothing.
async fn health() -> Response {
    "ok\n".into_response()
}

/// Open without the token, as `/health`; answered without asking the engine (an open route
/// must cost the SIP path nothing).
async fn ready(State(state): State<AdminState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

#[derive(Serialize)]
struct StatusBody {
    version: &'static str,
    /// The process answering (it changes with an upgrade).
    pid: u32,
    config_hash: String,
    draining: bool,
    active_calls: u64,
    calls_attempted: u64,
    calls_answered: u64,
    calls_failed: u64,
    messages_in: u64,
    messages_out: u64,
    parse_errors: u64,
}

async fn status(State(state): State<AdminState>) -> Response {
    let Some(s) = engine_status(&state).await else {
        return unavailable();
    };
    let hash = state
        .config_hash
        .lock()
        .map(|h| h.clone())
        .unwrap_or_default();
    Json(StatusBody {
        version: env!("CARGO_PKG_VERSION"),
        pid: std::process::id(),
        config_hash: hash,
        draining: s.draining,
        active_calls: s.stats.active_calls,
        calls_attempted: s.stats.calls_attempted,
        calls_answered: s.stats.calls_answered,
        calls_failed: s.stats.calls_failed,
        messages_in: s.stats.messages_in,
        messages_out: s.stats.messages_out,
        parse_errors: s.stats.parse_errors,
    })
    .into_response()
}

#[derive(Serialize)]
struct TrunkBody {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    host: String,
    /// `registered`, `registering`, `registration failed`, `up`, `down`, `not registered`;
    /// `online` for a trunk without registration or keep-alive.
    status: &'static str,
    /// Why calls are not sent to it now (`down`, `at its call limit`, `not registered`).
    unusable: Option<&'static str>,
    destinations: Vec<String>,
    in_use: Option<String>,
    active_calls: usize,
    /// 0: no limit.
    max_calls: usize,
    last_options: Option<String>,
    last_options_seconds_ago: Option<u64>,
    last_registration: Option<String>,
    next_register_in_seconds: Option<u64>,
    bindings: usize,
    outbound_route: bool,
    /// SRTP on the trunk's leg (`off`, `optional`, `required`).
    srtp: &'static str,
}

async fn trunks(State(state): State<AdminState>) -> Response {
    let Some(s) = engine_status(&state).await else {
        return unavailable();
    };
    let outbound = s
        .config
        .trunks
        .get(s.config.outbound_trunk.unwrap_or(usize::MAX))
        .map(|t| t.name.to_string());
    let body: Vec<TrunkBody> = s
        .trunks
        .iter()
        .map(|t| TrunkBody {
            name: t.name.clone(),
            kind: t.kind,
            host: t.host.clone(),
            status: t.status,
            unusable: t.unusable,
            destinations: t.destinations.clone(),
            in_use: t.in_use.clone(),
            active_calls: t.active_calls,
            max_calls: t.max_calls,
            last_options: t.last_options.as_ref().map(|(st, _)| st.clone()),
            last_options_seconds_ago: t.last_options.as_ref().map(|(_, ago)| *ago),
            last_registration: t.last_registration.clone(),
            next_register_in_seconds: t.next_register_in,
            bindings: t.bindings,
            outbound_route: outbound.as_deref() == Some(t.name.as_str()),
            srtp: t.srtp,
        })
        .collect();
    Json(body).into_response()
}

#[derive(Serialize)]
struct CallBody {
    id: u64,
    direction: &'static str,
    trunk: String,
    state: &'static str,
    age_seconds: f64,
    answered_seconds: Option<f64>,
    /// The plugin generation the call runs with.
    plugin_generation: u64,
    /// The STIR/SHAKEN attestation the plugins chose (outbound).
    attestation: Option<&'static str>,
    /// Anchored streams (none for a signalling-only trunk).
    media: Vec<StreamBody>,
}

#[derive(Serialize)]
struct StreamBody {
    caller: StreamEndBody,
    callee: StreamEndBody,
    /// The SRTP suite agreed on the trunk's leg (never its keys).
    srtp: Option<&'static str>,
}

/// One end of a stream: Sluice's RTP port facing it, and what it sent.
#[derive(Serialize)]
struct StreamEndBody {
    port: u16,
    packets: u64,
    bytes: u64,
    rtcp_packets: u64,
    lost: u64,
    jitter_ms: f64,
    dropped: u64,
    srtp_auth_failures: u64,
}

fn stream_end(port: u16, e: &sluice_media::EndSnapshot) -> StreamEndBody {
    StreamEndBody {
        port,
        packets: e.packets,
        bytes: e.bytes,
        rtcp_packets: e.rtcp_packets,
        lost: e.lost,
        jitter_ms: e.jitter_us as f64 / 1000.0,
        dropped: e.dropped,
        srtp_auth_failures: e.srtp_failures,
    }
}

async fn calls(State(state): State<AdminState>) -> Response {
    let Some(s) = engine_status(&state).await else {
        return unavailable();
    };
    let body: Vec<CallBody> = s
        .calls
        .iter()
        .map(|c| CallBody {
            id: c.id,
            direction: match c.direction {
                Direction::Outbound => "outbound",
                Direction::Inbound => "inbound",
            },
            trunk: c.trunk.clone(),
            state: c.state,
            age_seconds: c.age.as_secs_f64(),
            answered_seconds: c.answered_for.map(|d| d.as_secs_f64()),
            plugin_generation: c.generation,
            attestation: c.attestation.map(|a| a.as_str()),
            media: c
                .media
                .iter()
                .map(|s| StreamBody {
                    caller: stream_end(s.ports[0], &s.counted[0]),
                    callee: stream_end(s.ports[1], &s.counted[1]),
                    srtp: s.srtp,
                })
                .collect(),
        })
        .collect();
    Json(body).into_response()
}

/// One registration: Sluice's to a provider (`kind` `register`), or a gateway's to Sluice
/// (`kind` `gateway`, one per binding).
#[derive(Serialize)]
struct RegistrationBody {
    trunk: String,
    kind: &'static str,
    /// register: `registered`, `registering`, `registration failed`, `unregistered`;
    /// gateway: `registered`.
    state: &'static str,
    /// register: the address of record.
    #[serde(skip_serializing_if = "Option::is_none")]
    aor: Option<String>,
    /// register: the provider's registrar (the REGISTER's Request-URI).
    #[serde(skip_serializing_if = "Option::is_none")]
    registrar: Option<String>,
    /// register: the contact Sluice registers; gateway: the contact the gateway registered.
    contact: String,
    /// gateway: where its REGISTER came from, where its calls go.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<String>,
    expires_in_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_in_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_in_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_response: Option<String>,
}

async fn registrations(State(state): State<AdminState>) -> Response {
    let Some(s) = engine_status(&state).await else {
        return unavailable();
    };
    let mut body = Vec::new();
    for t in &s.trunks {
        if let Some(r) = &t.registration {
            body.push(RegistrationBody {
                trunk: t.name.clone(),
                kind: "register",
                state: r.state,
                aor: Some(r.aor.clone()),
                registrar: Some(r.registrar.clone()),
                contact: r.contact.clone(),
                source: None,
                expires_in_seconds: r.expires_in,
                refresh_in_seconds: r.refresh_in,
                retry_in_seconds: r.retry_in,
                last_response: r.last_response.clone(),
            });
        }
        body.extend(t.gateways.iter().map(|g| RegistrationBody {
            trunk: t.name.clone(),
            kind: "gateway",
            state: "registered",
            aor: None,
            registrar: None,
            contact: g.contact.clone(),
            source: Some(g.source.to_string()),
            expires_in_seconds: Some(g.expires_in),
            refresh_in_seconds: None,
            retry_in_seconds: None,
            last_response: None,
        }));
    }
    Json(body).into_response()
}

#[derive(Serialize)]
struct PluginBody {
    name: String,
    module: String,
    version: String,
    sha256: String,
    origin: String,
    policy: &'static str,
    generation: u64,
    current: bool,
    calls: usize,
    trunks: Vec<String>,
    last_failure: Option<String>,
}

#[derive(Serialize)]
struct PluginsBody {
    /// The current generation's plugins, and older ones calls in progress still use.
    plugins: Vec<PluginBody>,
    /// Why the last reload was refused (the running plugins stayed), until one succeeds.
    load_error: Option<String>,
}

async fn plugins(State(state): State<AdminState>) -> Response {
    let Some(s) = engine_status(&state).await else {
        return unavailable();
    };
    let plugins = s
        .plugins
        .into_iter()
        .map(|p| PluginBody {
            name: p.name,
            module: p.module,
            version: p.version,
            sha256: p.sha256,
            origin: p.origin,
            policy: p.policy,
            generation: p.generation,
            current: p.current,
            calls: p.calls,
            trunks: p.trunks,
            last_failure: p.last_failure,
        })
        .collect();
    let load_error = state.load_error.lock().ok().and_then(|e| e.clone());
    Json(PluginsBody {
        plugins,
        load_error,
    })
    .into_response()
}

async fn metrics(State(state): State<AdminState>) -> Response {
    prometheus_text(&state.metrics)
}

async fn reload(State(state): State<AdminState>) -> Response {
    match (state.reload)().await {
        Ok(hash) => {
            info!(%hash, "reload requested through the admin API succeeded");
            Json(serde_json::json!({ "config_hash": hash })).into_response()
        }
        Err(e) => {
            warn!("reload refused: {e}");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(serde_json::json!({ "error": e.to_string(), "kind": e.kind() })),
            )
                .into_response()
        }
    }
}

#[derive(Serialize)]
struct BanBody {
    /// The address banned (an IPv6 source's /64, as its first address).
    source: String,
    reason: &'static str,
    remaining_seconds: u64,
    dropped_packets: u64,
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

async fn bans(State(state): State<AdminState>) -> Response {
    let Some(bans) = ask(&state, Command::Bans).await else {
        return unavailable();
    };
    let body: Vec<BanBody> = bans
        .iter()
        .map(|b| BanBody {
            source: b.source.to_string(),
            reason: b.reason.as_str(),
            remaining_seconds: b.remaining.as_secs(),
            dropped_packets: b.dropped,
        })
        .collect();
    Json(body).into_response()
}

#[derive(Deserialize)]
struct LiftQuery {
    /// The address whose ban to lift; absent, every ban.
    source: Option<String>,
}

async fn lift_bans(State(state): State<AdminState>, Query(q): Query<LiftQuery>) -> Response {
    let source = match q.source.as_deref().map(ban_source) {
        None => None,
        Some(Some(ip)) => Some(ip),
        Some(None) => {
            return (StatusCode::BAD_REQUEST, "source must be an IP address\n").into_response()
        }
    };
    let Some(lifted) = ask(&state, |tx| Command::LiftBans(source, tx)).await else {
        return unavailable();
    };
    info!(?source, lifted, "bans lifted through the admin API");
    Json(serde_json::json!({ "lifted": lifted })).into_response()
}

/// The address of a ban to lift: an IP address, an IPv6 one with or without brackets (as logs
/// and URIs write it).
fn ban_source(s: &str) -> Option<std::net::IpAddr> {
    let bare = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().ok()
}

#[derive(Deserialize)]
struct DrainQuery {
    /// Seconds calls may go on before they are ended.
    deadline: Option<u64>,
}

async fn drain(State(state): State<AdminState>, Query(q): Query<DrainQuery>) -> Response {
    let deadline = match q.deadline {
        Some(s) if s > MAX_DRAIN_SECONDS => {
            return (
                StatusCode::BAD_REQUEST,
                format!("deadline is {s} s; it must be 0 to {MAX_DRAIN_SECONDS}\n"),
            )
                .into_response();
        }
        Some(s) => Duration::from_secs(s),
        None => drain_deadline(&state.settings),
    };
    if state
        .commands
        .send(Command::Drain { deadline })
        .await
        .is_err()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine is not running\n",
        )
            .into_response();
    }
    (StatusCode::ACCEPTED, "draining\n").into_response()
}

async fn set_log(State(state): State<AdminState>, body: String) -> Response {
    match (state.set_log)(body.trim()) {
        Ok(()) => "ok\n".into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// Whether an address is loopback (where the admin API may run without a token).
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_ban_is_lifted_by_its_address_however_written() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().ok();
        assert_eq!(super::ban_source("192.0.2.7"), ip("192.0.2.7"));
        assert_eq!(super::ban_source("2001:db8::5"), ip("2001:db8::5"));
        assert_eq!(super::ban_source("[2001:db8::5]"), ip("2001:db8::5"));
        assert_eq!(super::ban_source("192.0.2.7:5060"), None);
        assert_eq!(super::ban_source("example.com"), None);
    }

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
