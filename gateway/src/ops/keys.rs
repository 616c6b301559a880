//! The key table: the access keys besides each gateway's configured (bootstrap) key, with their
//! grants. Part of the system table (`ops::system_table`), so every node holds it and a write
//! reaches every gateway once its cache expires: a deleted key stops working everywhere within
//! `ops::cluster::KEY_CACHE_TTL` (plus a read of the table).
//!
//! Secrets are kept sealed (AES-256-GCM) under a key derived from the cluster secret, bound to
//! their key's id: nodes and their disks never hold one in the clear, and a sealed secret copied
//! onto another key's record does not open. Between regions, whose cluster secrets differ, a
//! key travels sealed under a key derived from the replication secret they share
//! (`SecretSeal::in_transit`, in `ops::secret_seal`), and is sealed again under the receiving
//! cluster's secret.

use crate::ops::cluster::Cluster;
use crate::ops::error::OpError;
use crate::ops::secret_seal::SecretSeal;
use crate::ops::system_table::Snapshot;
use node_rpc::record::{KeyRecord, Version};
use rand::Rng;
use std::time::Duration;

/// A key id missing from a copy at least this old sends the gateway back to the nodes, so that a
/// key created through another gateway works at once; unknown ids cannot make it read more often.
const MISS_REFRESH: Duration = Duration::from_millis(500);
const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A new key: its record and its secret, which is shown to its creator once and never again.
pub fn new_key(seal: &SecretSeal, name: &str, create_bucket: bool) -> (KeyRecord, String) {
    let id = format!("TK{}", random_string(18).to_ascii_uppercase());
    let secret = random_string(40);
    let now = Version::now();
    let record = KeyRecord {
        sealed_secret: seal.seal(&id, &secret),
        id,
        name: name.to_string(),
        version: now,
        created: now,
        deleted: false,
        create_bucket,
        buckets: Default::default(),
    };
    (record, secret)
}

fn random_string(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHANUMERIC[rng.gen_range(0..ALPHANUMERIC.len())] as char)
        .collect()
}

impl Cluster {
    /// The key table (newest record of each id, tombstones included), from the cache unless
    /// `fresh`.
    pub async fn keys(&self, fresh: bool) -> Result<Snapshot<KeyRecord>, OpError> {
        let nodes = self.all_nodes();
        self.keys
            .read(&nodes, fresh, "nodes answered for the key table", |n| {
                self.client.keys(&n.addr)
            })
            .await
    }

    /// The live key of that id, or `None`.
    pub async fn access_key(&self, id: &str) -> Result<Option<KeyRecord>, OpError> {
        let live = |k: &KeyRecord| !k.deleted;
        (self.keys)
            .lookup(id, live, MISS_REFRESH, || self.keys(true))
            .await
    }

    /// Applies key records sent by a peer region (sealed `in_transit`), each by last writer
    /// wins, as the system table does; the ids of those whose secret does not open.
    pub async fn apply_replica_keys(
        &self,
        incoming: Vec<KeyRecord>,
        in_transit: &SecretSeal,
    ) -> Result<Vec<String>, OpError> {
        let table = self.keys(true).await?;
        let mut refused = Vec::new();
        for record in incoming {
            Version::observe(record.version);
            if table
                .get(&record.id)
                .is_some_and(|k| k.version >= record.version)
            {
                continue;
            }
            match in_transit.reseal(&record, &self.secrets) {
                Some(resealed) => self.put_key(&resealed).await?,
                None => refused.push(record.id),
            }
        }
        Ok(refused)
    }

    /// Writes a key record to every node; a majority must take it.
    pub async fn put_key(&self, record: &KeyRecord) -> Result<(), OpError> {
        let nodes = self.all_nodes();
        self.keys
            .write(&nodes, "nodes took the key record", |n| {
                self.client.put_key(&n.addr, record)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_rpc::protocol::ClusterSecret;

    #[test]
    fn sealed_secrets_open_only_for_their_key_and_cluster() {
        let seal = SecretSeal::new(&ClusterSecret::new("cluster one".into()));
        let (record, secret) = new_key(&seal, "backups", false);
        assert!(record.id.starts_with("TK") && record.id.len() == 20);
        assert_eq!(secret.len(), 40);
        assert!(!record.sealed_secret.contains(&secret));
        assert_eq!(seal.open(&record).as_deref(), Some(secret.as_str()));

        let other_cluster = SecretSeal::new(&ClusterSecret::new("cluster two".into()));
        assert_eq!(other_cluster.open(&record), None);
        let (mut other, _) = new_key(&seal, "web", false);
        other.sealed_secret = record.sealed_secret.clone();
        assert_eq!(seal.open(&other), None, "a secret moved to another key");
    }

    #[test]
    fn a_key_crosses_regions_sealed_under_the_replication_secret() {
        let east = SecretSeal::new(&ClusterSecret::new("east".into()));
        let west = SecretSeal::new(&ClusterSecret::new("west".into()));
        let transit = SecretSeal::in_transit(&ClusterSecret::new("shared".into()));
        let (record, secret) = new_key(&east, "backups", false);

        let sent = east.reseal(&record, &transit).unwrap();
        assert_eq!(
            east.open(&sent),
            None,
            "sent sealed, not under east's own key"
        );
        let other = SecretSeal::in_transit(&ClusterSecret::new("another".into()));
        assert!(
            other.reseal(&sent, &west).is_none(),
            "another replication secret"
        );
        let received = transit.reseal(&sent, &west).unwrap();
        assert_eq!(west.open(&received).as_deref(), Some(secret.as_str()));
        assert_eq!(
            (&received.id, received.version),
            (&record.id, record.version)
        );

        let tombstone = KeyRecord {
            deleted: true,
            sealed_secret: String::new(),
            ..record
        };
        assert!(transit.reseal(&tombstone, &west).is_some_and(|t| t.deleted));
    }
}
