//! The version rules of a key: which commit wins, the current record and its history, purged
//! versions, and the version an inline overwrite replaced, kept so that the overwrite can be
//! undone.

use super::keys::{
    history_key, history_prefix, object_key, part_key, purged_key, purged_prefix, replaced_key,
    superseded_key, upload_key, version_from_bytes, TAG_PURGED, VERSION_BYTES,
};
use super::{Store, StoreError};
use crate::object_lock::now_millis;
use crate::protocol::{unix_now, Lookup, Replicate};
use crate::record::{BucketId, ObjectRecord, Version, VersionRef};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A replaced version kept under `TAG_REPLACED`.
#[derive(Serialize, Deserialize)]
pub(super) struct Replaced {
    pub(super) record: ObjectRecord,
    /// When it was replaced, in seconds since the Unix epoch.
    pub(super) at: u64,
}

/// How a lookup takes a record from the JSON this node stores: parsed (`ObjectRecord`), or as
/// it is (`StoredRecord`).
pub trait FromStored: Sized {
    fn from_stored(json: &[u8]) -> Result<Self, StoreError>;
    fn from_record(record: ObjectRecord) -> Result<Self, StoreError>;
    fn version(&self) -> Version;
    /// `ObjectRecord::queued`.
    fn queued(&self) -> bool;
}

impl FromStored for ObjectRecord {
    fn from_stored(json: &[u8]) -> Result<Self, StoreError> {
        Ok(serde_json::from_slice(json)?)
    }

    fn from_record(record: ObjectRecord) -> Result<Self, StoreError> {
        Ok(record)
    }

    fn version(&self) -> Version {
        self.version
    }

    fn queued(&self) -> bool {
        self.queued
    }
}

/// A record as this node stores it, which a lookup answers with as it is: parsing the JSON and
/// writing it again was a sixth of a node's CPU under small GETs, most of it the copies of the
/// inline fragment's base64. Only the fields the node looks at are read from it.
#[derive(Debug)]
pub struct StoredRecord {
    json: Box<RawValue>,
    version: Version,
    queued: bool,
}

/// The fields of a stored record that a lookup looks at (see `ObjectRecord`).
#[derive(Debug, PartialEq, Deserialize)]
struct StoredHead {
    version: Version,
    #[serde(default)]
    queued: bool,
}

impl StoredHead {
    /// The head of a record as this node writes it (`ObjectRecord::to_json`), read without
    /// parsing the record: the version is its first field, and `queued` its last when set (its
    /// key can be nowhere else: quotes inside strings are escaped, and no other object in a
    /// record has a field of that name). Parsing the record for these two fields was a scan of
    /// all of it on top of the one that checks it: `from_stored` took 1.7 µs for the 3 KB record
    /// of a 4 KiB object, 1.0 µs without. `None` for a record laid out otherwise, which is then
    /// parsed.
    fn read(json: &[u8]) -> Option<StoredHead> {
        let rest = json.strip_prefix(br#"{"version":""#)?;
        let (hex, rest) = rest.split_at_checked(24)?;
        if rest.first() != Some(&b'"') {
            return None;
        }
        let version = std::str::from_utf8(hex).ok()?.parse().ok()?;
        let queued = json.ends_with(br#","queued":true}"#);
        if !queued && memchr::memmem::find(json, br#""queued":"#).is_some() {
            return None;
        }
        Some(StoredHead { version, queued })
    }
}

impl FromStored for StoredRecord {
    fn from_stored(json: &[u8]) -> Result<Self, StoreError> {
        let head = match StoredHead::read(json) {
            Some(head) => head,
            None => serde_json::from_slice(json)?,
        };
        Ok(StoredRecord {
            json: serde_json::from_slice::<&RawValue>(json)?.to_owned(),
            version: head.version,
            queued: head.queued,
        })
    }

    fn from_record(record: ObjectRecord) -> Result<Self, StoreError> {
        Ok(StoredRecord {
            json: serde_json::value::to_raw_value(&record)?,
            version: record.version,
            queued: record.queued,
        })
    }

    fn version(&self) -> Version {
        self.version
    }

    fn queued(&self) -> bool {
        self.queued
    }
}

impl Serialize for StoredRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

/// The writes of one commit, kept apart from the batch they go into until the commit has made
/// all of them: the group committer shares one batch among many commits, and RocksDB's save
/// points, which could drop a failed commit's writes from it, are not in the Rust binding.
#[derive(Default)]
pub(super) struct Writes(Vec<(Vec<u8>, Option<Vec<u8>>)>);

impl Writes {
    pub(super) fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.0.push((key.into(), Some(value.into())));
    }

    pub(super) fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.0.push((key.into(), None));
    }

