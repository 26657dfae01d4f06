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
use tracing::{error, info, warn};

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
    let (listener, mut child, pid) = start_successor(program)?;
    let stream = accept_successor(&listener, &mut child, pid).await?;
    drop(listener);
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
    // This process stops reading now; until the new one says it took over, it must neither
    // exit nor read.
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::HandOver { deadline, reply })
        .await
        .map_err(|_| anyhow!("the engine is gone"))?;
    let h = answer.await?;
    let told = tokio::task::spawn_blocking(move || {
        handover::send_state(&mut link, &h)?;
        handover::wait_took_over(&mut link).context("waiting for the new process to take over")?;
        link.set_read_timeout(None)?;
        anyhow::Ok(link)
    })
    .await?;
    let link = match told {
        Ok(link) => link,
        Err(e) => {
            let _ = commands.send(Command::TakeBack).await;
            return Err(e);
        }
    };
    // From here on systemd hears only the new process (before this one may exit).
    crate::systemd::handed_over();
    commands
        .send(Command::HandedOver { link })
        .await
        .map_err(|_| anyhow!("the engine is gone"))?;
    // The child is the service now: reaped when it exits, never killed from here.
    if let Some(mut child) = child.0.take() {
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
    }
    Ok(pid)
}

/// Start the new process, told by `UPGRADE_ENV` where to connect, and listen there: the
/// listener, the process (killed if the upgrade fails from here on; kept, and reaped, once it
/// took over) and its pid.
fn start_successor(program: &PathBuf) -> anyhow::Result<(tokio::net::UnixListener, Unless, u32)> {
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
    let child = Unless(Some(
        tokio::process::Command::new(program)
            .args(std::env::args_os().skip(1))
            .env(UPGRADE_ENV, &name)
            .stdin(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?,
    ));
    let pid = child
        .get()
        .and_then(tokio::process::Child::id)
        .ok_or_else(|| anyhow!("the new process is gone"))?;
    info!(pid, "upgrade: new process started");
    Ok((listener, child, pid))
}

/// The new process's connection, within [`START_LIMIT`]. Anyone on the host may connect to
/// the name: only the child's connection is taken (the others are ignored).
async fn accept_successor(
    listener: &tokio::net::UnixListener,
    child: &mut Unless,
    pid: u32,
) -> anyhow::Result<tokio::net::UnixStream> {
    let until = tokio::time::Instant::from_std(sluice_transaction::after(
        std::time::Instant::now(),
        START_LIMIT,
    ));
    loop {
        let stream = tokio::select! {
            a = listener.accept() => a?.0,
            st = child.wait() => bail!("the new process exited before taking over ({st})"),
            _ = tokio::time::sleep_until(until) => {
                bail!("the new process did not connect within {START_LIMIT:?}");
            }
        };
        match stream.peer_cred()?.pid() {
            Some(p) if i32::try_from(pid).ok() == Some(p) => return Ok(stream),
            other => {
                warn!(peer = ?other, "upgrade: a process other than the new one connected; ignored")
            }
        }
    }
}

/// The new process, killed when dropped unless it took over (taken out).
struct Unless(Option<tokio::process::Child>);

impl Unless {
    fn get(&self) -> Option<&tokio::process::Child> {
        self.0.as_ref()
    }

    /// Its exit, as text.
    async fn wait(&mut self) -> String {
        match self.0.as_mut() {
            Some(c) => c
                .wait()
                .await
                .map_or_else(|e| e.to_string(), |st| st.to_string()),
            None => std::future::pending().await,
        }
    }
}

impl Drop for Unless {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.start_kill();
        }
    }
}
