//! Executions: running a proc and following it live.
//!
//! - [`service`]: start, cancel, read and list executions (shared by every API);
//! - [`runner`]: supervise runs through the executor port, persist transitions and output;
//! - [`stream`]: the live-log and status subscriptions, exact across replicas and reconnects;
//! - [`shaping`]: secret masking and splitting of over-long lines.

mod graphql;
pub mod identity;
pub mod receipts;
pub mod runner;
pub mod service;
pub mod shaping;
pub mod stream;

pub use graphql::{
    Execution, ExecutionStatus, ExecutionsMutation, ExecutionsQuery, ExecutionsSubscription,
    LogLine,
};
