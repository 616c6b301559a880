//! The Tessera S3 gateway: SigV4 authentication, the S3 operations, and the read and write paths
//! that erasure-code objects across the storage nodes.

mod admin;
mod buckets;
mod checksum;
mod cluster;
pub mod config;
mod copy;
mod cors;
mod error;
mod frame;
mod get;
mod heal;
mod http_util;
mod lifecycle;
mod list;
mod liveness;
pub mod md5_lanes;
mod multi_delete;
mod multipart;
mod objects;
mod payload;
mod put;
mod repair;
mod router;
mod server;
mod sigv4;
mod tagging;
mod versioning;
mod xml;

pub use config::{GatewayConfig, SecretKey};
pub use error::S3Error;
pub use server::run;
