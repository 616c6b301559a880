//! The group committer: plain commits queued by async callers, gathered into groups and written
//! with one synced write per group.

use super::keys::object_key;
use super::{Store, StoreError};
use crate::protocol::Replicate;
use crate::record::{BucketId, ObjectRecord};
use rocksdb::{WriteBatch, WriteOptions};
use std::collections::HashSet;
use std::sync::{mpsc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most commits written by one synced write; more wait for the next.
const MAX_GROUP: usize = 256;
/// Longest a group waits to be as large as the one before it. Under many concurrent small writes
/// every synced write costs a node more CPU than the commits in it (at 4 KiB PUTs, C=32, about
/// 540 fdatasyncs a second for 1,300 commits per node), and a full group keeps the next one full:
/// 4 KiB PUTs at C=32 went from about 1,470 a second to 1,560-1,930 with this wait. A lone writer
/// never waits (its groups are of one), and two writers wait only for each other.
const GATHER: Duration = Duration::from_millis(2);

type CommitReply = oneshot::Sender<Result<bool, StoreError>>;

pub(super) struct CommitJob {
    bucket: BucketId,
    key: String,
    record: ObjectRecord,
    upload_id: Option<String>,
    replicate: Option<Replicate>,
    done: CommitReply,
}

/// The group committer: takes every plain commit queued while the previous group was being
/// written, waits up to `GATHER` for as many as the previous group had, and writes them with one
/// synced write, instead of a blocking thread and a RocksDB write-group handoff per commit (about
/// a third of a node's CPU on small PUTs). It holds the store only while writing a group, so that
/// dropping the last other handle closes it.
pub(super) fn run_committer(store: Weak<Store>, jobs: mpsc::Receiver<CommitJob>) {
    let mut deferred = Vec::new();
    // The previous group's size: what this one waits to reach.
    let mut last = 0;
    loop {
        let mut group = std::mem::take(&mut deferred);
        if group.is_empty() {
            match jobs.recv() {
                Ok(job) => group.push(job),
                Err(_) => return,
            }
        }
        group.extend(jobs.try_iter().take(MAX_GROUP));
        let deadline = Instant::now() + GATHER;
        while group.len() < last.min(MAX_GROUP) {
            match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let Some(store) = store.upgrade() else {
            return;
        };
        last = group.len();
        let replies = store.commit_group(group, &mut deferred);
        drop(store);
        for (done, outcome) in replies {
            let _ = done.send(outcome);
        }
    }
}

impl Store {
    /// Queues a plain commit (see `commit_locked`) for the group committer and returns where its
    /// outcome will come, so that an async caller waits without holding a thread. Commits that
    /// arrive together share one synced write.
    pub fn submit_commit(
        &self,
        bucket: BucketId,
        key: String,
        record: ObjectRecord,
        upload_id: Option<String>,
        replicate: Option<Replicate>,
    ) -> oneshot::Receiver<Result<bool, StoreError>> {
        let (done, outcome) = oneshot::channel();
        let job = CommitJob {
            bucket,
            key,
            record,
            upload_id,
            replicate,
            done,
        };
        if let Err(mpsc::SendError(job)) = self.commits.send(job) {
            let _ = job.done.send(Err(StoreError::CommitterGone));
        }
        outcome
    }

    /// Writes a group of commits with one synced write, holding the commit locks of all their keys
    /// (taken in order, so that it cannot deadlock with a writer holding one). A second commit to a
    /// key already in the group goes to `deferred`, for the next group. A commit that fails is
    /// answered with its error and leaves the others' write as it was (see `prepare_commit`).
    fn commit_group(
        &self,
        group: Vec<CommitJob>,
        deferred: &mut Vec<CommitJob>,
    ) -> Vec<(CommitReply, Result<bool, StoreError>)> {
        let mut keys = HashSet::new();
        let mut jobs = Vec::new();
        for job in group {
            if keys.insert(object_key(&job.bucket, &job.key)) {
                jobs.push(job);
            } else {
                deferred.push(job);
            }
        }
        let mut stripes: Vec<usize> = keys.iter().map(|k| self.stripe(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let guards: Vec<_> = stripes
            .iter()
            .map(|&i| self.locks[i].lock().unwrap_or_else(|p| p.into_inner()))
            .collect();
        let mut batch = WriteBatch::default();
        let mut applied = Vec::new();
        let mut replies = Vec::new();
        for job in jobs {
            let (upload_id, replicate) = (job.upload_id.as_deref(), job.replicate.as_ref());
            match self.prepare_commit(&job.bucket, &job.key, &job.record, upload_id, replicate) {
                Ok(Some(writes)) => {
                    writes.add_to(&mut batch);
                    applied.push(job.done);
                }
                Ok(None) => replies.push((job.done, Ok(false))),
                Err(e) => replies.push((job.done, Err(e))),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        let written = match applied.is_empty() {
            true => Ok(()),
            false => self.db.write_opt(batch, &opts),
        };
        drop(guards);
        for done in applied {
            let outcome = match &written {
                Ok(()) => Ok(true),
                Err(e) => Err(StoreError::Db(e.clone())),
            };
            replies.push((done, outcome));
        }
        replies
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{fragment_id, UploadRecord};
    use crate::store::keys::{part_key, replaced_key};
    use crate::store::testing::{open, record, v, BUCKET};

    fn job(
        key: &str,
        record: ObjectRecord,
        upload_id: Option<&str>,
    ) -> (CommitJob, oneshot::Receiver<Result<bool, StoreError>>) {
        let (done, outcome) = oneshot::channel();
        let job = CommitJob {
            bucket: BUCKET,
            key: key.into(),
            record,
            upload_id: upload_id.map(String::from),
            replicate: None,
            done,
        };
        (job, outcome)
    }

    #[test]
    fn a_commit_that_fails_midway_writes_nothing_and_its_group_still_commits() {
        let (_dir, store) = open();
        assert!(store
            .commit_object(&BUCKET, "inline", &record(10, None), None)
            .unwrap());
        // An inline overwrite reads the version kept from the last one after it has replaced
        // the current record, and a completion reads its parts after it has dropped the upload:
        // corrupt values there make both fail midway.
        store
            .db
            .put(replaced_key(&BUCKET, "inline"), b"not json")
            .unwrap();
        let upload = UploadRecord {
            upload_id: "upload".into(),
            key: "completed".into(),
            version: v(1),
            headers: Vec::new(),
            checksum_algorithm: None,
            checksum_type: None,
            tags: Vec::new(),
            lock: Default::default(),
            encryption: None,
            acl: None,
        };
        store.put_upload(&BUCKET, &upload).unwrap();
        store.db.put(part_key("upload", 1), b"not json").unwrap();

        let id = fragment_id(&[b"completed"]);
        let (group, outcomes): (Vec<_>, Vec<_>) = [
            job("inline", record(20, None), None),
            job("plain", record(30, None), None),
            job("completed", record(40, Some(&id)), Some("upload")),
        ]
        .into_iter()
        .unzip();
        let mut deferred = Vec::new();
        for (done, outcome) in store.commit_group(group, &mut deferred) {
            done.send(outcome).unwrap();
        }
        assert!(deferred.is_empty());
        let outcomes: Vec<_> = outcomes
            .into_iter()
            .map(|mut o| o.try_recv().unwrap())
            .collect();
        assert!(matches!(outcomes[0], Err(StoreError::Corrupt(_))));
        assert!(matches!(outcomes[1], Ok(true)));
        assert!(matches!(outcomes[2], Err(StoreError::Corrupt(_))));

        let current = |key| store.object(&BUCKET, key).unwrap().map(|r| r.version);
        assert_eq!(current("plain"), Some(v(30)), "the group's good commit");
        assert_eq!(current("inline"), Some(v(10)), "the failed overwrite");
        assert_eq!(current("completed"), None, "the failed completion");
        assert!(
            store.upload(&BUCKET, "upload").unwrap().is_some(),
            "the failed completion's upload"
        );
    }
}