    pub(super) fn add_to(self, batch: &mut WriteBatch) {
        for (key, value) in self.0 {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
    }
}

impl Store {
    /// Records one version of a key (see `commit_locked`). Returns whether it was applied.
    pub fn commit_object(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        upload_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let db_key = object_key(bucket, key);
        let _guard = self.lock_for(&db_key);
        self.commit_locked(bucket, key, record, upload_id, None)
    }

    /// Records one version of a key, with the key's commit lock held:
    /// - a version seen before is only replaced by a higher revision of it (a tag change);
    /// - a version purged here (DeleteObject with `versionId`) is never taken again;
    /// - a `null` version replaces the key's null version wherever it is, unless that is newer;
    /// - the newest version is the key's current record, every other one goes to its history.
    ///
    /// Fragment files of a replaced record are queued for removal (see `remove_superseded`), and
    /// with `replicate`, the version for the peer regions (see `outbox`).
    pub(super) fn commit_locked(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        upload_id: Option<&str>,
        replicate: Option<&Replicate>,
    ) -> Result<bool, StoreError> {
        let Some(writes) = self.prepare_commit(bucket, key, record, upload_id, replicate)? else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        writes.add_to(&mut batch);
        self.write_synced(batch)?;
        Ok(true)
    }

    /// The writes of a commit (see `commit_locked`), with the key's commit lock held; `None`
    /// when the record is not applied. Nothing is written until the caller adds them to a batch,
    /// so that a commit that fails halfway leaves none of its writes in a batch shared with others.
    pub(super) fn prepare_commit(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        upload_id: Option<&str>,
        replicate: Option<&Replicate>,
    ) -> Result<Option<Writes>, StoreError> {
        let mut writes = Writes::default();
        if self
            .db
            .get_pinned(purged_key(bucket, key, record.version))?
            .is_some()
        {
            return Ok(None);
        }
        let db_key = object_key(bucket, key);
        let current: Option<ObjectRecord> = self.get_json(&db_key)?;
        let history = self.history_met(bucket, key, record, current.as_ref())?;
        let stored = || {
            current
                .iter()
                .map(|r| (&db_key, r))
                .chain(history.iter().map(|(k, r)| (k, r)))
        };
        let mut replaced = None;
        if let Some((at, existing)) = stored().find(|(_, r)| r.version == record.version) {
            if existing.revision >= record.revision {
                return Ok(None);
            }
            writes.put(at.as_slice(), record.to_json()?);
            replaced = Some(existing.clone());
        } else {
            if !record.versioned {
                if let Some((at, null)) = stored().find(|(_, r)| !r.versioned) {
                    if null.version > record.version {
                        return Ok(None);
                    }
                    writes.delete(at.as_slice());
                    replaced = Some(null.clone());
                }
            }
            match &current {
                Some(cur) if cur.version > record.version => {
                    writes.put(history_key(bucket, key, record.version), record.to_json()?);
                }
                _ => {
                    if let Some(cur) = current.as_ref().filter(|c| c.versioned || record.versioned)
                    {
                        writes.put(history_key(bucket, key, cur.version), cur.to_json()?);
                    }
                    writes.put(db_key.as_slice(), record.to_json()?);
                }
            }
        }
        if record.has_inline_parts() {
            let kept = replaced.take_if(|old| old.version != record.version && !old.deleted);
            if let Some(old) = kept {
                let at = replaced_key(bucket, key);
                replaced = self.get_json::<Replaced>(&at)?.map(|r| r.record);
                let kept = Replaced {
                    record: old,
                    at: unix_now(),
                };
                writes.put(at, serde_json::to_vec(&kept)?);
            }
        }
        let mut superseded: Vec<(String, u8)> = replaced
            .iter()
            .flat_map(|old| old.fragment_files())
            .map(|(id, index)| (id.to_string(), index))
            .collect();
        if let Some(upload_id) = upload_id {
            writes.delete(upload_key(bucket, upload_id));
            for part in self.parts(upload_id)? {
                writes.delete(part_key(upload_id, part.part.number));
                if part.part.inline.is_none() {
                    superseded.push((part.part.fragment_id, part.slot));
                }
            }
        }
        let kept: Vec<(&str, u8)> = record.fragment_files().collect();
        let now = unix_now();
        for (id, index) in superseded {
            if !kept.contains(&(id.as_str(), index)) {
                writes.put(superseded_key(now, &id, index), b"");
            }
        }
        if let Some(replicate) = replicate {
            self.queue(&mut writes, bucket, key, record, false, replicate)?;
        }
        Ok(Some(writes))
    }

