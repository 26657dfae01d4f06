//! Who may call the admin API: the token (compared in constant time), the loopback rule for
//! routes that change state, and the rate limit on failed attempts per source.

use crate::AdminState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tracing::warn;

/// Sources whose failed attempts are remembered at once; past it, the oldest are forgotten.
pub(crate) const MAX_FAILING_SOURCES: usize = 1024;

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

/// Whether a request to a route may proceed: `None`, or the answer that refuses it.
/// `changes` marks a route that changes state (reload, drain, log level, bans).
pub(crate) fn refusal(
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
pub(crate) fn loopback_host(headers: &HeaderMap) -> bool {
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
pub(crate) async fn gate(
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

pub(crate) fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a valid bearer token is required\n",
    )
        .into_response()
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an address is loopback (where the admin API may run without a token).
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().is_loopback()
}
