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
use std::sync::Arc;
use std::time::Duration;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a handshake may take, either way.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub const HANDSHAKE_FAILURES: &str = "sluice_tls_handshake_failures_total";

/// What Sluice's TLS needs: the certificate it presents on its TLS listeners, how it verifies
/// the peers it connects to, and the name each of those is verified as.
#[derive(Clone, Debug)]
pub struct TlsContext {
    pub server: Option<Arc<ServerConfig>>,
    pub client: Arc<ClientConfig>,
    /// The host name each TLS destination must prove (SNI and the certificate's names); a
    /// destination not listed is verified by its IP address.
    pub names: HashMap<SocketAddr, ServerName<'static>>,
}

impl TlsContext {
    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.server.clone().map(TlsAcceptor::from)
    }

    /// The connector and the name to verify `remote` as.
    pub(crate) fn connector(&self, remote: SocketAddr) -> (TlsConnector, ServerName<'static>) {
        let name = self
            .names
            .get(&remote)
            .cloned()
            .unwrap_or_else(|| ServerName::IpAddress(remote.ip().into()));
        (TlsConnector::from(self.client.clone()), name)
    }
}

/// Count and log a failed handshake; `reason` is the error's kind, kept to a few values.
pub(crate) fn failed(remote: SocketAddr, way: &'static str, e: &std::io::Error) {
    let reason = reason_of(e);
    metrics::counter!(HANDSHAKE_FAILURES, "way" => way, "reason" => reason).increment(1);
    tracing::warn!(%remote, way, reason, "TLS handshake failed: {e}");
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
        Some(_) => "other",
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => "closed",
        None => "other",
    }
}

/// The reasons exported at zero from the start.
pub const REASONS: [&str; 7] = [
    "timeout",
    "wrong-name",
    "unknown-issuer",
    "expired",
    "bad-certificate",
    "closed",
    "other",
];
