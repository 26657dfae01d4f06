//! What the transaction layer takes and gives: transaction ids, bytes to transmit, events
//! for its user and counters.

use crate::Flow;
use bytes::Bytes;
use sluice_sip::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxRef {
    Server(ServerTxId),
    Client(ClientTxId),
}

/// Bytes to send on a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub flow: Flow,
    pub data: Bytes,
}

/// What the transaction layer tells its user.
#[derive(Debug)]
pub enum TxEvent {
    /// A new request: a server transaction was created for it (not for ACK).
    Request {
        tx: ServerTxId,
        msg: Message,
        flow: Flow,
    },
    /// An ACK that matches no transaction: the ACK for a 2xx, end to end.
    Ack { msg: Message, flow: Flow },
    /// A response for a client transaction (provisional, final, or a retransmitted 2xx).
    Response { tx: ClientTxId, msg: Message },
    /// A response that matches no client transaction (a stray 2xx retransmission).
    StrayResponse { msg: Message, flow: Flow },
    /// Timer B or F: no final response came. `request` is the request as sent (the
    /// transaction is gone), for a caller that tries it elsewhere.
    ClientTimeout {
        tx: ClientTxId,
        request: Box<Message>,
    },
    /// The transport could not deliver the request (a refused or broken connection): the
    /// transaction failed without waiting for Timer B or F.
    TransportError {
        tx: ClientTxId,
        request: Box<Message>,
    },
    /// Timer H: no ACK came for a final non-2xx response.
    ServerTimeout { tx: ServerTxId },
    /// The transaction is gone; its id will not be used again.
    Terminated { tx: TxRef },
}

/// Counters for monitoring.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxStats {
    pub request_retransmissions_sent: u64,
    pub response_retransmissions_sent: u64,
    pub retransmissions_absorbed: u64,
    pub client_timeouts: u64,
    pub server_timeouts: u64,
    pub merged_requests: u64,
    /// Client transactions failed by the transport.
    pub transport_errors: u64,
}
