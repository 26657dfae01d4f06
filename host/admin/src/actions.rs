//! The routes that change state: reload, drain, log level and bans.

use crate::{ask, drain_deadline, unavailable, AdminState};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_config::MAX_DRAIN_SECONDS;
use sluice_transport::Command;
use std::time::Duration;
use tracing::{info, warn};

pub(crate) async fn reload(State(state): State<AdminState>) -> Response {
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
pub(crate) struct BanBody {
    /// The address banned (an IPv6 source's /64, as its first address).
    source: String,
    reason: &'static str,
    remaining_seconds: u64,
    dropped_packets: u64,
}

pub(crate) async fn bans(State(state): State<AdminState>) -> Response {
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
pub(crate) struct LiftQuery {
    /// The address whose ban to lift; absent, every ban.
    source: Option<String>,
}

pub(crate) async fn lift_bans(
    State(state): State<AdminState>,
    Query(q): Query<LiftQuery>,
) -> Response {
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
pub(crate) fn ban_source(s: &str) -> Option<std::net::IpAddr> {
    let bare = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().ok()
}

#[derive(Deserialize)]
pub(crate) struct DrainQuery {
    /// Seconds calls may go on before they are ended.
    deadline: Option<u64>,
}

pub(crate) async fn drain(
    State(state): State<AdminState>,
    Query(q): Query<DrainQuery>,
) -> Response {
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

pub(crate) async fn set_log(State(state): State<AdminState>, body: String) -> Response {
    match (state.set_log)(body.trim()) {
        Ok(()) => "ok\n".into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
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
}
