//! The STIR/SHAKEN keys of the trunks that sign, read from their files (relative to the
//! configuration file) when a configuration is prepared: at start, `sluice check` and every
//! reload, so a replaced key is taken on the next reload. A key that cannot be read, is not a
//! P-256 key, or does not match its certificate's local copy, and a certificate outside its
//! validity, refuse the configuration.

use anyhow::{anyhow, bail, Context};
use sluice_b2bua::identity::Signing;
use sluice_b2bua::verify::Verification;
use sluice_b2bua::{Attestation, EngineConfig};
use sluice_config::stir::{AttestationName, OnFailure};
use sluice_config::Config;
use sluice_stir::verify::Policy;
use sluice_stir::{Certificate, Signer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file named in the configuration: relative to the configuration file's directory.
pub fn file(config_path: Option<&Path>, name: &str) -> PathBuf {
    let p = PathBuf::from(name);
    if p.is_absolute() {
        return p;
    }
    config_path
        .and_then(Path::parent)
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join(p)
}

/// Load the trust anchors of trunks that verify and the signing key of trunks that sign into
/// `engine`'s trunks.
pub fn load(
    cfg: &Config,
    config_path: Option<&Path>,
    engine: &mut EngineConfig,
) -> anyhow::Result<()> {
    let anchors = match &cfg.stir.trust_anchors {
        Some(f) => {
            let path = file(config_path, f.get_ref());
            let pem = std::fs::read(&path)
                .with_context(|| format!("[stir] trust_anchors {}: cannot read", path.display()))?;
            Certificate::chain_from_pem(&pem)
                .with_context(|| format!("[stir] trust_anchors {}", path.display()))?
        }
        None => Vec::new(),
    };
    for t in &cfg.trunks {
        let name = t.name.get_ref();
        let verification = t.stir.verify.then(|| Verification {
            policy: Policy {
                anchors: anchors.clone(),
                max_age: cfg.stir.max_age_seconds,
                allowed_hosts: cfg.stir.x5u_hosts.clone(),
                allow_http: cfg.stir.x5u_allow_http,
            },
            reject: t.stir.on_failure == OnFailure::Reject,
            fetch_timeout: std::time::Duration::from_millis(cfg.stir.fetch_timeout_ms),
        });
        let signing = t
            .stir
            .signing(&cfg.stir, name)
            .map_err(|p| anyhow!("{}", p.message))?;
        let identity = match signing {
            Some(s) => Some(signing_key(config_path, name, &s)?),
            None => None,
        };
        if let Some(tc) = engine
            .trunks
            .iter_mut()
            .find(|tc| &*tc.name == name.as_str())
        {
            tc.verification = verification;
            tc.identity = identity;
        }
    }
    Ok(())
}

/// Trunk `name`'s signing key, checked against its certificate's local copy when there is one.
fn signing_key(
    config_path: Option<&Path>,
    name: &str,
    s: &sluice_config::stir::Signing,
) -> anyhow::Result<Signing> {
    let key_path = file(config_path, &s.key);
    let pem = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "trunk `{name}`: STIR key {}: cannot read",
            key_path.display()
        )
    })?;
    let signer = Signer::from_pem(&pem, &s.x5u)
        .with_context(|| format!("trunk `{name}`: STIR key {}", key_path.display()))?;
    if let Some(c) = &s.certificate {
        let cert_path = file(config_path, c);
        let what = || format!("trunk `{name}`: STIR certificate {}", cert_path.display());
        let bytes =
            std::fs::read(&cert_path).with_context(|| format!("{}: cannot read", what()))?;
        let chain = Certificate::chain_from_pem(&bytes).with_context(what)?;
        let Some(cert) = chain.first() else {
            bail!("{}: empty", what());
        };
        if !cert.matches(&signer) {
            bail!(
                "trunk `{name}`: STIR key {} does not match the certificate {}",
                key_path.display(),
                cert_path.display()
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if !cert.valid_at(now) {
            bail!(
                "{} is not valid now (valid from {} to {}, UNIX seconds)",
                what(),
                cert.not_before,
                cert.not_after
            );
        }
    }
    let attestation = match s.attestation {
        AttestationName::A => Attestation::A,
        AttestationName::B => Attestation::B,
        AttestationName::C => Attestation::C,
        AttestationName::None => Attestation::None,
    };
    Ok(Signing {
        signer: Arc::new(signer),
        attestation,
    })
}