    /// The key's current record: its newest version (possibly a delete marker or tombstone).
    pub fn object(&self, bucket: &BucketId, key: &str) -> Result<Option<ObjectRecord>, StoreError> {
        self.get_json(&object_key(bucket, key))
    }

    /// The key's current record, with the versions purged here that are newer than it.
    pub fn current<R: FromStored>(
        &self,
        bucket: &BucketId,
        key: &str,
    ) -> Result<Lookup<R>, StoreError> {
        let record = match self.db.get_pinned(object_key(bucket, key))? {
            Some(json) => Some(R::from_stored(&json)?),
            None => None,
        };
        let prefix = purged_prefix(bucket, key);
        let mut purged = Vec::new();
        // Scanned only when its marker says there is something to find (see `TAG_PURGED`).
        let marked = self.db.get_pinned(&prefix)?.is_some();
        for entry in marked
            .then(|| self.db.prefix_iterator(&prefix))
            .into_iter()
            .flatten()
        {
            let (k, _) = entry?;
            if !k.starts_with(&prefix) {
                break;
            }
            let Some(version) = (k.len() == prefix.len() + VERSION_BYTES)
                .then(|| version_from_bytes(&k[prefix.len()..]))
            else {
                continue;
            };
            // Newest first: the rest are older than the current record too.
            if record.as_ref().is_some_and(|r| r.version() > version) {
                break;
            }
            purged.push(version);
        }
        Ok(Lookup {
            record,
            purged,
            fragment_len: None,
            outbox: None,
        })
    }

    /// One version of a key, or whether it was purged here.
    pub fn object_version(
        &self,
        bucket: &BucketId,
        key: &str,
        which: VersionRef,
    ) -> Result<Lookup, StoreError> {
        if let VersionRef::Id(version) = which {
            if self
                .db
                .get_pinned(purged_key(bucket, key, version))?
                .is_some()
            {
                return Ok(Lookup {
                    record: None,
                    purged: vec![version],
                    fragment_len: None,
                    outbox: None,
                });
            }
        }
        let record = self
            .versions(bucket, key)?
            .into_iter()
            .find(|r| r.version_ref() == which);
        Ok(Lookup {
            record,
            purged: Vec::new(),
            fragment_len: None,
            outbox: None,
        })
    }

    /// Every version of a key this node has, newest first.
    fn versions(&self, bucket: &BucketId, key: &str) -> Result<Vec<ObjectRecord>, StoreError> {
        let mut versions: Vec<ObjectRecord> = self.object(bucket, key)?.into_iter().collect();
        versions.extend(self.history(bucket, key)?.into_iter().map(|(_, r)| r));
        Ok(versions)
    }

    /// The part of a key's history that a commit of `record` can meet, given the key's current
    /// record: a record of the same version, and the null version when that is not current.
    /// A key has at most one null version and no history without a current record, so only a
    /// null record over a versioned current one needs the whole history; otherwise a point
    /// lookup, which the SST filters mostly answer, replaces a scan that was 5% of a node's CPU
    /// under small PUTs.
    fn history_met(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        current: Option<&ObjectRecord>,
    ) -> Result<Vec<(Vec<u8>, ObjectRecord)>, StoreError> {
        if !record.versioned && current.is_some_and(|c| c.versioned) {
            return self.history(bucket, key);
        }
        let at = history_key(bucket, key, record.version);
        Ok(self.get_json(&at)?.map(|r| (at, r)).into_iter().collect())
    }

