//! The proxy's own client table: every client connection gets an id, and `CLIENT ID`, `LIST`,
//! `INFO`, `KILL`, `SETNAME`, `GETNAME`, `GETREDIR`, `TRACKINGINFO` and `INFO clients` describe
//! the proxy's clients, not its upstream connections (which Redis would otherwise list).
//!
//! Owns each client's descriptive state, written by its session (atomics and small locks, never
//! held across an `.await`) and read by whoever asks. Never decides where a command goes.

mod describe;
mod kill;
mod table;
mod tracking;

pub use describe::{info_clients, line, ClientType, ListFilter};
pub use kill::KillFilter;
pub use table::{Client, Registered, Registry, SubKind};
pub use tracking::{redirect_arg, TrackingView};
