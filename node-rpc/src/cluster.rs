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
    /// This cluster's region among several that replicate to each other (`[cluster.region]`).
    /// Default: none, a region alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionConfig>,
}

/// A region's place among the regions that replicate to each other. Every region's config lists
/// the same regions with the same numbers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// This region's name: the region its gateways serve (their `region`) and its peers know it by.
    pub name: String,
    /// 1-255, unique among the regions and never reused: the top byte of every version made in
    /// this region, so that two regions never make the same version.
    pub number: u8,
    /// Signs the requests regions send each other; the same in every region.
    pub replication_secret: ClusterSecret,
    /// The other regions.
    #[serde(default)]
    pub peers: Vec<PeerRegion>,
    /// A GET or HEAD of an object that this region does not have asks the regions the bucket
    /// replicates with (default: false; what it costs is in the README).
    #[serde(default)]
    pub read_fallback: bool,
}

/// Another region, as this one reaches it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRegion {
    pub name: String,
    pub number: u8,
    /// Its S3 endpoint, such as `https://s3.eu-west-1.example.com`.
    pub endpoint: String,
    /// PEM file of the certificate authority its TLS certificate is checked against (default:
    /// the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Why a `[cluster.region]` section cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegionError {
    #[error("region {0}: region numbers are 1 to 255")]
    ZeroNumber(String),
    #[error("regions {0} and {1} have the same number")]
    SameNumber(String, String),
    #[error("region {0} is listed twice")]
    SameName(String),
}

impl RegionConfig {
    /// Checks that every region has a number of its own and a name of its own.
    pub fn validate(&self) -> Result<(), RegionError> {
        let mut seen: Vec<(&str, u8)> = Vec::new();
        let all = std::iter::once((self.name.as_str(), self.number))
            .chain(self.peers.iter().map(|p| (p.name.as_str(), p.number)));
        for (name, number) in all {
            if number == 0 {
                return Err(RegionError::ZeroNumber(name.into()));
            }
            if let Some((other, _)) = seen.iter().find(|(_, n)| *n == number) {
                return Err(RegionError::SameNumber((*other).into(), name.into()));
            }
            if seen.iter().any(|(n, _)| *n == name) {
                return Err(RegionError::SameName(name.into()));
            }
            seen.push((name, number));
        }
        Ok(())
    }

    /// The access key id region `from`'s replication signs its requests with.
    pub fn replication_key_id(from: &str) -> String {
        format!("replication.{from}")
    }

    /// The secret key that signs replication requests, derived from the replication secret.
    pub fn replication_secret_key(&self) -> String {
        hex::encode(self.replication_secret.derive_key("replication requests"))
    }

    /// The peer whose replication signs with access key id `key_id`.
    pub fn peer_signing_as(&self, key_id: &str) -> Option<&PeerRegion> {
        let name = key_id.strip_prefix("replication.")?;
        self.peers.iter().find(|p| p.name == name)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn region(number: u8, peers: &[(&str, u8)]) -> RegionConfig {
        RegionConfig {
            name: "us-east-1".into(),
            number,
            replication_secret: ClusterSecret::new("s".into()),
            peers: peers
                .iter()
                .map(|(name, number)| PeerRegion {
                    name: (*name).into(),
                    number: *number,
                    endpoint: "http://127.0.0.1:9100".into(),
                    ca_file: None,
                })
                .collect(),
            read_fallback: false,
        }
    }

    #[test]
    fn every_region_needs_a_number_and_a_name_of_its_own() {
        assert_eq!(region(1, &[("eu-west-1", 2)]).validate(), Ok(()));
        assert_eq!(
            region(0, &[]).validate(),
            Err(RegionError::ZeroNumber("us-east-1".into()))
        );
        assert_eq!(
            region(1, &[("eu-west-1", 1)]).validate(),
            Err(RegionError::SameNumber(
                "us-east-1".into(),
                "eu-west-1".into()
            ))
        );
        assert_eq!(
            region(1, &[("us-east-1", 2)]).validate(),
            Err(RegionError::SameName("us-east-1".into()))
        );
    }

    #[test]
    fn a_peer_is_known_by_its_replication_key_id() {
        let config = region(1, &[("eu-west-1", 2)]);
        let id = RegionConfig::replication_key_id("eu-west-1");
        assert_eq!(config.peer_signing_as(&id).map(|p| p.number), Some(2));
        assert!(config.peer_signing_as("replication.ap-south-1").is_none());
        assert!(config.peer_signing_as("eu-west-1").is_none());
    }
}
