//! The upstream side: connections to Redis, each an active object, and the pool that owns them.
//!
//! A connection is a task that owns its socket and a queue of requests: it writes requests as
//! they come (batching whatever is queued into one write), reads replies, and hands each reply
//! to the request it answers, in order. Callers never touch the socket and never hold a lock
//! across an `.await`; they talk to the task through channels.

mod conn;
mod health;
mod invalidation;
mod pool;
mod slots;
mod tracking;

pub use conn::{ConnHandle, Request};
pub use pool::{Pool, PoolConfig, PoolStats};
pub use slots::{CloseReason, Limits};
pub use tracking::{Tracking, TrackingMode, TrackingSink};
