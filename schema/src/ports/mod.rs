//! The traits for everything that crosses a process boundary, and the in-memory
//! implementations that need no infrastructure. Adapters for Redis, Kubernetes, local processes,
//! SMTP and webhooks live in `proctor-server`.

pub mod authenticator;
pub mod event_bus;
pub mod executor;
pub mod notifier;
#[cfg(any(test, feature = "testing"))]
pub mod scripted_executor;
