//! What gateways and storage nodes say to each other: the records a holder keeps, the node
//! protocol's messages and signing, the cluster's shared configuration, and the client the gateway
//! (and a node handing hints over) calls nodes with. It knows nothing of how a node stores them,
//! so the gateway does not link RocksDB.

pub mod auth;
pub mod body;
pub mod client;
pub mod cluster;
mod gather;
pub mod object_lock;
pub mod protocol;
pub mod raw;
pub mod record;
pub mod tls;

pub use client::{NodeClient, NodeHealth, RpcError};
pub use cluster::ClusterConfig;
