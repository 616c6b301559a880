//! Sealing the key table's secrets (AES-256-GCM) under a key derived from the cluster secret,
//! each bound to its key's id, so that nodes and their disks never hold a secret in the clear
//! and a sealed secret copied onto another key's record does not open (see `ops::keys`).

use crate::ops::encryption::WrappingKey;
use node_rpc::protocol::ClusterSecret;
use node_rpc::record::KeyRecord;

/// Bound into every sealed secret with its key's id.
const SECRET_CONTEXT: &str = "tessera access key secret v1";

/// Seals and opens the secrets of the key table.
pub struct SecretSeal(WrappingKey);

impl SecretSeal {
    pub fn new(cluster_secret: &ClusterSecret) -> SecretSeal {
        SecretSeal(WrappingKey::new(
            cluster_secret.derive_key("access key secrets"),
        ))
    }

    /// The seal of key records sent between regions (`replication_secret` is the same in all).
    pub fn in_transit(replication_secret: &ClusterSecret) -> SecretSeal {
        SecretSeal(WrappingKey::new(
            replication_secret.derive_key("access key secrets in transit"),
        ))
    }

    /// `record` with its secret opened under `self` and sealed again under `to`; `None` when
    /// it does not open. A deleted key's tombstone has no secret left, and goes as it is.
    pub fn reseal(&self, record: &KeyRecord, to: &SecretSeal) -> Option<KeyRecord> {
        if record.deleted {
            return Some(record.clone());
        }
        let secret = self.open(record)?;
        Some(KeyRecord {
            sealed_secret: to.seal(&record.id, &secret),
            ..record.clone()
        })
    }

    fn context(key_id: &str) -> Vec<u8> {
        format!("{SECRET_CONTEXT}\n{key_id}").into_bytes()
    }

    pub fn seal(&self, key_id: &str, secret: &str) -> String {
        self.0.seal(secret.as_bytes(), &Self::context(key_id))
    }

    /// The secret of a key record; `None` when it does not open (sealed under another cluster
    /// secret, or for another key).
    pub fn open(&self, record: &KeyRecord) -> Option<String> {
        let secret = self
            .0
            .open(&record.sealed_secret, &Self::context(&record.id))
            .ok()?;
        String::from_utf8(secret).ok()
    }
}
