//! The certificates of STIR/SHAKEN verification, fetched over HTTPS (rustls, through
//! `reqwest`) and kept for the `max-age` their server gives (an hour by default, a day at
//! most), a bounded number of them. A fetch has a timeout and a size limit; only the call that
//! needs the certificate waits for it.

use bytes::Bytes;
use sluice_transport::CertificateSource;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A certificate file larger than this is refused (a chain is a few kB).
const MAX_BYTES: usize = 64 * 1024;
const DEFAULT_TTL: Duration = Duration::from_secs(3600);
const MAX_TTL: Duration = Duration::from_secs(86_400);

pub struct HttpsCertificates {
    client: reqwest::Client,
    cache: Mutex<Cache>,
}

struct Cache {
    entries: HashMap<String, (Bytes, Instant)>,
    max: usize,
}

impl Cache {
    fn get(&mut self, url: &str, now: Instant) -> Option<Bytes> {
        match self.entries.get(url) {
            Some((b, until)) if *until > now => Some(b.clone()),
            Some(_) => {
                self.entries.remove(url);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, url: String, body: Bytes, until: Instant, now: Instant) {
        if self.max == 0 {
            return;
        }
        if self.entries.len() >= self.max {
            self.entries.retain(|_, (_, u)| *u > now);
        }
        if self.entries.len() >= self.max {
            // Full of live entries: the one expiring first goes.
            if let Some(k) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, u))| *u)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(url, (body, until));
    }
}

fn count(result: &'static str) {
    metrics::counter!("sluice_stir_certificate_fetches_total", "result" => result).increment(1);
}

/// `max-age` of a Cache-Control value.
fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    cache_control?.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        k.eq_ignore_ascii_case("max-age")
            .then(|| v.trim().parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

impl HttpsCertificates {
    /// `extra_roots`: PEM certificates trusted for HTTPS besides the system's.
    pub fn new(
        timeout: Duration,
        entries: usize,
        extra_roots: Option<&[u8]>,
    ) -> anyhow::Result<HttpsCertificates> {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = extra_roots {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                b = b.add_root_certificate(cert);
            }
        }
        Ok(HttpsCertificates {
            client: b.build()?,
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                max: entries,
            }),
        })
    }

    fn cached(&self, url: &str) -> Option<Bytes> {
        self.cache.lock().ok()?.get(url, Instant::now())
    }

    pub async fn get(&self, url: String) -> Result<Bytes, String> {
        if let Some(b) = self.cached(&url) {
            count("cached");
            return Ok(b);
        }
        let fetched = self.download(&url).await;
        match fetched {
            Ok((body, ttl)) => {
                count("fetched");
                let now = Instant::now();
                if let Ok(mut c) = self.cache.lock() {
                    c.put(url, body.clone(), now.checked_add(ttl).unwrap_or(now), now);
                }
                Ok(body)
            }
            Err(e) => {
                count("failed");
                Err(e)
            }
        }
    }

    async fn download(&self, url: &str) -> Result<(Bytes, Duration), String> {
        let mut resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let ttl = max_age(
            resp.headers()
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        )
        .unwrap_or(DEFAULT_TTL)
        .min(MAX_TTL);
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len().saturating_add(chunk.len()) > MAX_BYTES {
                return Err(format!("{url}: larger than {MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(body), ttl))
    }
}

/// The source the shell uses.
pub struct Source(pub Arc<HttpsCertificates>);

impl CertificateSource for Source {
    fn fetch(&self, url: String) -> Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>> {
        let me = self.0.clone();
        Box::pin(async move { me.get(url).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age(Some("public, max-age=600")),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age(Some("no-store")), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn the_cache_keeps_live_entries_up_to_its_size() {
        let now = Instant::now();
        let mut c = Cache {
            entries: HashMap::new(),
            max: 2,
        };
        let later = now + Duration::from_secs(60);
        c.put("a".into(), Bytes::from_static(b"A"), later, now);
        c.put(
            "b".into(),
            Bytes::from_static(b"B"),
            later + Duration::from_secs(1),
            now,
        );
        c.put("c".into(), Bytes::from_static(b"C"), later, now);
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.get("a", now), None, "the one expiring first went");
        assert_eq!(c.get("c", now).as_deref(), Some(&b"C"[..]));
        assert_eq!(c.get("c", later + Duration::from_secs(5)), None, "expired");
    }
}
