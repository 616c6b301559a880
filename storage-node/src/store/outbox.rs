//! The outbox: changes made in this region to a bucket that replicates, queued for each target
//! region in the same synced write as the change itself (a crash keeps both or neither), and
//! removed only when a drainer reports that the target has them. Every holder of a change keeps
//! its own copy of the entry under the same key, so that any of them can be drained.
//!
//! Beside each entry, the version's state (`TAG_OUTBOX_STATE`): the targets it is still queued for
//! and the last refusal, which a lookup returns with the record (`x-amz-replication-status`).

use super::keys::{
    history_key, object_key, outbox_key, outbox_prefix, outbox_state_key, parse_outbox_key,
};
use super::versions::Writes;
use super::{Store, StoreError};
use crate::protocol::{
    BucketBacklog, OutboxItem, OutboxPage, OutboxReport, OutboxRequest, OutboxState, Replicate,
};
use crate::record::{BucketId, ListEntry, ObjectRecord, Version};
use rocksdb::{Direction, IteratorMode, WriteBatch};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An outbox entry's value.
#[derive(Serialize, Deserialize)]
struct Queued {
    bucket: String,
    entry: ListEntry,
    #[serde(default)]
    revision: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    purge: bool,
}

impl Store {
    /// Adds to a change's writes its outbox entry for each target, and the version's state. A
    /// purge of a version replaces the version's own entry, if it is still queued: the target
    /// needs only the purge.
    pub(super) fn queue(
        &self,
        writes: &mut Writes,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        purge: bool,
        replicate: &Replicate,
    ) -> Result<(), StoreError> {
        let queued = serde_json::to_vec(&Queued {
            bucket: replicate.bucket.clone(),
            entry: ListEntry::of(key.to_string(), record),
            revision: record.revision,
            purge,
        })?;
        for target in &replicate.targets {
            writes.put(
                outbox_key(target, record.version, bucket, key),
                queued.clone(),
            );
        }
        let at = outbox_state_key(bucket, key, record.version);
        let mut state: OutboxState = self.get_json(&at)?.unwrap_or_default();
        for target in &replicate.targets {
            if !state.targets.contains(target) {
                state.targets.push(target.clone());
            }
        }
        state.failed = None;
        writes.put(at, serde_json::to_vec(&state)?);
        Ok(())
    }

    /// The targets a version is still queued for here, if any.
    pub fn outbox_state(
        &self,
        bucket: &BucketId,
        key: &str,
        version: Version,
    ) -> Result<Option<OutboxState>, StoreError> {
        self.get_json(&outbox_state_key(bucket, key, version))
    }

    /// The first entries queued for a target (after `request.after`), oldest version first, and
    /// with `count`, the backlog per bucket from there on (without `after`, the whole backlog:
    /// a scan of every entry for the target).
    pub fn outbox(&self, request: &OutboxRequest) -> Result<OutboxPage, StoreError> {
        let prefix = outbox_prefix(&request.target);
        let after = (request.after.as_deref())
            .and_then(|id| hex::decode(id).ok())
            .filter(|id| id.starts_with(&prefix));
        let mut page = OutboxPage::default();
        let mut backlog: BTreeMap<String, BucketBacklog> = BTreeMap::new();
        let start = after.as_deref().unwrap_or(&prefix);
        for entry in self
            .db
            .iterator(IteratorMode::From(start, Direction::Forward))
        {
            let (k, v) = entry?;
            if !k.starts_with(&prefix) {
                break;
            }
            if after.as_deref() == Some(&*k) {
                continue;
            }
            let full = page.items.len() >= request.limit;
            if full && !request.count {
                break;
            }
            let queued: Queued = serde_json::from_slice(&v)?;
            if request.count {
                let counted = backlog.entry(queued.bucket.clone()).or_default();
                counted.entries += 1;
                if !queued.purge && !queued.entry.deleted {
                    counted.bytes += queued.entry.size;
                }
            }
            if !full {
                let record = match request.records && !queued.purge && !queued.entry.deleted {
                    true => self.queued_record(&prefix, &k)?,
                    false => None,
                };
                page.items.push(OutboxItem {
                    id: hex::encode(&k),
                    bucket: queued.bucket,
                    entry: queued.entry,
                    revision: queued.revision,
                    purge: queued.purge,
                    record,
                });
            }
        }
        if request.count {
            page.backlog = Some(
                backlog
                    .into_iter()
                    .map(|(bucket, mut b)| {
                        b.bucket = bucket;
                        b
                    })
                    .collect(),
            );
        }
        Ok(page)
    }

