//! Procs: the automations users share. A proc is typed (its arguments carry types and rules),
//! declares its secrets, and names the groups allowed to run it.

pub mod args;
pub mod definition;
pub mod examples;
mod graphql;
pub mod service;
pub mod versions;

pub use args::validate_args;
pub use definition::ProcDefinition;
pub use graphql::{Arg, ArgInput, Proc, ProcsMutation, ProcsQuery, arg_values};
