//! The read-only routes: health, readiness, status, trunks, calls, registrations, plugins and
//! metrics, each a report the engine task answers.

use crate::{ask, prometheus_text, unavailable, AdminState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use sluice_b2bua::Direction;
use sluice_transport::{Command, Status};

pub(crate) async fn engine_status(state: &AdminState) -> Option<Status> {
    ask(state, Command::Status).await
}

/// Open without the token: load balancers probe it, and it reveals nothing.
pub(crate) async fn health() -> Response {
    "ok\n".into_response()
}

/// Open without the token, as `/health`; answered without asking the engine (an open route
/// must cost the SIP path nothing).
pub(crate) async fn ready(State(state): State<AdminState>) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

#[derive(Serialize)]
pub(crate) struct StatusBody {
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

pub(crate) async fn status(State(state): State<AdminState>) -> Response {
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
pub(crate) struct TrunkBody {
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

pub(crate) async fn trunks(State(state): State<AdminState>) -> Response {
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
pub(crate) struct CallBody {
    id: u64,
    direction: &'static str,
    trunk: String,
    /// The tenant routing attributed the call to (tenant routing only).
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
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
pub(crate) struct StreamBody {
    caller: StreamEndBody,
    callee: StreamEndBody,
    /// The SRTP suite agreed on the trunk's leg (never its keys).
    srtp: Option<&'static str>,
}

/// One end of a stream: Sluice's RTP port facing it, and what it sent.
#[derive(Serialize)]
pub(crate) struct StreamEndBody {
    port: u16,
    packets: u64,
    bytes: u64,
    rtcp_packets: u64,
    lost: u64,
    jitter_ms: f64,
    dropped: u64,
    srtp_auth_failures: u64,
}

pub(crate) fn stream_end(port: u16, e: &sluice_media::EndSnapshot) -> StreamEndBody {
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

pub(crate) async fn calls(State(state): State<AdminState>) -> Response {
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
            tenant: c.tenant.clone(),
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
pub(crate) struct RegistrationBody {
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

pub(crate) async fn registrations(State(state): State<AdminState>) -> Response {
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
pub(crate) struct PluginBody {
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
pub(crate) struct PluginsBody {
    /// The current generation's plugins, and older ones calls in progress still use.
    plugins: Vec<PluginBody>,
    /// Why the last reload was refused (the running plugins stayed), until one succeeds.
    load_error: Option<String>,
}

pub(crate) async fn plugins(State(state): State<AdminState>) -> Response {
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

pub(crate) async fn metrics(State(state): State<AdminState>) -> Response {
    prometheus_text(&state.metrics)
}