    /// This holder's record of the version that the outbox entry at `at` is for, if it keeps
    /// that version with every part's fragment inside the record, from one of its k data slots:
    /// what a drainer needs to send it without a lookup (`OutboxRequest::records`). The data
    /// slots are the object's bytes as they are, and k of them are all a drainer needs: the
    /// holders of parity slots send none, which spares them the reads.
    fn queued_record(&self, prefix: &[u8], at: &[u8]) -> Result<Option<ObjectRecord>, StoreError> {
        let Some((version, bucket, key)) = parse_outbox_key(prefix, at) else {
            return Ok(None);
        };
        let record = match self.object(&bucket, key)? {
            Some(current) if current.version == version => Some(current),
            _ => self.get_json::<ObjectRecord>(&history_key(&bucket, key, version))?,
        };
        Ok(record.filter(|r| {
            let inline = r.parts.iter().all(|p| p.inline.is_some());
            r.version == version && !r.deleted && inline && r.slot < r.data_shards
        }))
    }

    /// Removes the entries delivered to the target and notes the refusals, with one synced write.
    /// Ids that name no entry of the target here (removed already, or never queued here) are
    /// passed over: every node is told, whether or not it has the entry. An entry queued again
    /// since it was read (a later revision, or a purge of its version) stays.
    pub fn outbox_report(&self, report: &OutboxReport) -> Result<(), StoreError> {
        let prefix = outbox_prefix(&report.target);
        let delivered = (report.delivered.iter()).map(|d| (&d.id, Ok(d)));
        let failed = (report.failed.iter()).map(|(id, error)| (id, Err(error)));
        let mut changes = Vec::new();
        for (id, outcome) in delivered.chain(failed) {
            let Ok(at) = hex::decode(id) else { continue };
            let Some((version, bucket, key)) = parse_outbox_key(&prefix, &at) else {
                continue;
            };
            let state = outbox_state_key(&bucket, key, version);
            changes.push((object_key(&bucket, key), at.clone(), state, outcome));
        }
        // The keys' commit locks, taken in order, so that a commit queueing a version again
        // cannot come between the reads here and the write.
        let mut stripes: Vec<usize> = changes.iter().map(|c| self.stripe(&c.0)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let _guards: Vec<_> = (stripes.iter())
            .map(|&i| self.locks[i].lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut batch = WriteBatch::default();
        let mut states: BTreeMap<Vec<u8>, Option<OutboxState>> = BTreeMap::new();
        for (_, at, state_key, outcome) in changes {
            let Some(queued) = self.get_json::<Queued>(&at)? else {
                continue;
            };
            let state = match states.get_mut(&state_key) {
                Some(state) => state,
                None => {
                    let read = self.get_json(&state_key)?;
                    states.entry(state_key).or_insert(read)
                }
            };
            match outcome {
                Ok(done) if done.purge == queued.purge && done.revision >= queued.revision => {
                    batch.delete(&at);
                    if let Some(s) = state.as_mut() {
                        s.targets.retain(|t| *t != report.target);
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    if let Some(s) = state.as_mut() {
                        s.failed = Some(format!("{}: {error}", report.target));
                    }
                }
            }
        }
        for (state_key, state) in states {
            match state {
                Some(s) if s.targets.is_empty() => batch.delete(state_key),
                Some(s) => batch.put(state_key, serde_json::to_vec(&s)?),
                None => {}
            }
        }
        if !batch.is_empty() {
            self.write_synced(batch)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::VersionRef;
    use crate::store::testing::{open, record, v, versioned, write_fragment, BUCKET};

    fn replicate(targets: &[&str]) -> Replicate {
        Replicate {
            bucket: "photos".into(),
            targets: targets.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn page(store: &Store, target: &str) -> OutboxPage {
        let request = OutboxRequest {
            target: target.into(),
            limit: 10,
            after: None,
            count: true,
            records: false,
        };
        store.outbox(&request).unwrap()
    }

    fn report(store: &Store, target: &str, delivered: &[&OutboxItem], failed: &[&OutboxItem]) {
        let report = OutboxReport {
            target: target.into(),
            delivered: delivered.iter().map(|i| i.delivered()).collect(),
            failed: (failed.iter())
                .map(|i| (i.id.clone(), "NoSuchBucket".into()))
                .collect(),
        };
        store.outbox_report(&report).unwrap();
    }

    #[test]
    fn a_commit_is_queued_for_each_target_until_each_has_it() {
        let (_dir, store) = open();
        let both = replicate(&["eu", "ap"]);
        let commit = |key, micros| {
            let job =
                store.submit_commit(BUCKET, key, record(micros, None), None, Some(both.clone()));
            job.blocking_recv().unwrap().unwrap()
        };
        assert!(commit("b".to_string(), 20));
        assert!(commit("a".to_string(), 10));
        assert!(store
            .commit_object(&BUCKET, "local", &record(30, None), None)
            .unwrap());

        let eu = page(&store, "eu");
        let keys: Vec<&str> = eu.items.iter().map(|i| i.entry.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"], "oldest version first, nothing unqueued");
        let backlog = eu.backlog.unwrap();
        assert_eq!(
            (backlog[0].entries, backlog[0].bucket.as_str()),
            (2, "photos")
        );
        let state = |key| store.outbox_state(&BUCKET, key, v(if key == "a" { 10 } else { 20 }));
        assert_eq!(state("a").unwrap().unwrap().targets, ["eu", "ap"]);

        report(&store, "eu", &[&eu.items[0]], &[&eu.items[1]]);
        assert_eq!(state("a").unwrap().unwrap().targets, ["ap"]);
        let b = state("b").unwrap().unwrap();
        assert_eq!(b.failed.as_deref(), Some("eu: NoSuchBucket"));
        assert_eq!(
            page(&store, "eu").items.len(),
            1,
            "a refusal keeps the entry"
        );
        let next = OutboxRequest {
            target: "ap".into(),
            limit: 10,
            after: Some(page(&store, "ap").items[0].id.clone()),
            count: false,
            records: false,
        };
        let ap_after = store.outbox(&next).unwrap().items;
        assert_eq!(ap_after.len(), 1, "only the entry after the one given");
        assert_eq!(ap_after[0].entry.key, "b");

        let ap = page(&store, "ap");
        report(&store, "ap", &[&ap.items[0], &ap.items[1]], &[]);
        assert_eq!(state("a").unwrap(), None, "delivered everywhere");
        // A report of what is gone already changes nothing.
        report(&store, "ap", &[&ap.items[0]], &[]);
        assert_eq!(state("b").unwrap().unwrap().targets, ["eu"]);
    }

    #[test]
    fn a_listing_with_records_carries_the_holders_record_of_each_inline_version() {
        let (_dir, store) = open();
        let eu = replicate(&["eu"]);
        let commit = |key: &str, record| {
            let job = store.submit_commit(BUCKET, key.into(), record, None, Some(eu.clone()));
            assert!(job.blocking_recv().unwrap().unwrap());
        };
        commit("inline", record(10, None));
        commit("overwritten", record(20, None));
        commit("overwritten", record(30, None));
        let file = "0123456789abcdef0123456789abcdef";
        write_fragment(&store, file);
        commit("file", record(40, Some(file)));
        commit("versioned", versioned(50, None));
        commit("versioned", versioned(60, None));
        let parity = ObjectRecord {
            slot: 4,
            ..record(70, None)
        };
        commit("parity", parity);
        let request = OutboxRequest {
            target: "eu".into(),
            limit: 10,
            after: None,
            count: false,
            records: true,
        };
        let items = store.outbox(&request).unwrap().items;
        let listed: Vec<(&str, u64, Option<u64>)> = (items.iter())
            .map(|i| {
                let record = i.record.as_ref().map(|r| r.version.micros);
                (i.entry.key.as_str(), i.entry.version.micros, record)
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("inline", 10, Some(10)),
                ("overwritten", 20, None),
                ("overwritten", 30, Some(30)),
                ("file", 40, None),
                ("versioned", 50, Some(50)),
                ("versioned", 60, Some(60)),
                ("parity", 70, None),
            ],
            "the exact version, current or not, only with its data inside, from a data slot"
        );
        let plain = OutboxRequest {
            records: false,
            ..request
        };
        let items = store.outbox(&plain).unwrap().items;
        assert!(items.iter().all(|i| i.record.is_none()));
    }

    #[test]
    fn an_entry_queued_again_since_it_was_read_stays() {
        let (_dir, store) = open();
        let eu = replicate(&["eu"]);
        let commit = |record| {
            let job = store.submit_commit(BUCKET, "k".into(), record, None, Some(eu.clone()));
            assert!(job.blocking_recv().unwrap().unwrap());
        };
        commit(record(10, None));
        let read = page(&store, "eu").items;
        let mut retagged = record(10, None);
        retagged.revision = 1;
        commit(retagged);
        report(&store, "eu", &[&read[0]], &[]);
        let left = page(&store, "eu").items;
        assert_eq!(left.len(), 1, "the tag change is still to send");
        assert_eq!(left[0].revision, 1);
        report(&store, "eu", &[&left[0]], &[]);
        assert!(page(&store, "eu").items.is_empty());
    }

    #[test]
    fn a_purge_replaces_its_versions_entry_in_the_same_write() {
        let (_dir, store) = open();
        let eu = replicate(&["eu"]);
        let job = store.submit_commit(BUCKET, "k".into(), record(10, None), None, Some(eu.clone()));
        assert!(job.blocking_recv().unwrap().unwrap());
        store
            .purge(&BUCKET, "k", VersionRef::Null, false, Some(&eu))
            .unwrap()
            .unwrap();
        let items = page(&store, "eu").items;
        assert_eq!(items.len(), 1);
        assert!(items[0].purge);
        assert_eq!(items[0].entry.version, v(10));
    }
}
