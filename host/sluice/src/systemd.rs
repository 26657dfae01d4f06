//! Telling systemd how Sluice is (`Type=notify`): ready once it listens, reloading while a
//! reload runs, stopping once a drain starts, and alive for the watchdog only while the engine
//! task answers. Without `NOTIFY_SOCKET` in the environment, every call does nothing.

use sd_notify::NotifyState;
use sluice_transport::Command;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!("sd_notify: {e}");
    }
}

/// Sluice listens and takes calls.
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("taking calls")]);
}

/// A reload starts (`done` false) or ended.
pub fn reloading(done: bool) {
    if done {
        send(&[NotifyState::Ready, NotifyState::Status("taking calls")]);
    } else if let Ok(now) = NotifyState::monotonic_usec_now() {
        send(&[NotifyState::Reloading, now]);
    }
}

/// A drain started: no new calls.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining: new calls are refused"),
    ]);
}

/// Under systemd: ping the watchdog (with `WatchdogSec=`) at half its period, but only while
/// the engine task answers a status request in time, so that a stuck engine is restarted; and
/// say "stopping" once a drain started, whether by signal or through the admin API.
pub fn spawn_monitor(commands: mpsc::Sender<Command>) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(period) = watchdog {
        info!(?period, "systemd watchdog enabled");
    }
    let every = watchdog
        .map_or(Duration::from_secs(1), |p| p.checked_div(2).unwrap_or(p))
        .max(Duration::from_millis(10));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut said_stopping = false;
        loop {
            tick.tick().await;
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::Status(tx)).await.is_err() {
                return;
            }
            let Ok(Ok(status)) = tokio::time::timeout(every, rx).await else {
                continue;
            };
            if watchdog.is_some() {
                send(&[NotifyState::Watchdog]);
            }
            if status.draining && !said_stopping {
                said_stopping = true;
                stopping();
            }
        }
    });
}