    /// The non-current versions of a key with their database keys, newest first.
    pub(super) fn history(
        &self,
        bucket: &BucketId,
        key: &str,
    ) -> Result<Vec<(Vec<u8>, ObjectRecord)>, StoreError> {
        let prefix = history_prefix(bucket, key);
        let mut out = Vec::new();
        for entry in self.db.prefix_iterator(&prefix) {
            let (k, v) = entry?;
            if !k.starts_with(&prefix) {
                break;
            }
            // Longer keys under this prefix belong to another key that starts with `key\0`.
            if k.len() == prefix.len() + VERSION_BYTES {
                out.push((k.to_vec(), serde_json::from_slice(&v)?));
            }
        }
        Ok(out)
    }

    /// Deletes one version of a key for good (DeleteObject with `versionId`): the next newest
    /// becomes current if it was current, and the version is remembered as purged so that a late
    /// or repeated commit of it is refused. Returns the record removed, if this node had it.
    /// A version that Object Lock protects by this node's clock is refused (`StoreError::Locked`).
    pub fn purge(
        &self,
        bucket: &BucketId,
        key: &str,
        which: VersionRef,
        bypass_governance: bool,
        replicate: Option<&Replicate>,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let db_key = object_key(bucket, key);
        let _guard = self.lock_for(&db_key);
        let current: Option<ObjectRecord> = self.get_json(&db_key)?;
        let history = self.history(bucket, key)?;
        let now = now_millis();
        let locked = current
            .iter()
            .chain(history.iter().map(|(_, r)| r))
            .filter(|r| r.version_ref() == which)
            .any(|r| r.lock.protection(now, bypass_governance).is_some());
        if locked {
            return Err(StoreError::Locked);
        }
        let mut batch = WriteBatch::default();
        let target = match current.as_ref().filter(|c| c.version_ref() == which) {
            Some(cur) => {
                match history.first() {
                    Some((at, next)) => {
                        batch.delete(at);
                        batch.put(&db_key, next.to_json()?);
                    }
                    None => batch.delete(&db_key),
                }
                Some(cur.clone())
            }
            None => history
                .into_iter()
                .find(|(_, r)| r.version_ref() == which)
                .map(|(at, r)| {
                    batch.delete(at);
                    r
                }),
        };
        let purged = match (&target, which) {
            (Some(r), _) => Some(r.version),
            (None, VersionRef::Id(v)) => Some(v),
            (None, VersionRef::Null) => None,
        };
        if let Some(version) = purged {
            mark_purged(&mut batch, bucket, key, version);
        }
        if let (Some(replicate), Some(record)) = (replicate, &target) {
            let mut writes = Writes::default();
            self.queue(&mut writes, bucket, key, record, true, replicate)?;
            writes.add_to(&mut batch);
        }
        self.write_synced(batch)?;
        if let Some(record) = &target {
            self.remove_fragments(record)?;
        }
        Ok(target)
    }

    /// Undoes an inline overwrite that never reached enough holders to be read: when `version`
    /// is the key's current record, applied here before `settled` (seconds since the Unix epoch,
    /// so that a write still in progress is left alone), and the version it replaced is kept,
    /// that version is current again and `version` is remembered as purged, so that a late copy
    /// is refused. Returns whether it was undone.
    pub fn undo(
        &self,
        bucket: &BucketId,
        key: &str,
        version: Version,
        settled: u64,
    ) -> Result<bool, StoreError> {
        let db_key = object_key(bucket, key);
        let _guard = self.lock_for(&db_key);
        let current: Option<ObjectRecord> = self.get_json(&db_key)?;
        let kept: Option<Replaced> = self.get_json(&replaced_key(bucket, key))?;
        let (Some(current), Some(kept)) = (current, kept) else {
            return Ok(false);
        };
        if current.version != version || kept.record.version >= version || kept.at > settled {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        mark_purged(&mut batch, bucket, key, version);
        batch.delete(replaced_key(bucket, key));
        batch.put(&db_key, kept.record.to_json()?);
        self.write_synced(batch)?;
        self.remove_fragments(&current)?;
        Ok(true)
    }

    /// Writes the marker of every key with purged versions, in a data dir of a format before 4
    /// whose purges wrote none (see `TAG_PURGED`).
    pub(super) fn mark_purged_keys(&self) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        let mut last: Option<Vec<u8>> = None;
        for entry in self.db.prefix_iterator([TAG_PURGED]) {
            let (k, _) = entry?;
            if k.first() != Some(&TAG_PURGED) {
                break;
            }
            // A purged version's key is its key's marker and the version. The markers are
            // written in one batch, so a data dir of an earlier format has none yet.
            let Some(marker) = k.len().checked_sub(VERSION_BYTES).map(|end| &k[..end]) else {
                continue;
            };
            if last.as_deref() != Some(marker) {
                batch.put(marker, b"");
                last = Some(marker.to_vec());
            }
        }
        self.write_synced(batch)
    }

