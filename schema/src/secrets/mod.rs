//! Secrets: values a proc needs that nobody may read back. They are encrypted at rest (see
//! [`keyring`]), written and deleted by administrators, and decrypted only to hand them to a
//! run. No query, log line or error ever contains a value.

mod graphql;
pub mod keyring;
pub mod service;

pub use graphql::{SecretValueInput, SecretsMutation};
pub use service::SecretInfo;
