//! A session's transaction state on its dedicated connection: whether MULTI or WATCH is open
//! (which keeps the connection), and the writes queued inside MULTI, whose keys are invalidated
//! again when EXEC's reply arrives. In cluster mode also what the proxy holds of a transaction
//! before its node is known ([`NodeTx`]).
//!
//! Owns bookkeeping only. Never touches the cache or a connection: the session acts on what it
//! says.

use bytes::Bytes;

use crate::command::TxEffect;

#[derive(Default)]
pub(super) struct Tx {
    in_multi: bool,
    watching: bool,
    /// Keys written by the commands queued in the current MULTI.
    keys: Vec<Bytes>,
    /// A FLUSHALL, FLUSHDB or SWAPDB is queued in the current MULTI.
    flush: bool,
}

impl Tx {
    /// A transaction or a WATCH is open: the dedicated connection must stay.
    pub fn is_open(&self) -> bool {
        self.in_multi || self.watching
    }

    /// Inside MULTI: writes are queued, and run at EXEC.
    pub fn in_multi(&self) -> bool {
        self.in_multi
    }

    /// Notes what a command sent on the dedicated connection does to the transaction.
    pub fn track(&mut self, effect: TxEffect) {
        match effect {
            TxEffect::Multi => self.in_multi = true,
            TxEffect::Watch if !self.in_multi => self.watching = true,
            TxEffect::Exec | TxEffect::Discard if self.in_multi => {
                self.in_multi = false;
                self.watching = false;
            }
            TxEffect::Unwatch if !self.in_multi => self.watching = false,
            _ => {}
        }
    }

    /// RESET: no transaction, no WATCH.
    pub fn reset(&mut self) {
        self.in_multi = false;
        self.watching = false;
    }

    /// A write queued inside MULTI changes `keys` (or, with `all`, every key) at EXEC.
    pub fn queue_write(&mut self, keys: &[Bytes], all: bool) {
        self.keys.extend_from_slice(keys);
        self.flush |= all;
    }

    /// DISCARD: the queued writes will not run.
    pub fn discard(&mut self) {
        self.keys.clear();
        self.flush = false;
    }

    /// EXEC: what the queued writes change, if any were queued (`Some(None)`: every key).
    pub fn take_written(&mut self) -> Option<Option<Vec<Bytes>>> {
        if !self.flush && self.keys.is_empty() {
            return None;
        }
        let keys = std::mem::take(&mut self.keys);
        Some((!std::mem::take(&mut self.flush)).then_some(keys))
    }
}

/// Cluster mode: a transaction runs on the master of its keys' slot, which MULTI does not
/// name. Until a key names it, the proxy answers MULTI (and the keyless commands queued after
/// it) itself and holds them, to send them first on the node's connection
/// (`session/node_tx.rs`).
#[derive(Default)]
pub(super) struct NodeTx {
    /// MULTI was answered by the proxy and not sent yet.
    pub held_multi: bool,
    /// Keyless commands queued after the held MULTI (encoded), answered `+QUEUED` by the proxy.
    pub held: Vec<Bytes>,
    /// The slot of the transaction's keys: its WATCH's, or its first keyed command's.
    pub slot: Option<u16>,
    /// A command was refused inside MULTI by the proxy (`CROSSSLOT`): EXEC gets `-EXECABORT`,
    /// as when Redis refuses a queued command.
    pub aborted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_and_watch_keep_the_connection_until_exec_or_discard() {
        let mut tx = Tx::default();
        tx.track(TxEffect::Watch);
        assert!(tx.is_open() && !tx.in_multi());
        tx.track(TxEffect::Unwatch);
        assert!(!tx.is_open());
        tx.track(TxEffect::Watch);
        tx.track(TxEffect::Multi);
        // UNWATCH inside MULTI is queued, not run.
        tx.track(TxEffect::Unwatch);
        assert!(tx.in_multi());
        tx.track(TxEffect::Exec);
        assert!(!tx.is_open());
        tx.track(TxEffect::Multi);
        tx.reset();
        assert!(!tx.is_open());
    }

    #[test]
    fn queued_writes_are_handed_over_at_exec_or_dropped_at_discard() {
        let mut tx = Tx::default();
        assert_eq!(tx.take_written(), None);
        tx.queue_write(&[Bytes::from_static(b"a")], false);
        tx.queue_write(&[Bytes::from_static(b"b")], false);
        assert_eq!(
            tx.take_written(),
            Some(Some(vec![
                Bytes::from_static(b"a"),
                Bytes::from_static(b"b")
            ]))
        );
        assert_eq!(tx.take_written(), None);
        tx.queue_write(&[], true);
        assert_eq!(tx.take_written(), Some(None));
        tx.queue_write(&[Bytes::from_static(b"c")], true);
        tx.discard();
        assert_eq!(tx.take_written(), None);
    }
}
