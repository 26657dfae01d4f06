//! SIP over TLS (RFC 3261 §26.2): rustls on the same stream code as TCP — accepted
//! connections are handshaken before their first read, opened ones after their TCP connect,
//! then framed and served exactly as TCP's. Both within [`HANDSHAKE_TIMEOUT`]; a failure is
//! counted by reason (`sluice_tls_handshake_failures_total`) and logged, and an opened
//! connection's failure is reported to the engine as a transport error at once.
//!
//! The configurations are built elsewhere (from the certificate files); this module only uses
//! them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a handshake may take, either way.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub const HANDSHAKE_FAILURES: &str = "sluice_tls_handshake_failures_total";

/// The certificate presented on the TLS listeners, replaced while running (a reload, or its
/// files changed): handshakes from then on present the new one, connections already up keep
/// theirs.
#[derive(Debug)]
pub struct CertSlot(RwLock<Arc<CertifiedKey>>);

impl CertSlot {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<CertSlot> {
        Arc::new(CertSlot(RwLock::new(key)))
    }

    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = key;
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// How connections to TLS peers are verified: the default client configuration, and per
/// destination the name it must prove (SNI and the certificate's names) and its trunk's own
/// configuration when it has one (a client certificate, its own CAs). A destination not
/// listed is verified by its IP address with the default.
#[derive(Debug, Clone)]
pub struct Peers {
    pub client: Arc<ClientConfig>,
    pub names: HashMap<SocketAddr, (ServerName<'static>, Option<Arc<ClientConfig>>)>,
}

/// What Sluice's TLS needs: the certificate it presents on its TLS listeners, and how it
/// verifies the peers it connects to. Clones share the same state: [`TlsContext::update`] on
/// one (a reload) is what every connection made from then on uses.
#[derive(Clone, Debug)]
pub struct TlsContext {
    server: Option<(Arc<ServerConfig>, Arc<CertSlot>)>,
    peers: Arc<RwLock<Peers>>,
}

impl TlsContext {
    /// `server`: the listeners' configuration, whose certificate resolver is `slot`.
    pub fn new(server: Option<(Arc<ServerConfig>, Arc<CertSlot>)>, peers: Peers) -> TlsContext {
        TlsContext {
            server,
            peers: Arc::new(RwLock::new(peers)),
        }
    }

    pub fn serves(&self) -> bool {
        self.server.is_some()
    }

    /// Take `new`'s certificate and peers (its listeners' configuration stays: listeners do not
    /// change without a restart).
    pub fn update(&self, new: &TlsContext) {
        if let (Some((_, slot)), Some((_, fresh))) = (&self.server, &new.server) {
            slot.replace(fresh.current());
        }
        self.update_peers(new);
    }

    /// Take `new`'s destinations and the names they must prove (new addresses from DNS), and
    /// nothing else.
    pub fn update_peers(&self, new: &TlsContext) {
        let peers = new
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        *self.peers.write().unwrap_or_else(PoisonError::into_inner) = peers;
    }

    /// The certificate the listeners present now.
    pub fn certificate(&self) -> Option<Arc<CertifiedKey>> {
        self.server.as_ref().map(|(_, slot)| slot.current())
    }

    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.server
            .as_ref()
            .map(|(config, _)| TlsAcceptor::from(config.clone()))
    }

    /// The connector and the name to verify `remote` as.
    pub(crate) fn connector(&self, remote: SocketAddr) -> (TlsConnector, ServerName<'static>) {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        // A destination DNS moved (same provider, new port or address) is found by its IP.
        let (name, own) = peers
            .names
            .get(&remote)
            .or_else(|| {
                peers
                    .names
                    .iter()
                    .find(|(a, _)| a.ip() == remote.ip())
                    .map(|(_, v)| v)
            })
            .cloned()
            .unwrap_or_else(|| (ServerName::IpAddress(remote.ip().into()), None));
        let config = own.unwrap_or_else(|| peers.client.clone());
        (TlsConnector::from(config), name)
    }
}

/// A handshake, given [`HANDSHAKE_TIMEOUT`] to complete (then a `TimedOut` error).
pub(crate) async fn within_deadline<T>(
    handshake: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "handshake timed out",
            ))
        })
}

/// Count and log a failed handshake; `reason` is the error's kind, kept to a few values.
pub(crate) fn failed(remote: SocketAddr, way: &'static str, e: &std::io::Error) {
    let reason = reason_of(e);
    metrics::counter!(HANDSHAKE_FAILURES, "way" => way, "reason" => reason).increment(1);
    if let Some(suppressed) = LOG_LIMIT.admit() {
        tracing::warn!(%remote, way, reason, suppressed, "TLS handshake failed: {e}");
    }
}

/// At most one handshake failure is logged per second (a flood of bad handshakes must not
/// flood the log); the next one logged says how many were left out. All are counted.
static LOG_LIMIT: LogLimit = LogLimit {
    last_second: AtomicU64::new(0),
    suppressed: AtomicU64::new(0),
};

struct LogLimit {
    last_second: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    /// `Some(left out since the last one)` when this event may be logged.
    fn admit(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_second.swap(now, Ordering::Relaxed);
        if last == now {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// The reasons operators alert on: an untrusted or wrong-host certificate, a timeout, the
/// peer closing, anything else.
pub(crate) fn reason_of(e: &std::io::Error) -> &'static str {
    use tokio_rustls::rustls::{CertificateError, Error};
    if e.kind() == std::io::ErrorKind::TimedOut {
        return "timeout";
    }
    let tls = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>());
    match tls {
        Some(Error::InvalidCertificate(c)) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "wrong-name"
            }
            CertificateError::UnknownIssuer => "unknown-issuer",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            _ => "bad-certificate",
        },
        Some(Error::NoCertificatesPresented) => "bad-certificate",
        // The peer's alert: over TLS 1.3 a provider refusing Sluice's client certificate (or
        // its absence) says so only after Sluice's side of the handshake is complete.
        Some(Error::AlertReceived(_)) => "refused-by-peer",
        Some(_) => "other",
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "closed",
        None => "other",
    }
}

/// The reasons exported at zero from the start.
pub const REASONS: [&str; 8] = [
    "timeout",
    "wrong-name",
    "unknown-issuer",
    "expired",
    "bad-certificate",
    "refused-by-peer",
    "closed",
    "other",
];
