//! SIP over TLS, from the configuration: the certificate presented on `tls` listeners
//! (`[tls]` certificate and key: readable, parseable, the key the certificate's, not expired),
//! the roots TLS trunks are verified against (the system's and `[tls] ca`), and the name each
//! TLS destination must prove (its trunk's `tls_server_name`, else its host).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use sluice_b2bua::EngineConfig;
use sluice_config::Config;
use sluice_transaction::Transport;
use sluice_transport::tls::{CertSlot, Peers, TlsContext};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn relative(base: Option<&Path>, file: &str) -> PathBuf {
    base.and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join(file)
}

/// When each configured certificate stops being valid (UNIX seconds), by what it is for:
/// `listeners`, or `trunk:<name>` for a trunk's client certificate.
pub type Expiries = Vec<(String, i64)>;

/// Export [`Expiries`] (at start, and once a reload is applied).
pub fn publish(expiries: &Expiries) {
    for (what, not_after) in expiries {
        #[allow(clippy::cast_precision_loss)]
        metrics::gauge!(EXPIRY, "certificate" => what.clone()).set(*not_after as f64);
    }
}

/// What a trunk's certificate must name: its IP address (an IPv6 one bracketed or not) or
/// its DNS name.
fn server_name(host: &str) -> Option<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(host.to_string()).ok(),
    }
}

/// The TLS context, when a listener or a trunk destination uses TLS, and the expiry of each
/// certificate it presents; the error names the file and what is wrong with it.
pub fn context(
    cfg: &Config,
    path: Option<&Path>,
    engine: &EngineConfig,
    expiries: &mut Expiries,
) -> Result<Option<TlsContext>, String> {
    let listens = engine
        .listeners
        .iter()
        .any(|l| l.transport == Transport::Tls);
    let dials = engine
        .trunks
        .iter()
        .any(|t| t.destinations.iter().any(|d| d.transport == Transport::Tls));
    if !listens && !dials {
        return Ok(None);
    }
    let server = match (&cfg.tls.certificate, &cfg.tls.key) {
        (Some(c), Some(k)) => {
            let (c, k) = (relative(path, c.get_ref()), relative(path, k.get_ref()));
            let (config, slot, not_after) = server(&c, &k)?;
            expiries.push(("listeners".to_string(), not_after));
            Some((config, slot))
        }
        _ => None,
    };
    let ca = cfg.tls.ca.as_ref().map(|c| relative(path, c.get_ref()));
    let (client, _) = client_config(ca.as_deref(), true, None)?;
    let mut names = HashMap::new();
    for (t, spec) in engine.trunks.iter().zip(&cfg.trunks) {
        let tls: Vec<_> = t
            .destinations
            .iter()
            .filter(|d| d.transport == Transport::Tls)
            .collect();
        if tls.is_empty() {
            continue;
        }
        let host = spec.tls_server_name.as_deref().unwrap_or(&t.host);
        let name = server_name(host).ok_or_else(|| {
            format!(
                "trunk `{}`: `{host}` is not a name a certificate can carry",
                t.name
            )
        })?;
        let own = match (&spec.tls_ca, &spec.tls_certificate, &spec.tls_key) {
            (None, None, _) => None,
            (ca, cert, key) => {
                let ca = ca.as_ref().map(|c| relative(path, c.get_ref()));
                let identity = match (cert, key) {
                    (Some(c), Some(k)) => {
                        Some((relative(path, c.get_ref()), relative(path, k.get_ref())))
                    }
                    _ => None,
                };
                let own_ca = ca.is_some();
                let ca = ca.or_else(|| cfg.tls.ca.as_ref().map(|c| relative(path, c.get_ref())));
                let identity = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
                let (config, not_after) = client_config(ca.as_deref(), !own_ca, identity)?;
                if let Some(n) = not_after {
                    expiries.push((format!("trunk:{}", t.name), n));
                }
                Some(config)
            }
        };
        for d in tls {
            names.insert(
                t.outbound_proxy.unwrap_or(d.addr),
                (name.clone(), own.clone()),
            );
        }
    }
    Ok(Some(TlsContext::new(server, Peers { client, names })))
}

/// The listeners' configuration, presenting the chain in `certificate` with `key` through a
/// slot a reload replaces; and the leaf's expiry.
fn server(
    certificate: &Path,
    key: &Path,
) -> Result<(Arc<rustls::ServerConfig>, Arc<CertSlot>, i64), String> {
    let not_after = not_expired(certificate)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| format!("{}: cannot read a certificate: {e}", certificate.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", certificate.display()))?;
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: cannot read a private key: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
        format!(
            "{} with {}: {e} (is the key the certificate's?)",
            certificate.display(),
            key.display()
        )
    })?;
    let slot = CertSlot::new(Arc::new(certified));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(slot.clone());
    Ok((Arc::new(config), slot, not_after))
}

/// When each configured certificate stops being valid (UNIX seconds): an alert fires weeks
/// before.
pub const EXPIRY: &str = "sluice_tls_certificate_expiry_timestamp_seconds";

/// A client configuration: trusting `ca`'s certificates (and the system's roots when
/// `system`), presenting `identity` (certificate chain and key files) when given; and when
/// that certificate expires.
fn client_config(
    ca: Option<&Path>,
    system: bool,
    identity: Option<(&Path, &Path)>,
) -> Result<(Arc<rustls::ClientConfig>, Option<i64>), String> {
    let mut roots = rustls::RootCertStore::empty();
    if system {
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
    }
    if let Some(ca) = ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("{}: cannot read certificates: {e}", ca.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: not PEM certificates: {e}", ca.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", ca.display()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let mut not_after = None;
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            not_after = Some(not_expired(cert)?);
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("{}: cannot read a certificate: {e}", cert.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: not a PEM certificate: {e}", cert.display()))?;
            let private = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: cannot read a private key: {e}", key.display()))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                format!(
                    "{} with {}: {e} (is the key the certificate's?)",
                    cert.display(),
                    key.display()
                )
            })?
        }
    };
    Ok((Arc::new(config), not_after))
}

/// The leaf certificate of `file` is within its validity: when it ends (UNIX seconds).
fn not_expired(file: &Path) -> Result<i64, String> {
    let leaf = CertificateDer::pem_file_iter(file)
        .map_err(|e| format!("{}: cannot read a certificate: {e}", file.display()))?
        .next()
        .ok_or_else(|| format!("{}: no certificate in it", file.display()))?
        .map_err(|e| format!("{}: not a PEM certificate: {e}", file.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| format!("{}: not an X.509 certificate: {e}", file.display()))?;
    let validity = cert.validity();
    if !validity.is_valid() {
        return Err(format!(
            "{}: the certificate is valid from {} to {}: not now",
            file.display(),
            validity.not_before,
            validity.not_after
        ));
    }
    Ok(validity.not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trunks_certificate_names_its_address_or_its_name() {
        let ip = |s: &str| {
            Some(ServerName::IpAddress(
                s.parse::<std::net::IpAddr>().ok()?.into(),
            ))
        };
        assert_eq!(server_name("192.0.2.20"), ip("192.0.2.20"));
        assert_eq!(server_name("2001:db8::20"), ip("2001:db8::20"));
        assert_eq!(server_name("[2001:db8::20]"), ip("2001:db8::20"));
        assert_eq!(
            server_name("sip.provider.example"),
            ServerName::try_from("sip.provider.example").ok()
        );
        assert_eq!(server_name("not a name"), None);
    }
}
