//! Listings of a bucket's keys and versions, and the per-shard digests healing compares.

use super::keys::{version_bytes, TAG_HISTORY, TAG_OBJECT, VERSION_BYTES};
use super::{Store, StoreError};
use crate::protocol::{
    ListItem, ListRequest, ListResponse, ShardDigest, ShardUsage, VersionListRequest,
};
use crate::record::{BucketId, ListEntry, ObjectRecord, VersionRef};
use std::collections::BTreeMap;

impl Store {
    /// Keys of a bucket in order, rolled up at the delimiter (see `ListRequest`).
    pub fn list(&self, req: &ListRequest) -> Result<ListResponse, StoreError> {
        let mut base = vec![TAG_OBJECT];
        base.extend_from_slice(&req.bucket);
        let mut full_prefix = base.clone();
        full_prefix.extend_from_slice(req.prefix.as_bytes());
        let mut seek = full_prefix.clone();
        if let Some(after) = &req.start_after {
            let mut after_key = base.clone();
            after_key.extend_from_slice(after.as_bytes());
            after_key.push(0);
            seek = seek.max(after_key);
        }
        let mut iter = self.db.raw_iterator();
        iter.seek(&seek);
        let mut items = Vec::new();
        let mut truncated = false;
        while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(&full_prefix) {
                break;
            }
            let key = String::from_utf8_lossy(&k[base.len()..]).into_owned();
            let record: ObjectRecord = serde_json::from_slice(v)?;
            let rolled = req
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| {
                    key[req.prefix.len()..]
                        .find(d)
                        .map(|i| key[..req.prefix.len() + i + d.len()].to_string())
                });
            if items.len() == req.limit {
                truncated = true;
                break;
            }
            match rolled {
                Some(common) if !record.deleted => {
                    // Skip every key under this common prefix: no UTF-8 key holds byte 0xFF.
                    let mut next = base.clone();
                    next.extend_from_slice(common.as_bytes());
                    next.push(0xFF);
                    if req.start_after.as_deref() < Some(common.as_str()) {
                        items.push(ListItem::Prefix(common));
                    }
                    iter.seek(&next);
                    continue;
                }
                Some(_) => {}
                None => items.push(ListItem::Key(ListEntry::of(key, &record))),
            }
            iter.next();
        }
        iter.status()?;
        Ok(ListResponse { items, truncated })
    }

    /// Every version of the keys of a bucket, keys in order and each key's versions newest
    /// first, resuming after a (key, version) marker and rolled up at the delimiter (see
    /// `VersionListRequest`).
    pub fn list_versions(&self, req: &VersionListRequest) -> Result<ListResponse, StoreError> {
        let mut base = vec![TAG_OBJECT];
        base.extend_from_slice(&req.bucket);
        let mut full_prefix = base.clone();
        full_prefix.extend_from_slice(req.prefix.as_bytes());
        let mut seek = full_prefix.clone();
        if let Some(marker) = &req.key_marker {
            let mut marker_key = base.clone();
            marker_key.extend_from_slice(marker.as_bytes());
            if req.version_marker.is_none() {
                marker_key.push(0);
            }
            seek = seek.max(marker_key);
        }
        let mut iter = self.db.raw_iterator();
        iter.seek(&seek);
        let mut items = Vec::new();
        let mut truncated = false;
        'keys: while let (Some(k), Some(v)) = (iter.key(), iter.value()) {
            if !k.starts_with(&full_prefix) {
                break;
            }
            if items.len() == req.limit {
                truncated = true;
                break;
            }
            let key = String::from_utf8_lossy(&k[base.len()..]).into_owned();
            let rolled = req
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| {
                    key[req.prefix.len()..]
                        .find(d)
                        .map(|i| key[..req.prefix.len() + i + d.len()].to_string())
                });
            if let Some(common) = rolled {
                let mut next = base.clone();
                next.extend_from_slice(common.as_bytes());
                next.push(0xFF);
                if req.key_marker.as_deref() < Some(common.as_str()) {
                    items.push(ListItem::Prefix(common));
                }
                iter.seek(&next);
                continue;
            }
            let current: ObjectRecord = serde_json::from_slice(v)?;
            let mut versions = vec![current];
            versions.extend(self.history(&req.bucket, &key)?.into_iter().map(|(_, r)| r));
            let mut skip = 0;
            if let (Some(marker), Some(which)) = (&req.key_marker, req.version_marker) {
                if *marker == key {
                    skip = match versions.iter().position(|r| r.version_ref() == which) {
                        Some(at) => at + 1,
                        None => match which {
                            VersionRef::Id(v) => {
                                versions.iter().take_while(|r| r.version >= v).count()
                            }
                            VersionRef::Null => versions.len(),
                        },
                    };
                }
            }
            for record in &versions[skip..] {
                if items.len() == req.limit {
                    truncated = true;
                    break 'keys;
                }
                items.push(ListItem::Key(ListEntry::of(key.clone(), record)));
            }
            iter.next();
        }
        iter.status()?;
        Ok(ListResponse { items, truncated })
    }

    /// Per-shard digests of a bucket's versions (current and history, delete markers too), by
    /// `shard_of(key)`; shards without any are left out. Used by healing to find the shards a
    /// node differs on without walking every key.
    pub fn digests(
        &self,
        bucket: &BucketId,
        shard_of: impl Fn(&[u8]) -> u32,
    ) -> Result<BTreeMap<u32, ShardDigest>, StoreError> {
        let mut shards: BTreeMap<u32, ShardDigest> = BTreeMap::new();
        self.each_version(bucket, |key, _, record| {
            let complete = record
                .fragment_files()
                .all(|(id, index)| self.fragment_path(id, index).exists());
            let mut hash = blake3::Hasher::new();
            hash.update(&(key.len() as u64).to_le_bytes());
            hash.update(key);
            hash.update(&version_bytes(record.version));
            hash.update(&record.revision.to_le_bytes());
            hash.update(&[u8::from(record.deleted), u8::from(complete)]);
            let shard = shards.entry(shard_of(key)).or_default();
            for (d, h) in shard.digest.iter_mut().zip(hash.finalize().as_bytes()) {
                *d ^= h;
            }
            shard.versions += 1;
        })?;
        Ok(shards)
    }

    /// Per-shard counts of a bucket's objects and versions and their bytes, by `shard_of(key)`;
    /// shards without any are left out. Holders of a shard that are in step give equal counts.
    pub fn usage(
        &self,
        bucket: &BucketId,
        shard_of: impl Fn(&[u8]) -> u32,
    ) -> Result<BTreeMap<u32, ShardUsage>, StoreError> {
        let mut shards: BTreeMap<u32, ShardUsage> = BTreeMap::new();
        self.each_version(bucket, |key, current, record| {
            let shard = shards.entry(shard_of(key)).or_default();
            shard.versions += 1;
            if record.deleted {
                return;
            }
            shard.version_bytes += record.size;
            if current {
                shard.objects += 1;
                shard.bytes += record.size;
            }
        })?;
        Ok(shards)
    }

    /// Calls `f(key, current, record)` for every version of the bucket's keys: the current ones
    /// (`current` true), then those in their histories; delete markers too.
    fn each_version(
        &self,
        bucket: &BucketId,
        mut f: impl FnMut(&[u8], bool, &ObjectRecord),
    ) -> Result<(), StoreError> {
        // A history key ends with a 0 and the version after the object key.
        for (tag, suffix) in [(TAG_OBJECT, 0), (TAG_HISTORY, 1 + VERSION_BYTES)] {
            let prefix = [&[tag][..], bucket].concat();
            for entry in self.db.prefix_iterator(&prefix) {
                let (k, v) = entry?;
                if !k.starts_with(&prefix) {
                    break;
                }
                let Some(key_len) = (k.len() - prefix.len()).checked_sub(suffix) else {
                    continue;
                };
                let record: ObjectRecord = serde_json::from_slice(&v)?;
                f(
                    &k[prefix.len()..prefix.len() + key_len],
                    tag == TAG_OBJECT,
                    &record,
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Version;
    use crate::store::testing::{open, record, v, version_list, versioned, BUCKET};

    #[test]
    fn listings_roll_up_and_keep_tombstones() {
        let (_dir, store) = open();
        for (i, key) in ["a/1", "a/2", "b", "c/1", "d/x"].iter().enumerate() {
            store
                .commit_object(&BUCKET, key, &record(i as u64 + 1, None), None)
                .unwrap();
        }
        store
            .commit_object(
                &BUCKET,
                "b",
                &ObjectRecord::tombstone(
                    Version {
                        micros: 99,
                        salt: 0,
                    },
                    false,
                ),
                None,
            )
            .unwrap();
        store
            .commit_object(
                &BUCKET,
                "d/x",
                &ObjectRecord::tombstone(
                    Version {
                        micros: 99,
                        salt: 0,
                    },
                    false,
                ),
                None,
            )
            .unwrap();
        let list = |start_after: Option<&str>, limit| {
            store
                .list(&ListRequest {
                    bucket: BUCKET,
                    prefix: String::new(),
                    start_after: start_after.map(String::from),
                    delimiter: Some("/".into()),
                    limit,
                })
                .unwrap()
        };
        let all = list(None, 10);
        let names: Vec<&str> = all.items.iter().map(ListItem::name).collect();
        assert_eq!(names, ["a/", "b", "c/"], "tombstoned d/x makes no prefix");
        assert!(matches!(&all.items[1], ListItem::Key(e) if e.deleted));
        assert!(!all.truncated);
        let page = list(None, 1);
        assert!(page.truncated);
        let rest = list(Some("a/"), 10);
        let names: Vec<&str> = rest.items.iter().map(ListItem::name).collect();
        assert_eq!(names, ["b", "c/"], "resuming after a prefix skips its keys");
    }

    #[test]
    fn version_listings_resume_at_markers() {
        let (_dir, store) = open();
        for (key, micros) in [("a", 1), ("a", 2), ("a", 3), ("b", 4), ("c", 5), ("c", 6)] {
            store
                .commit_object(&BUCKET, key, &versioned(micros, None), None)
                .unwrap();
        }
        let page = version_list(&store, None, None, 2);
        assert_eq!(
            page,
            [
                ("a".into(), v(3).to_string()),
                ("a".into(), v(2).to_string())
            ]
        );
        let rest = version_list(&store, Some("a"), Some(VersionRef::Id(v(2))), 10);
        let keys: Vec<&str> = rest.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "c"]);
        assert_eq!(rest[0].1, v(1).to_string());
        let after_a = version_list(&store, Some("a"), None, 10);
        assert_eq!(
            after_a.len(),
            3,
            "a key marker alone skips all of its versions"
        );
    }
}
