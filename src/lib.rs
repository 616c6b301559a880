//! The `tessera` library: what the command and the integration tests share.

pub mod client;
