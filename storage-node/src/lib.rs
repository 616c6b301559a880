//! A Tessera storage node: fragment files and RocksDB metadata on one disk, and the node
//! protocol's server. The protocol itself, the records and the client are in `node-rpc`.

pub mod config;
pub mod hints;
mod metrics;
pub mod scrub;
pub mod server;
pub mod store;

pub(crate) use node_rpc::{auth, body, client, object_lock, protocol, record};

pub use config::NodeConfig;