    /// The newest version of a key older than `version` that this node has, the kept replaced
    /// version included: what readers go back to when `version` cannot be read.
    pub fn object_before(
        &self,
        bucket: &BucketId,
        key: &str,
        version: Version,
    ) -> Result<Lookup, StoreError> {
        let kept = self.get_json::<Replaced>(&replaced_key(bucket, key))?;
        let record = self
            .versions(bucket, key)?
            .into_iter()
            .chain(kept.map(|k| k.record))
            .filter(|r| r.version < version)
            .max_by_key(|r| r.version);
        Ok(Lookup {
            record,
            purged: Vec::new(),
            fragment_len: None,
            outbox: None,
        })
    }
}

/// Remembers `version` of a key as purged, with the marker that tells readers the key has purged
/// versions (see `TAG_PURGED`).
fn mark_purged(batch: &mut WriteBatch, bucket: &BucketId, key: &str, version: Version) {
    batch.put(purged_prefix(bucket, key), b"");
    batch.put(purged_key(bucket, key, version), b"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fragment_id;
    use crate::store::testing::{open, record, v, version_list, versioned, write_fragment, BUCKET};

    #[test]
    fn newer_versions_win_and_superseded_files_go() {
        let (dir, store) = open();
        let old_id = fragment_id(&[b"old"]);
        write_fragment(&store, &old_id);
        assert!(store
            .commit_object(&BUCKET, "k", &record(10, Some(&old_id)), None)
            .unwrap());
        assert!(!store
            .commit_object(&BUCKET, "k", &record(5, None), None)
            .unwrap());
        assert_eq!(
            store.object(&BUCKET, "k").unwrap().unwrap().version.micros,
            10
        );
        assert!(store.fragment_path(&old_id, 1).exists());
        let new_id = fragment_id(&[b"new"]);
        write_fragment(&store, &new_id);
        assert!(store
            .commit_object(&BUCKET, "k", &record(20, Some(&new_id)), None)
            .unwrap());
        // Kept for the reads that found the old version, until the sweep's cutoff passes it.
        assert!(store.fragment_path(&old_id, 1).exists());
        assert_eq!(store.remove_superseded(unix_now() - 60).unwrap(), 0);
        assert!(store.fragment_path(&old_id, 1).exists());
        assert_eq!(store.remove_superseded(unix_now() + 1).unwrap(), 1);
        assert!(
            !store.fragment_path(&old_id, 1).exists(),
            "replaced fragment removed"
        );
        drop(store);
        let reopened = Store::open(dir.path(), "test").unwrap();
        assert_eq!(
            reopened
                .object(&BUCKET, "k")
                .unwrap()
                .unwrap()
                .version
                .micros,
            20
        );
    }

    #[test]
    fn an_inline_overwrite_keeps_what_it_replaced_until_undone_or_expired() {
        let (_dir, store) = open();
        let commit = |r: ObjectRecord| store.commit_object(&BUCKET, "k", &r, None).unwrap();
        let version = |micros| Version { micros, salt: 0 };
        let before = |micros| {
            let lookup = store.object_before(&BUCKET, "k", version(micros)).unwrap();
            lookup.record.map(|r| r.version.micros)
        };
        let id = fragment_id(&[b"kept"]);
        write_fragment(&store, &id);
        assert!(commit(record(10, Some(&id))));
        assert!(commit(record(20, None)));
        assert!(store.fragment_path(&id, 1).exists(), "kept for an undo");
        assert_eq!((before(20), before(10)), (Some(10), None));

        let settled = unix_now();
        assert!(
            !store.undo(&BUCKET, "k", version(20), settled - 60).unwrap(),
            "too recent"
        );
        assert!(
            !store.undo(&BUCKET, "k", version(10), settled).unwrap(),
            "not current"
        );
        assert!(store.undo(&BUCKET, "k", version(20), settled).unwrap());
        let current = store.object(&BUCKET, "k").unwrap().unwrap();
        assert_eq!(current.version.micros, 10, "the replaced version is back");
        assert!(!commit(record(20, None)), "an undone version stays undone");

        assert!(commit(record(30, None)));
        assert_eq!(store.expire_replaced(0).unwrap(), 0);
        assert!(store.fragment_path(&id, 1).exists());
        assert_eq!(store.expire_replaced(unix_now() + 1).unwrap(), 1);
        assert!(
            !store.fragment_path(&id, 1).exists(),
            "expired with its files"
        );
        assert_eq!(before(30), None);
    }

    #[test]
    fn a_commit_finds_its_version_in_a_history_newer_than_the_current_record() {
        let (_dir, store) = open();
        let commit = |r: ObjectRecord| store.commit_object(&BUCKET, "k", &r, None).unwrap();
        // Null 10, then versioned 20, then (suspended) an inline null 30 that replaces null 10
        // and is undone: null 10 is current again, with the newer version 20 in the history.
        assert!(commit(record(10, None)));
        assert!(commit(versioned(20, None)));
        assert!(commit(record(30, None)));
        assert!(store.undo(&BUCKET, "k", v(30), unix_now()).unwrap());
        assert_eq!(store.object(&BUCKET, "k").unwrap().unwrap().version, v(10));

        assert!(!commit(versioned(20, None)), "a repeated commit is ignored");
        let mut retagged = versioned(20, None);
        retagged.revision = 1;
        retagged.tags = vec![("t".into(), "1".into())];
        assert!(commit(retagged));
        let versions = store.versions(&BUCKET, "k").unwrap();
        assert_eq!(versions.len(), 2, "no second copy of version 20");
        let twenty = versions.iter().find(|r| r.version == v(20)).unwrap();
        assert_eq!(twenty.tags.len(), 1, "replaced in the history");
        assert_eq!(store.object(&BUCKET, "k").unwrap().unwrap().version, v(10));
    }

    #[test]
    fn versions_keep_history_and_null_is_replaced() {
        let (_dir, store) = open();
        let null_id = fragment_id(&[b"null"]);
        write_fragment(&store, &null_id);
        // Unversioned write, then two versioned ones: the null version stays in the history.
        assert!(store
            .commit_object(&BUCKET, "k", &record(10, Some(&null_id)), None)
            .unwrap());
        assert!(store
            .commit_object(&BUCKET, "k", &versioned(20, None), None)
            .unwrap());
        assert!(store
            .commit_object(&BUCKET, "k", &versioned(30, None), None)
            .unwrap());
        // A late versioned commit goes to the history; a repeated one is ignored.
        assert!(store
            .commit_object(&BUCKET, "k", &versioned(25, None), None)
            .unwrap());
        assert!(!store
            .commit_object(&BUCKET, "k", &versioned(25, None), None)
            .unwrap());
        let ids = |store: &Store| -> Vec<String> {
            version_list(store, None, None, 100)
                .into_iter()
                .map(|(_, id)| id)
                .collect()
        };
        assert_eq!(
            ids(&store),
            [
                v(30).to_string(),
                v(25).to_string(),
                v(20).to_string(),
                "null".into()
            ]
        );
        assert!(store.fragment_path(&null_id, 1).exists());
        // Suspended: a new null version replaces the old one, wherever it is, and its fragments.
        let new_null_id = fragment_id(&[b"null2"]);
        write_fragment(&store, &new_null_id);
        assert!(store
            .commit_object(&BUCKET, "k", &record(40, Some(&new_null_id)), None)
            .unwrap());
        store.remove_superseded(unix_now() + 1).unwrap();
        assert!(
            !store.fragment_path(&null_id, 1).exists(),
            "old null version's fragment removed"
        );
        assert_eq!(
            ids(&store),
            [
                "null".to_string(),
                v(30).to_string(),
                v(25).to_string(),
                v(20).to_string()
            ]
        );
        assert!(
            !store
                .commit_object(&BUCKET, "k", &record(35, None), None)
                .unwrap(),
            "older null loses"
        );
        // A newer revision of a version (a tag change) replaces it in place.
        let mut retagged = versioned(25, None);
        retagged.revision = 1;
        retagged.tags = vec![("t".into(), "1".into())];
        assert!(store.commit_object(&BUCKET, "k", &retagged, None).unwrap());
        let found = store
            .object_version(&BUCKET, "k", VersionRef::Id(v(25)))
            .unwrap();
        assert_eq!(found.record.unwrap().tags.len(), 1);
        assert_eq!(store.object(&BUCKET, "k").unwrap().unwrap().version, v(40));
        assert!(store
            .object_version(&BUCKET, "k", VersionRef::Id(v(26)))
            .unwrap()
            .record
            .is_none());
        // A key that starts with "k\0" keeps its own history.
        assert!(store
            .commit_object(&BUCKET, "k\0x", &versioned(50, None), None)
            .unwrap());
        assert!(store
            .commit_object(&BUCKET, "k\0x", &versioned(60, None), None)
            .unwrap());
        assert_eq!(store.versions(&BUCKET, "k").unwrap().len(), 4);
    }

    #[test]
    fn a_holder_refuses_to_purge_a_locked_version() {
        use crate::object_lock::{now_millis, LockMode, ObjectLock, Retention};
        let (_dir, store) = open();
        let hour = now_millis() + 3_600_000;
        let locks = [
            (10, Some(LockMode::Compliance), None),
            (20, Some(LockMode::Governance), None),
            (30, None, Some(true)),
            (40, Some(LockMode::Compliance), Some(false)),
        ];
        for (micros, mode, legal_hold) in locks {
            let record = ObjectRecord {
                lock: ObjectLock {
                    retention: mode.map(|mode| Retention { mode, until: hour }),
                    legal_hold,
                },
                ..versioned(micros, None)
            };
            store.commit_object(&BUCKET, "k", &record, None).unwrap();
        }
        for micros in [10, 30, 40] {
            for bypass in [false, true] {
                let purge = store.purge(&BUCKET, "k", VersionRef::Id(v(micros)), bypass, None);
                assert!(matches!(purge, Err(StoreError::Locked)), "{micros}");
            }
        }
        assert!(matches!(
            store.purge(&BUCKET, "k", VersionRef::Id(v(20)), false, None),
            Err(StoreError::Locked)
        ));
        assert!(store
            .purge(&BUCKET, "k", VersionRef::Id(v(20)), true, None)
            .unwrap()
            .is_some());
        assert_eq!(store.versions(&BUCKET, "k").unwrap().len(), 3);
        let expired = ObjectRecord {
            lock: ObjectLock {
                retention: Some(Retention {
                    mode: LockMode::Compliance,
                    until: now_millis() - 1,
                }),
                legal_hold: Some(false),
            },
            ..versioned(50, None)
        };
        store.commit_object(&BUCKET, "k", &expired, None).unwrap();
        assert!(store
            .purge(&BUCKET, "k", VersionRef::Id(v(50)), false, None)
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_stored_records_head_is_read_as_parsed_or_left_to_the_parser() {
        let parsed = |json: &[u8]| serde_json::from_slice::<StoredHead>(json).unwrap();
        let mut record = versioned(20, None);
        record.tags = vec![("\"queued\":".into(), "true}".into())];
        for queued in [false, true] {
            record.queued = queued;
            let json = record.to_json().unwrap();
            assert_eq!(StoredHead::read(&json), Some(parsed(&json)));
            assert_eq!(StoredHead::read(&json).unwrap().queued, queued);
        }
        let version = v(20).to_string();
        for json in [
            format!(r#"{{"queued":true,"version":"{version}"}}"#),
            format!(r#"{{"version":"{version}","queued":true,"size":1}}"#),
            format!(r#"{{"size":1,"version":"{version}"}}"#),
            format!(r#"{{"version": "{version}"}}"#),
        ] {
            assert_eq!(StoredHead::read(json.as_bytes()), None, "{json}");
        }
    }

    #[test]
    fn stored_records_answer_as_parsed_ones() {
        let (_dir, store) = open();
        /// What the gateway reads from a lookup the node sends.
        fn sent<R: Serialize>(lookup: &Lookup<R>) -> serde_json::Value {
            let read: Lookup =
                serde_json::from_slice(&serde_json::to_vec(lookup).unwrap()).unwrap();
            serde_json::to_value(read).unwrap()
        }
        let same = |store: &Store| {
            let parsed = store.current::<ObjectRecord>(&BUCKET, "k").unwrap();
            let stored = store.current::<StoredRecord>(&BUCKET, "k").unwrap();
            assert_eq!(sent(&stored), sent(&parsed));
            let (parsed, stored) = (parsed.record.unwrap(), stored.record.unwrap());
            assert_eq!(stored.version(), parsed.version);
            assert_eq!(stored.queued(), parsed.queued);
        };
        let mut queued = versioned(20, None);
        queued.queued = true;
        queued.tags = vec![("quoted \"tag\"".into(), "line\nbreak".into())];
        for record in [versioned(10, None), queued] {
            store.commit_object(&BUCKET, "k", &record, None).unwrap();
        }
        same(&store);
        store
            .purge(&BUCKET, "k", VersionRef::Id(v(20)), false, None)
            .unwrap();
        assert_eq!(
            store.current::<StoredRecord>(&BUCKET, "k").unwrap().purged,
            [v(20)]
        );
        same(&store);
    }

    #[test]
    fn readers_go_by_the_purge_marker_which_an_earlier_format_gets_when_opened() {
        let (dir, store) = open();
        for micros in [10, 20] {
            store
                .commit_object(&BUCKET, "k", &versioned(micros, None), None)
                .unwrap();
        }
        store
            .purge(&BUCKET, "k", VersionRef::Id(v(20)), false, None)
            .unwrap()
            .unwrap();
        let purged = |store: &Store| store.current::<ObjectRecord>(&BUCKET, "k").unwrap().purged;
        assert_eq!(purged(&store), [v(20)]);
        // As a release before format 4 left it: the purge without its marker.
        store.db.delete(purged_prefix(&BUCKET, "k")).unwrap();
        assert!(purged(&store).is_empty(), "readers scan only marked keys");
        drop(store);
        let format = dir.path().join("format");
        std::fs::write(&format, "tessera-store-format 3\n").unwrap();
        let store = Store::open(dir.path(), "test").unwrap();
        assert_eq!(purged(&store), [v(20)]);
        let recorded = std::fs::read_to_string(&format).unwrap();
        assert_eq!(
            recorded,
            format!("tessera-store-format {}\n", super::super::format::CURRENT)
        );
    }

    #[test]
    fn purged_versions_go_for_good() {
        let (_dir, store) = open();
        let id = fragment_id(&[b"v20"]);
        write_fragment(&store, &id);
        for micros in [10, 20] {
            let frag = (micros == 20).then_some(id.as_str());
            store
                .commit_object(&BUCKET, "k", &versioned(micros, frag), None)
                .unwrap();
        }
        store
            .commit_object(&BUCKET, "k", &ObjectRecord::tombstone(v(30), true), None)
            .unwrap();
        // Purging the current delete marker makes the next newest current again.
        let removed = store
            .purge(&BUCKET, "k", VersionRef::Id(v(30)), false, None)
            .unwrap()
            .unwrap();
        assert!(removed.deleted);
        assert_eq!(store.object(&BUCKET, "k").unwrap().unwrap().version, v(20));
        assert!(store
            .purge(&BUCKET, "k", VersionRef::Id(v(20)), false, None)
            .unwrap()
            .is_some());
        assert!(!store.fragment_path(&id, 1).exists());
        assert!(
            !store
                .commit_object(&BUCKET, "k", &versioned(20, None), None)
                .unwrap(),
            "a purged version never comes back"
        );
        assert_eq!(
            store
                .object_version(&BUCKET, "k", VersionRef::Id(v(20)))
                .unwrap()
                .purged,
            [v(20)]
        );
        assert_eq!(
            store.current::<ObjectRecord>(&BUCKET, "k").unwrap().purged,
            [v(30), v(20)],
            "purged versions newer than the current one"
        );
        assert!(store
            .purge(&BUCKET, "k", VersionRef::Null, false, None)
            .unwrap()
            .is_none());
        assert!(store
            .purge(&BUCKET, "k", VersionRef::Id(v(10)), false, None)
            .unwrap()
            .is_some());
        assert!(
            store.object(&BUCKET, "k").unwrap().is_none(),
            "no versions left"
        );
        assert!(version_list(&store, None, None, 10).is_empty());
    }
}
