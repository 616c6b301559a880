//! The small records kept beside the objects: the system table (buckets and access keys),
//! multipart uploads and their parts, node settings, and hints kept for holders that were down.

use super::keys::{
    access_key_key, bucket_key, hint_key, part_key, parts_prefix, setting_key, upload_key,
    TAG_BUCKET, TAG_HINT, TAG_KEY, TAG_UPLOAD,
};
use super::{Store, StoreError};
use crate::hints::Hint;
use crate::protocol::CommitRequest;
use crate::record::{
    BucketId, BucketRecord, KeyRecord, ObjectRecord, PartRecord, UploadRecord, Version,
};
use rocksdb::WriteBatch;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;

impl Store {
    /// Keeps a bucket record unless this node has it at the same or a newer version; true when
    /// it was kept.
    pub fn put_bucket(&self, record: &BucketRecord) -> Result<bool, StoreError> {
        self.put_newer(&bucket_key(&record.name), record, |r| r.version)
    }

    pub fn buckets(&self) -> Result<Vec<BucketRecord>, StoreError> {
        self.scan(&[TAG_BUCKET])
    }

    /// Keeps an access key record unless this node has it at the same or a newer version.
    pub fn put_key(&self, record: &KeyRecord) -> Result<bool, StoreError> {
        self.put_newer(&access_key_key(&record.id), record, |r| r.version)
    }

    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.scan(&[TAG_KEY])
    }

    /// A system table's rule: of two records of one entry, the newer version wins on every node.
    fn put_newer<R: Serialize + DeserializeOwned>(
        &self,
        db_key: &[u8],
        record: &R,
        version: impl Fn(&R) -> Version,
    ) -> Result<bool, StoreError> {
        let _guard = self.lock_for(db_key);
        let old: Option<R> = self.get_json(db_key)?;
        if old.is_some_and(|o| version(&o) >= version(record)) {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put(db_key, serde_json::to_vec(record)?);
        self.write_synced(batch)?;
        Ok(true)
    }

    pub fn put_upload(&self, bucket: &BucketId, record: &UploadRecord) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(
            upload_key(bucket, &record.upload_id),
            serde_json::to_vec(record)?,
        );
        self.write_synced(batch)
    }

    pub fn upload(
        &self,
        bucket: &BucketId,
        upload_id: &str,
    ) -> Result<Option<UploadRecord>, StoreError> {
        self.get_json(&upload_key(bucket, upload_id))
    }

    pub fn uploads(&self, bucket: &BucketId) -> Result<Vec<UploadRecord>, StoreError> {
        self.scan(&[&[TAG_UPLOAD][..], bucket].concat())
    }

    /// Forgets an upload and removes its parts' fragments.
    pub fn abort_upload(&self, bucket: &BucketId, upload_id: &str) -> Result<(), StoreError> {
        let parts = self.parts(upload_id)?;
        let mut batch = WriteBatch::default();
        batch.delete(upload_key(bucket, upload_id));
        for part in &parts {
            batch.delete(part_key(upload_id, part.part.number));
        }
        self.write_synced(batch)?;
        for part in parts.iter().filter(|p| p.part.inline.is_none()) {
            self.remove_fragment(&part.part.fragment_id, part.slot)?;
        }
        Ok(())
    }

    /// Records an uploaded part unless a newer upload of the same part number is already here.
    pub fn put_part(&self, upload_id: &str, record: &PartRecord) -> Result<bool, StoreError> {
        let db_key = part_key(upload_id, record.part.number);
        let _guard = self.lock_for(&db_key);
        let old: Option<PartRecord> = self.get_json(&db_key)?;
        if old.as_ref().is_some_and(|o| o.version >= record.version) {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put(&db_key, serde_json::to_vec(record)?);
        self.write_synced(batch)?;
        if let Some(old) = old.filter(|o| o.part.inline.is_none()) {
            self.remove_fragment(&old.part.fragment_id, old.slot)?;
        }
        Ok(true)
    }

    pub fn parts(&self, upload_id: &str) -> Result<Vec<PartRecord>, StoreError> {
        self.scan(&parts_prefix(upload_id))
    }

    /// Small named values a node keeps for the cluster (such as a heal checkpoint); empty clears.
    pub fn put_setting(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = setting_key(name);
        let mut batch = WriteBatch::default();
        if value.is_empty() {
            batch.delete(key);
        } else {
            batch.put(key, value);
        }
        self.write_synced(batch)
    }

    pub fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(setting_key(name))?)
    }

    /// Keeps a write meant for another node (hinted handoff) until it is handed over. Hints are
    /// keyed by the time they were taken, so they are handed over in the order they came.
    pub fn add_hint(&self, hint: &Hint) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(hint_key(Version::now()), serde_json::to_vec(hint)?);
        self.write_synced(batch)?;
        *self.targets().entry(hint.target.clone()).or_default() += 1;
        Ok(())
    }

    /// Up to `limit` pending hints, oldest first, with the key that removes each.
    pub fn hints(&self, limit: usize) -> Result<Vec<(Vec<u8>, Hint)>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.prefix_iterator([TAG_HINT]).take(limit) {
            let (k, v) = entry?;
            if k.first() != Some(&TAG_HINT) {
                break;
            }
            out.push((k.to_vec(), serde_json::from_slice(&v)?));
        }
        Ok(out)
    }

    /// The record a pending hint will commit on `target` for `version` of a key, if this node
    /// keeps one. A read that finds fewer than k holders with an inline version counts these
    /// too: they are that version's fragments on their way to holders that missed the write.
    /// Hints are kept by time, not by key, so this reads them all; it is asked only then.
    pub fn hinted_record(
        &self,
        target: &str,
        bucket: &BucketId,
        key: &str,
        version: Version,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        for entry in self.db.prefix_iterator([TAG_HINT]) {
            let (k, v) = entry?;
            if k.first() != Some(&TAG_HINT) {
                break;
            }
            let hint: Hint = serde_json::from_slice(&v)?;
            if hint.target != target || hint.method != "POST" || hint.path != "/v1/commit" {
                continue;
            }
            // Only a corrupt hint fails to parse: it answers nothing, and fails no read.
            let Ok(commit) = serde_json::from_str::<CommitRequest>(&hint.body) else {
                continue;
            };
            if commit.bucket == *bucket && commit.key == key && commit.record.version == version {
                return Ok(Some(commit.record));
            }
        }
        Ok(None)
    }

    /// Pending hints by the node they are for.
    pub fn hint_targets(&self) -> BTreeMap<String, u64> {
        self.targets().clone()
    }

    /// Pending hints by target, read from the hints themselves.
    pub(super) fn count_hints(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        /// A hint's target alone: the rest of its JSON is skipped, not kept.
        #[derive(serde::Deserialize)]
        struct Target {
            target: String,
        }
        let mut counts = BTreeMap::new();
        for entry in self.db.prefix_iterator([TAG_HINT]) {
            let (k, v) = entry?;
            if k.first() != Some(&TAG_HINT) {
                break;
            }
            let hint: Target = serde_json::from_slice(&v)?;
            *counts.entry(hint.target).or_default() += 1;
        }
        Ok(counts)
    }

    /// Forgets the hint under `key`, which was for `target`.
    pub fn remove_hint(&self, key: &[u8], target: &str) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete(key);
        self.write_synced(batch)?;
        let mut targets = self.targets();
        if let Some(count) = targets.get_mut(target) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                targets.remove(target);
            }
        }
        Ok(())
    }

    fn targets(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u64>> {
        self.hint_targets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{open, record, BUCKET};
    use crate::hints::Hint;
    use crate::protocol::CommitRequest;
    use crate::record::Version;

    fn commit_hint(target: &str, key: &str, micros: u64) -> Hint {
        let commit = CommitRequest {
            bucket: BUCKET,
            key: key.into(),
            record: record(micros, None),
            upload_id: None,
            claim: None,
            replicate: None,
        };
        let body = serde_json::to_vec(&commit).unwrap();
        Hint::new(target, "POST", "/v1/commit", body.into()).unwrap()
    }

    #[test]
    fn a_hinted_record_is_found_by_holder_key_and_version() {
        let (_dir, store) = open();
        let version = |micros| Version { micros, salt: 0 };
        let mut corrupt = commit_hint("z1-n1", "k", 5);
        corrupt.body = "{".into();
        store.add_hint(&corrupt).unwrap();
        for (target, key, micros) in [("z1-n1", "k", 10), ("z1-n1", "other", 20)] {
            store.add_hint(&commit_hint(target, key, micros)).unwrap();
        }
        let found = store.hinted_record("z1-n1", &BUCKET, "k", version(10));
        let found = found.unwrap().expect("the hint for z1-n1");
        assert_eq!((found.version, found.slot), (version(10), 1));
        assert!(found.parts[0].inline.is_some(), "with its inline fragment");
        for (target, key, micros) in [("z2-n1", "k", 10), ("z1-n1", "k", 11), ("z1-n1", "j", 20)] {
            let missing = store.hinted_record(target, &BUCKET, key, version(micros));
            assert!(missing.unwrap().is_none(), "{target} {key} {micros}");
        }
    }
}
