//! Upgrading the binary without dropping a call, as nginx's binary upgrade does: on SIGUSR2
//! the running process starts the program file again (the new binary, once a package replaced
//! it) with the same arguments, passes it its listening sockets (SIP, admin API, metrics) over
//! a Unix socket with an abstract name, and once the new process is ready stops reading them;
//! it then finishes its calls with the datagrams the new process forwards, and exits (see
//! `sluice_transport::handover`). A new process that fails to start or to get ready leaves the
//! old one serving as before.

use anyhow::{anyhow, bail, Context};
use sluice_admin::SharedSettings;
use sluice_transport::handover::{self, Inherited, Listening, UPGRADE_ENV};
use sluice_transport::Command;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{error, info};

/// How long the new process may take to load its plugins, connect and get ready.
const START_LIMIT: Duration = Duration::from_secs(300);

/// The new process's side: the predecessor's sockets, and the link to tell it when ready.
pub struct Takeover {
    pub inherited: Inherited,
    link: UnixStream,
}

/// When started by an upgrade: connect to the old process and take its sockets.
pub async fn connect() -> anyhow::Result<Option<Takeover>> {
    let Some(name) = std::env::var_os(UPGRADE_ENV) else {
        return Ok(None);
    };
    let name = name.into_encoded_bytes();
    tokio::task::spawn_blocking(move || {
        let addr = SocketAddr::from_abstract_name(&name)?;
        let mut link = UnixStream::connect_addr(&addr).context("connecting to the old process")?;
        link.set_read_timeout(Some(START_LIMIT))?;
        let inherited = handover::receive(&mut link).context("receiving the sockets")?;
        info!(
            sockets = inherited.len(),
            "upgrade: took the old process's sockets"
        );
        Ok(Some(Takeover { inherited, link }))
    })
    .await?
}

impl Takeover {
    /// Ready: the old process stops reading; what it still serves.
    pub async fn ready(mut self) -> anyhow::Result<(sluice_b2bua::Handover, UnixStream)> {
        tokio::task::spawn_blocking(move || {
            handover::send_ready(&mut self.link)?;
            let h = handover::receive_state(&mut self.link).context("the old process's calls")?;
            self.link.set_read_timeout(None)?;
            Ok((h, self.link))
        })
        .await?
    }
}

/// The old process's side: on each SIGUSR2, try an upgrade.
pub fn on_signal(
    sockets: Vec<Listening>,
    servers: Vec<AbortHandle>,
    commands: mpsc::Sender<Command>,
    settings: SharedSettings,
) {
    let program = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            error!("upgrades unavailable: the program's path is unknown: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut usr2) = signal(SignalKind::user_defined2()) else {
            return;
        };
        while usr2.recv().await.is_some() {
            info!(program = %program.display(), "SIGUSR2: upgrading");
            let deadline = settings
                .read()
                .map(|s| s.upgrade_deadline)
                .unwrap_or(Duration::from_secs(14_400));
            match upgrade(&program, &sockets, &commands, deadline).await {
                Ok(pid) => {
                    info!(pid, "upgrade: the new process took over");
                    crate::systemd::handed_over();
                    // The admin API and the metrics are the new process's now.
                    for s in &servers {
                        s.abort();
                    }
                    return;
                }
                Err(e) => error!("upgrade failed, this process goes on serving: {e:#}"),
            }
        }
    });
}

async fn upgrade(
    program: &PathBuf,
    sockets: &[Listening],
    commands: &mpsc::Sender<Command>,
    deadline: Duration,
) -> anyhow::Result<u32> {
    let (tx, status) = oneshot::channel();
    commands
        .send(Command::Status(tx))
        .await
        .map_err(|_| anyhow!("the engine is gone"))?;
    if status.await?.predecessor {
        bail!("the previous upgrade's old process still finishes its calls: try again later");
    }
    let name = format!(
        "sluice-upgrade-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    );
    let listener = std::os::unix::net::UnixListener::bind_addr(&SocketAddr::from_abstract_name(
        name.as_bytes(),
    )?)?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::UnixListener::from_std(listener)?;
    let mut child = tokio::process::Command::new(program)
        .args(std::env::args_os().skip(1))
        .env(UPGRADE_ENV, &name)
        .stdin(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the new process is gone"))?;
    info!(pid, "upgrade: new process started");
    let stream = tokio::select! {
        a = listener.accept() => a?.0,
        st = child.wait() => bail!("the new process exited before taking over ({})", st?),
        _ = tokio::time::sleep(START_LIMIT) => {
            let _ = child.start_kill();
            bail!("the new process did not connect within {START_LIMIT:?}");
        }
    };
    // Anyone on the host could connect to the name: only the child gets the sockets.
    let peer = stream.peer_cred()?.pid();
    if peer != i32::try_from(pid).ok() {
        bail!("a process other than the new one ({peer:?}) connected");
    }
    let mut link = stream.into_std()?;
    link.set_nonblocking(false)?;
    link.set_read_timeout(Some(START_LIMIT))?;
    let fds = sockets
        .iter()
        .map(|l| Ok(Listening::of(l.kind, l.addr, &l.fd)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut link = tokio::task::spawn_blocking(move || {
        handover::offer(&mut link, &fds)?;
        handover::wait_ready(&mut link).context("waiting for the new process to be ready")?;
        anyhow::Ok(link)
    })
    .await??;
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::HandOver {
            link: link.try_clone()?,
            deadline,
            reply,
        })
        .await
        .map_err(|_| anyhow!("the engine is gone"))?;
    let h = answer.await?;
    tokio::task::spawn_blocking(move || handover::send_state(&mut link, &h)).await??;
    Ok(pid)
}
