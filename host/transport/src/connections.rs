//! The stream connections the shell knows: each one's peer and the queue of its writer task,
//! found by id (to answer on the connection a request came on) or by peer address (to reuse a
//! connection for a new request).

use bytes::Bytes;
use sluice_transaction::{ConnId, Flow};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};
use tracing::warn;

/// Messages a connection may have waiting to be written. A peer that does not read its
/// answers fills it; the connection is then closed rather than let memory grow (as Kamailio's
/// `tcp_conn_wq_max`).
pub(crate) const WRITE_QUEUE: usize = 256;

/// The sending end of a connection's write queue, and the way to close the connection.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Bytes>,
    stop: Arc<Notify>,
}

impl Writer {
    /// A writer and the queue its connection's writer task empties.
    pub fn pair() -> (Writer, mpsc::Receiver<Bytes>, Arc<Notify>) {
        let (queue, rx) = mpsc::channel(WRITE_QUEUE);
        let stop = Arc::new(Notify::new());
        (
            Writer {
                queue,
                stop: stop.clone(),
            },
            rx,
            stop,
        )
    }

    /// Queue `data`; a full queue closes the connection (`Err(None)`), a closed one gives the
    /// data back (`Err(Some(data))`).
    pub fn send(&self, data: Bytes) -> Result<(), Option<Bytes>> {
        match self.queue.try_send(data) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stop.notify_one();
                Err(None)
            }
            Err(mpsc::error::TrySendError::Closed(data)) => Err(Some(data)),
        }
    }
}

/// A connection's transport (TCP or TLS) and peer.
pub(crate) type Peer = (sluice_transaction::Transport, SocketAddr);

#[derive(Debug, Default)]
pub(crate) struct Connections {
    conns: HashMap<ConnId, (Peer, Writer)>,
    /// Reused by transport and peer: a TLS request never goes on a plain TCP connection.
    by_remote: HashMap<Peer, ConnId>,
    /// Shared with the acceptor tasks, which number the connections they accept.
    next_id: Arc<AtomicU64>,
    /// How connections to TLS destinations are opened; `None`: no TLS configured.
    pub tls: Option<crate::tls::TlsContext>,
    /// Idle time after which a connection Sluice opened is pinged (CRLF); `None`: never.
    pub keepalive: Option<std::time::Duration>,
}

impl Connections {
    pub fn ids(&self) -> Arc<AtomicU64> {
        self.next_id.clone()
    }

    pub fn new_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn add(&mut self, id: ConnId, remote: Peer, writer: Writer) {
        self.conns.insert(id, (remote, writer));
        self.by_remote.insert(remote, id);
    }

    pub fn remove(&mut self, id: ConnId) {
        if let Some((remote, _)) = self.conns.remove(&id) {
            if self.by_remote.get(&remote) == Some(&id) {
                self.by_remote.remove(&remote);
            }
        }
    }

    /// Queue `data` on the connection `flow` names, or on one to its peer. `Err` gives the data
    /// back when there is none (or it is gone): the caller opens one.
    pub fn send(&mut self, flow: Flow, data: Bytes) -> Result<(), Bytes> {
        let id = flow
            .conn
            .filter(|id| self.conns.contains_key(id))
            .or_else(|| self.by_remote.get(&(flow.transport, flow.remote)).copied());
        let Some(id) = id else {
            return Err(data);
        };
        let Some((_, writer)) = self.conns.get(&id) else {
            return Err(data);
        };
        match writer.send(data) {
            Ok(()) => Ok(()),
            Err(None) => {
                // The peer reads nothing: its connection is closed, what it was sent is lost.
                let remote = flow.remote;
                warn!(%remote, queued = WRITE_QUEUE, "tcp peer does not read its messages: connection closed");
                self.remove(id);
                Ok(())
            }
            Err(Some(data)) => {
                self.remove(id);
                Err(data)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_transaction::Transport;

    #[test]
    fn a_connection_is_found_by_id_then_by_peer_and_forgotten_when_gone() {
        let mut c = Connections::default();
        let remote: SocketAddr = "127.0.0.20:5060".parse().unwrap();
        let flow = Flow {
            transport: Transport::Tcp,
            local: "127.0.0.1:5080".parse().unwrap(),
            remote,
            conn: None,
        };
        assert!(c.send(flow, Bytes::from_static(b"x")).is_err());
        let (w, mut r, _stop) = Writer::pair();
        let id = c.new_id();
        c.add(id, (Transport::Tcp, remote), w);
        assert!(c.send(flow, Bytes::from_static(b"a")).is_ok());
        assert!(c
            .send(
                Flow {
                    conn: Some(id),
                    ..flow
                },
                Bytes::from_static(b"b")
            )
            .is_ok());
        assert_eq!(r.try_recv().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(r.try_recv().unwrap(), Bytes::from_static(b"b"));
        drop(r);
        assert!(
            c.send(flow, Bytes::from_static(b"c")).is_err(),
            "the writer is gone"
        );
        assert!(
            c.send(flow, Bytes::from_static(b"d")).is_err(),
            "and forgotten"
        );
    }

    #[test]
    fn a_peer_that_reads_nothing_is_cut_off_not_buffered() {
        let mut c = Connections::default();
        let remote: SocketAddr = "127.0.0.20:5060".parse().unwrap();
        let flow = Flow {
            transport: Transport::Tcp,
            local: "127.0.0.1:5080".parse().unwrap(),
            remote,
            conn: None,
        };
        let (w, _r, stop) = Writer::pair();
        let id = c.new_id();
        c.add(id, (Transport::Tcp, remote), w);
        for _ in 0..WRITE_QUEUE {
            assert!(c.send(flow, Bytes::from_static(b"x")).is_ok());
        }
        // One more than the queue holds: the connection is closed and forgotten.
        assert!(c.send(flow, Bytes::from_static(b"y")).is_ok());
        assert!(c.send(flow, Bytes::from_static(b"z")).is_err(), "forgotten");
        // And its reader is told to stop (the permit waits for it).
        let stopped = stop.notified();
        let mut stopped = std::pin::pin!(stopped);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(std::future::Future::poll(stopped.as_mut(), &mut cx).is_ready());
    }
}
