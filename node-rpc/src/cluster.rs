//! Configuration of the cluster as every process of a region sees it: the nodes, the code, the
//! quorum and the secret they share.

use crate::protocol::ClusterSecret;
use placement::{Layout, NodeInfo, PlacementError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Shared by all nodes and gateways of one region.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Authenticates node-to-node and gateway-to-node requests.
    pub secret: ClusterSecret,
    /// Reed-Solomon data fragments per stripe (k). Default 4.
    #[serde(default = "default_data_shards")]
    pub data_shards: usize,
    /// Parity fragments per stripe (m). Default 2.
    #[serde(default = "default_parity_shards")]
    pub parity_shards: usize,
    /// Holders that must commit before a write is acknowledged. Default k+1.
    #[serde(default)]
    pub write_quorum: Option<usize>,
    /// Shards on the ring. Default 256.
    #[serde(default = "default_shard_count")]
    pub shard_count: u32,
    /// Longest wait for a node to answer a metadata call, in milliseconds. Default 10000.
    #[serde(default = "default_rpc_timeout_ms")]
    pub rpc_timeout_ms: u64,
    /// PEM file of the CA that signs the nodes' certificates. When set, gateways and nodes call
    /// nodes over TLS and trust only this CA, so every node must then serve TLS (`tls_cert` and
    /// `tls_key` of its `[node]` config). Default: none, plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    pub nodes: Vec<NodeInfo>,
}

fn default_data_shards() -> usize {
    4
}
fn default_parity_shards() -> usize {
    2
}
fn default_shard_count() -> u32 {
    256
}
fn default_rpc_timeout_ms() -> u64 {
    10_000
}

impl ClusterConfig {
    pub fn layout(&self) -> Result<Layout, PlacementError> {
        Layout::new(
            self.nodes.clone(),
            self.data_shards,
            self.parity_shards,
            self.shard_count,
        )
    }

    pub fn write_quorum(&self) -> usize {
        self.write_quorum
            .unwrap_or(self.data_shards + 1)
            .clamp(self.data_shards, self.data_shards + self.parity_shards)
    }

    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }
}
