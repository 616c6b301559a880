//! A Tessera storage node: fragment files and RocksDB metadata on one disk, the node protocol's
//! server, and the client the gateway uses to call it.

pub mod body;
pub mod client;
pub mod config;
pub mod hints;
pub mod protocol;
pub mod record;
pub mod scrub;
pub mod server;
pub mod store;

pub use client::{NodeClient, NodeHealth, RpcError};
pub use config::{ClusterConfig, NodeConfig};
