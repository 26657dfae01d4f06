//! Counters the engine keeps; the shell exports them.

use sluice_transaction::TxStats;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    pub messages_in: u64,
    pub messages_out: u64,
    /// Messages that failed parsing or validation.
    pub parse_errors: u64,
    /// Malformed messages dropped without an answer.
    pub dropped: u64,
    pub calls_attempted: u64,
    pub calls_answered: u64,
    pub calls_failed: u64,
    pub active_calls: u64,
    pub transactions: TxStats,
}
