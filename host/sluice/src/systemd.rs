//! Telling systemd how Sluice is (`Type=notify`): ready once it listens, reloading while a
//! reload runs, stopping once a drain starts, and alive for the watchdog only while the engine
//! task answers. Without `NOTIFY_SOCKET` in the environment, every call does nothing.

use sd_notify::NotifyState;
use sluice_transport::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

fn send(states: &[NotifyState]) {
    // After an upgrade the new process speaks for the service: no watchdog, reload or stop
    // from this one.
    if HANDED_OVER.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        debug!("sd_notify: {e}");
    }
}

/// Sluice listens and takes calls.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("taking calls")]);
}

/// Once a drain started, a reload's end must not say READY again.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// A reload starts (`done` false) or ended.
pub fn reloading(done: bool) {
    if done && STOPPING.load(Ordering::Relaxed) {
        return;
    }
    if done {
        send(&[NotifyState::Ready, NotifyState::Status("taking calls")]);
    } else if let Ok(now) = NotifyState::monotonic_usec_now() {
        send(&[NotifyState::Reloading, now]);
    }
}

/// This process took over from an older one (an upgrade): it is the service's main process
/// now (the unit needs `NotifyAccess=all` to hear it).
pub fn ready_as_main() {
    send(&[
        NotifyState::MainPid(std::process::id()),
        NotifyState::Ready,
        NotifyState::Status("taking calls (took over from the previous process)"),
    ]);
}

/// This process handed its sockets to a new one: it tells systemd nothing more.
pub fn handed_over() {
    STOPPING.store(true, Ordering::Relaxed);
    HANDED_OVER.store(true, Ordering::Relaxed);
}

static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// A drain started: no new calls.
pub fn stopping() {
    STOPPING.store(true, Ordering::Relaxed);
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining: new calls are refused"),
    ]);
}

/// Under systemd: ping the watchdog (with `WatchdogSec=`) at half its period, but only while
/// the engine task answers a status request in time, so that a stuck engine is restarted; and
/// once a drain started (by signal or through the admin API) say "stopping" and keep extending
/// systemd's stop timeout while the drain runs, so that a long drain is not killed.
pub fn spawn_monitor(commands: mpsc::Sender<Command>, draining: Arc<AtomicBool>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(period) = watchdog {
        info!(?period, "systemd watchdog enabled");
    }
    let every = watchdog
        .map_or(Duration::from_secs(1), |p| p.checked_div(2).unwrap_or(p))
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let ping_every = watchdog.map(|p| p.checked_div(2).unwrap_or(p));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut said_stopping = false;
        let mut last_ping: Option<tokio::time::Instant> = None;
        loop {
            tick.tick().await;
            if draining.load(Ordering::Relaxed) {
                if !said_stopping {
                    said_stopping = true;
                    stopping();
                }
                // Ten seconds more each second: the drain itself bounds how long.
                send(&[NotifyState::ExtendTimeoutUsec(10_000_000)]);
            }
            let Some(ping_every) = ping_every else {
                continue;
            };
            let now = tokio::time::Instant::now();
            if last_ping.is_some_and(|l| now.saturating_duration_since(l) < ping_every) {
                continue;
            }
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::Status(tx)).await.is_err() {
                return;
            }
            if let Ok(Ok(_)) = tokio::time::timeout(ping_every, rx).await {
                send(&[NotifyState::Watchdog]);
                last_ping = Some(now);
            }
        }
    });
}
