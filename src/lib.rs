//! The `tessera` library: what the command and the integration tests share.

pub use s3_client as client;
