//! The DNS shell around `sluice_trunk::locate` (RFC 3263): hickory-resolver answers its NAPTR,
//! SRV and A/AAAA queries. Lookups run on a thread of their own with a small runtime, so that
//! they can be called from the blocking code that prepares a configuration (in or out of
//! Tokio); a configuration is resolved at load, on reload, and again when its answers' TTL ends.

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use sluice_config::DnsSettings;
use sluice_trunk::locate::{self, Answer, Located, Naptr, Proto, Query, Records, Srv, Target};
use std::time::{Duration, Instant};

/// Locate every target (in order) with one resolver; `Err` when the resolver cannot be built.
pub fn locate_all(
    settings: &DnsSettings,
    targets: &[(String, Option<u16>, Option<Proto>)],
    supported: &[Proto],
) -> anyhow::Result<Vec<Located>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let resolver = {
                let _in_rt = rt.enter();
                resolver(settings)?
            };
            let located = targets
                .iter()
                .map(|(host, port, proto)| {
                    let target = Target {
                        host,
                        port: *port,
                        proto: *proto,
                    };
                    locate::locate(target, supported, &mut |q| {
                        rt.block_on(lookup(&resolver, q))
                    })
                })
                .collect();
            Ok(located)
        })
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the DNS thread failed")))
    })
}

fn resolver(settings: &DnsSettings) -> anyhow::Result<TokioResolver> {
    let mut builder = if settings.servers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let servers = settings
            .servers
            .iter()
            .map(|s| {
                let mut udp = ConnectionConfig::udp();
                udp.port = s.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = s.port();
                NameServerConfig::new(s.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_parts(None, Vec::new(), servers),
            TokioRuntimeProvider::default(),
        )
    };
    let opts = builder.options_mut();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    Ok(builder.build()?)
}

/// One query: its records and how long they may be kept (`None` on failure or no records).
async fn lookup(resolver: &TokioResolver, q: &Query) -> Option<Answer> {
    let ttl = |until: Instant| until.saturating_duration_since(Instant::now());
    match q {
        Query::Ip(name) => {
            let found = resolver.lookup_ip(fqdn(name)).await.ok()?;
            let ips = found.iter().collect();
            Some((Records::Ip(ips), ttl(found.valid_until())))
        }
        Query::Srv(name) => {
            let found = resolver.lookup(fqdn(name), RecordType::SRV).await.ok()?;
            let records = found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_utf8(),
                    }),
                    _ => None,
                })
                .collect();
            Some((Records::Srv(records), ttl(found.valid_until())))
        }
        Query::Naptr(name) => {
            let found = resolver.lookup(fqdn(name), RecordType::NAPTR).await.ok()?;
            let records = found
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NAPTR(n) => Some(Naptr {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        services: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: n.replacement.to_utf8(),
                    }),
                    _ => None,
                })
                .collect();
            Some((Records::Naptr(records), ttl(found.valid_until())))
        }
    }
}

/// Names in the configuration are absolute: no search domains.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}
