//! One node's disk: fragment files plus RocksDB metadata.
//!
//! Invariants:
//! - A fragment file is only ever visible under its final name complete and fsynced: it is written
//!   under `fragments/tmp/`, fsynced, renamed, and the directory fsynced. `tmp/` is emptied on open.
//! - Every metadata write is a synced RocksDB write; a record only replaces an older version.
//! - Fragment files of a superseded record are removed after the newer record is durable.

use crate::protocol::{ListItem, ListRequest, ListResponse};
use crate::record::{BucketId, BucketRecord, ListEntry, ObjectRecord, PartRecord, UploadRecord};
use rocksdb::{Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, Weak};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("metadata database: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt metadata record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("no such fragment")]
    NoSuchFragment,
    #[error("the store's committer has stopped")]
    CommitterGone,
}

const TAG_BUCKET: u8 = b'b';
const TAG_OBJECT: u8 = b'o';
const TAG_UPLOAD: u8 = b'u';
const TAG_PART: u8 = b'p';
const TAG_SETTING: u8 = b's';
/// Writes of bucket and part records to one key are serialised by one of these locks, so that
/// "newer version wins" is a read-compare-write without a global lock (concurrent synced writes
/// still share WAL fsyncs). Object records go through the group committer instead.
const COMMIT_LOCKS: usize = 64;

pub struct Store {
    db: DB,
    fragments: PathBuf,
    locks: Vec<Mutex<()>>,
    buffers: BufferPool,
    commits: mpsc::Sender<CommitJob>,
}

/// Most commits written by one synced write; more wait for the next.
const MAX_GROUP: usize = 256;

type CommitReply = oneshot::Sender<Result<bool, StoreError>>;

struct CommitJob {
    bucket: BucketId,
    key: String,
    record: ObjectRecord,
    upload_id: Option<String>,
    done: CommitReply,
}

/// What an applied commit replaces: the old record, and the parts of the upload it completes.
struct Superseded {
    old: Option<ObjectRecord>,
    parts: Vec<PartRecord>,
}

/// The group committer: takes every commit queued while the previous group was being written,
/// and writes them with one synced write. Replacing a thread and a RocksDB write-group handoff per
/// commit, this took about a third of the CPU of small PUTs off the nodes. It holds the store
/// only while writing a group, and answers after letting go, so that a caller that drops the
/// store after its commit really closes it.
fn run_committer(store: Weak<Store>, jobs: mpsc::Receiver<CommitJob>) {
    let mut deferred = Vec::new();
    loop {
        let mut group = std::mem::take(&mut deferred);
        if group.is_empty() {
            match jobs.recv() {
                Ok(job) => group.push(job),
                Err(_) => return,
            }
        }
        group.extend(jobs.try_iter().take(MAX_GROUP));
        let Some(store) = store.upgrade() else {
            return;
        };
        let replies = store.commit_group(group, &mut deferred);
        drop(store);
        for (done, outcome) in replies {
            let _ = done.send(outcome);
        }
    }
}

impl Store {
    /// Opens the node's disk and starts its group committer, which ends with the store.
    pub fn open(data_dir: &Path) -> Result<Arc<Store>, StoreError> {
        let fragments = data_dir.join("fragments");
        let tmp = fragments.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_max_background_jobs(2);
        // Concurrent commits wait for their write group's WAL fsync by blocking, not by spinning
        // and yielding, which on a machine with few cores took CPU from the requests; and the
        // group leader applies the small records to the memtable itself rather than handing each
        // writer back its own.
        opts.set_enable_write_thread_adaptive_yield(false);
        opts.set_allow_concurrent_memtable_write(false);
        let db = DB::open(&opts, data_dir.join("meta"))?;
        let (commits, jobs) = mpsc::channel();
        let store = Arc::new(Store {
            db,
            fragments,
            locks: (0..COMMIT_LOCKS).map(|_| Mutex::new(())).collect(),
            buffers: BufferPool::default(),
            commits,
        });
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || run_committer(weak, jobs))?;
        Ok(store)
    }

    pub fn fragment_path(&self, id: &str, index: u8) -> PathBuf {
        self.fragments.join(&id[..2]).join(format!("{id}.{index}"))
    }

    /// Starts a fragment file under a temporary name; `FragmentFile::commit` makes it durable.
    pub fn create_fragment(&self, id: &str, index: u8) -> Result<FragmentFile, StoreError> {
        let tmp = self
            .fragments
            .join("tmp")
            .join(format!("{id}.{index}.{:016x}", rand::random::<u64>()));
        let direct = File::options()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&tmp);
        let (file, staging) = match direct {
            Ok(file) => (file, Some(Staging::new(self.buffers.clone()))),
            // Filesystems without direct I/O (tmpfs) take buffered writes.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (File::create(&tmp)?, None),
            Err(e) => return Err(e.into()),
        };
        Ok(FragmentFile {
            file,
            staging,
            written: 0,
            tmp,
            target: self.fragment_path(id, index),
        })
    }

    /// Reads `len` bytes of a fragment file from `offset` (short only at the end of the file).
    pub fn read_fragment(
        &self,
        id: &str,
        index: u8,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let mut file = match File::open(self.fragment_path(id, index)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoSuchFragment)
            }
            Err(e) => return Err(e.into()),
        };
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len.min(64 << 20) as usize);
        file.take(len).read_to_end(&mut buf)?;
        Ok(buf)
    }

    pub fn remove_fragment(&self, id: &str, index: u8) -> Result<(), StoreError> {
        match fs::remove_file(self.fragment_path(id, index)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Records `record` for a key unless this node already has the same or a newer version.
    /// Returns whether it was applied. Blocks until the record is durable (see `submit_commit`).
    pub fn commit_object(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        upload_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.submit_commit(
            *bucket,
            key.to_string(),
            record.clone(),
            upload_id.map(str::to_string),
        )
        .blocking_recv()
        .unwrap_or(Err(StoreError::CommitterGone))
    }

    /// Queues an object commit for the group committer and returns where its outcome will come,
    /// so that an async caller waits without holding a thread. Commits that arrive together share
    /// one synced RocksDB write.
    pub fn submit_commit(
        &self,
        bucket: BucketId,
        key: String,
        record: ObjectRecord,
        upload_id: Option<String>,
    ) -> oneshot::Receiver<Result<bool, StoreError>> {
        let (done, outcome) = oneshot::channel();
        let job = CommitJob {
            bucket,
            key,
            record,
            upload_id,
            done,
        };
        if let Err(mpsc::SendError(job)) = self.commits.send(job) {
            let _ = job.done.send(Err(StoreError::CommitterGone));
        }
        outcome
    }

    /// Commits a group of object records with one synced write. The committer thread is the only
    /// writer of object records, so the read-compare-write of each needs no lock; a second commit
    /// to a key already in the group goes to `deferred`, for the next group.
    fn commit_group(
        &self,
        group: Vec<CommitJob>,
        deferred: &mut Vec<CommitJob>,
    ) -> Vec<(CommitReply, Result<bool, StoreError>)> {
        let mut batch = WriteBatch::default();
        let mut keys = HashSet::new();
        let mut applied = Vec::new();
        let mut replies = Vec::new();
        for job in group {
            let db_key = object_key(&job.bucket, &job.key);
            if !keys.insert(db_key.clone()) {
                deferred.push(job);
                continue;
            }
            match self.prepare_commit(&db_key, &job, &mut batch) {
                Ok(Some(superseded)) => applied.push((job, superseded)),
                Ok(None) => replies.push((job.done, Ok(false))),
                Err(e) => replies.push((job.done, Err(e))),
            }
        }
        if applied.is_empty() {
            return replies;
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        match self.db.write_opt(batch, &opts) {
            Ok(()) => replies.extend(applied.into_iter().map(|(job, superseded)| {
                let removed = self.remove_superseded(&job.record, superseded);
                (job.done, removed.map(|()| true))
            })),
            Err(e) => replies.extend(
                applied
                    .into_iter()
                    .map(|(job, _)| (job.done, Err(StoreError::Db(e.clone())))),
            ),
        }
        replies
    }

    /// Adds a commit's writes to `batch` unless the key already has the same or a newer version;
    /// returns what the record supersedes (to remove once it is durable), `None` when not applied.
    fn prepare_commit(
        &self,
        db_key: &[u8],
        job: &CommitJob,
        batch: &mut WriteBatch,
    ) -> Result<Option<Superseded>, StoreError> {
        let old: Option<ObjectRecord> = self.get_json(db_key)?;
        if old
            .as_ref()
            .is_some_and(|o| o.version >= job.record.version)
        {
            return Ok(None);
        }
        let value = serde_json::to_vec(&job.record)?;
        let parts = match &job.upload_id {
            Some(upload_id) => self.parts(upload_id)?,
            None => Vec::new(),
        };
        batch.put(db_key, value);
        if let Some(upload_id) = &job.upload_id {
            batch.delete(upload_key(&job.bucket, upload_id));
            for part in &parts {
                batch.delete(part_key(upload_id, part.part.number));
            }
        }
        Ok(Some(Superseded { old, parts }))
    }

    /// Removes the fragment files that a durable record no longer refers to.
    fn remove_superseded(
        &self,
        record: &ObjectRecord,
        superseded: Superseded,
    ) -> Result<(), StoreError> {
        let kept: Vec<(&str, u8)> = record.fragment_files().collect();
        if let Some(old) = &superseded.old {
            for (id, index) in old.fragment_files() {
                if !kept.contains(&(id, index)) {
                    self.remove_fragment(id, index)?;
                }
            }
        }
        for part in superseded.parts {
            if part.part.inline.is_none()
                && !kept.contains(&(&part.part.fragment_id, part.fragment))
            {
                self.remove_fragment(&part.part.fragment_id, part.fragment)?;
            }
        }
        Ok(())
    }

    pub fn object(&self, bucket: &BucketId, key: &str) -> Result<Option<ObjectRecord>, StoreError> {
        self.get_json(&object_key(bucket, key))
    }

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
                None => items.push(ListItem::Key(ListEntry {
                    key,
                    version: record.version,
                    deleted: record.deleted,
                    size: record.size,
                    etag: record.etag,
                    modified: record.modified,
                })),
            }
            iter.next();
        }
        iter.status()?;
        Ok(ListResponse { items, truncated })
    }

    pub fn put_bucket(&self, record: &BucketRecord) -> Result<bool, StoreError> {
        let db_key = [&[TAG_BUCKET][..], record.name.as_bytes()].concat();
        let _guard = self.lock_for(&db_key);
        let old: Option<BucketRecord> = self.get_json(&db_key)?;
        if old.is_some_and(|o| o.version >= record.version) {
            return Ok(false);
        }
        let mut batch = WriteBatch::default();
        batch.put(db_key, serde_json::to_vec(record)?);
        self.write_synced(batch)?;
        Ok(true)
    }

    pub fn buckets(&self) -> Result<Vec<BucketRecord>, StoreError> {
        self.scan(&[TAG_BUCKET])
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
            self.remove_fragment(&part.part.fragment_id, part.fragment)?;
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
            self.remove_fragment(&old.part.fragment_id, old.fragment)?;
        }
        Ok(true)
    }

    pub fn parts(&self, upload_id: &str) -> Result<Vec<PartRecord>, StoreError> {
        self.scan(&[&[TAG_PART][..], upload_id.as_bytes(), b"/"].concat())
    }

    /// Small named values a node keeps for the cluster (such as a heal checkpoint); empty clears.
    pub fn put_setting(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = [&[TAG_SETTING][..], name.as_bytes()].concat();
        let mut batch = WriteBatch::default();
        if value.is_empty() {
            batch.delete(key);
        } else {
            batch.put(key, value);
        }
        self.write_synced(batch)
    }

    pub fn setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get([&[TAG_SETTING][..], name.as_bytes()].concat())?)
    }

    fn lock_for(&self, key: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let lock = &self.locks[hasher.finish() as usize % COMMIT_LOCKS];
        lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        Ok(self.db.write_opt(batch, &opts)?)
    }

    fn get_json<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        match self.db.get_pinned(key)? {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    fn scan<T: DeserializeOwned>(&self, prefix: &[u8]) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for entry in self.db.prefix_iterator(prefix) {
            let (k, v) = entry?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push(serde_json::from_slice(&v)?);
        }
        Ok(out)
    }
}

/// Direct I/O moves whole aligned blocks from an aligned buffer.
const DIRECT_ALIGN: usize = 4096;
/// Bytes gathered before each direct write.
const DIRECT_CHUNK: usize = 1 << 20;

/// A fragment being received: a temporary file until `commit`.
///
/// Written with O_DIRECT where the filesystem allows it: on large PUTs, copying fragments into
/// the page cache was up to half of a node's CPU (and a buffered write then fsync runs at a
/// fraction of the disk's direct speed). Bytes gather in an aligned buffer and go to disk a chunk
/// at a time; the unaligned tail goes through the page cache, and `commit` fsyncs both.
pub struct FragmentFile {
    file: File,
    /// `None` when the file takes buffered writes.
    staging: Option<Staging>,
    /// Bytes already on disk through direct writes.
    written: u64,
    tmp: PathBuf,
    target: PathBuf,
}

/// Direct-I/O buffers kept for the next fragments: a fresh megabyte costs page faults and the
/// kernel's zeroing of every page, which took a tenth of a node's CPU on large PUTs.
#[derive(Clone, Default)]
struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

/// At most this many idle buffers are kept, so a node at rest holds at most this many MiB.
const POOLED_BUFFERS: usize = 8;

impl BufferPool {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .unwrap_or_else(|| vec![0; DIRECT_CHUNK + DIRECT_ALIGN])
    }

    fn give(&self, buf: Vec<u8>) {
        let mut pool = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pool.len() < POOLED_BUFFERS {
            pool.push(buf);
        }
    }
}

/// An aligned window in an over-allocated pooled buffer (aligning needs no unsafe code then).
struct Staging {
    pool: BufferPool,
    buf: Vec<u8>,
    start: usize,
    filled: usize,
}

impl Staging {
    fn new(pool: BufferPool) -> Staging {
        let buf = pool.take();
        let start = buf.as_ptr().align_offset(DIRECT_ALIGN);
        Staging {
            pool,
            buf,
            start,
            filled: 0,
        }
    }

    fn window(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + DIRECT_CHUNK]
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

impl FragmentFile {
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        let Some(staging) = &mut self.staging else {
            return Ok(self.file.write_all(bytes)?);
        };
        while !bytes.is_empty() {
            let filled = staging.filled;
            let n = (DIRECT_CHUNK - filled).min(bytes.len());
            staging.window()[filled..filled + n].copy_from_slice(&bytes[..n]);
            staging.filled += n;
            bytes = &bytes[n..];
            if staging.filled == DIRECT_CHUNK {
                self.file.write_all(staging.window())?;
                self.written += DIRECT_CHUNK as u64;
                staging.filled = 0;
            }
        }
        Ok(())
    }

    /// fsync, rename into place, fsync the directory: after this the fragment survives a crash.
    pub fn commit(mut self) -> Result<(), StoreError> {
        if let Some(staging) = &mut self.staging {
            let filled = staging.filled;
            let aligned = filled - filled % DIRECT_ALIGN;
            self.file.write_all(&staging.window()[..aligned])?;
            if aligned < filled {
                // The unaligned tail through a buffered handle; fsync covers the whole file.
                let buffered = File::options().write(true).open(&self.tmp)?;
                buffered.write_all_at(
                    &staging.window()[aligned..filled],
                    self.written + aligned as u64,
                )?;
                self.file = buffered;
            }
        }
        self.file.sync_all()?;
        let dir = self.target.parent().expect("fragment paths have a parent");
        fs::create_dir_all(dir)?;
        fs::rename(&self.tmp, &self.target)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    }
}

impl Drop for FragmentFile {
    fn drop(&mut self) {
        // After a successful commit the temporary name is gone and this is a no-op.
        let _ = fs::remove_file(&self.tmp);
    }
}

fn object_key(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_OBJECT][..], bucket, key.as_bytes()].concat()
}

fn upload_key(bucket: &BucketId, upload_id: &str) -> Vec<u8> {
    [&[TAG_UPLOAD][..], bucket, upload_id.as_bytes()].concat()
}

fn part_key(upload_id: &str, number: u32) -> Vec<u8> {
    [
        &[TAG_PART][..],
        upload_id.as_bytes(),
        b"/",
        &number.to_be_bytes(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{fragment_id, PartData, Version};

    const BUCKET: BucketId = [7; 16];

    fn record(micros: u64, fragment_id: Option<&str>) -> ObjectRecord {
        ObjectRecord {
            version: Version { micros, salt: 0 },
            deleted: false,
            size: 3,
            etag: format!("etag{micros}"),
            headers: Vec::new(),
            checksum: None,
            data_shards: 4,
            parity_shards: 2,
            fragment: 1,
            parts: vec![PartData {
                number: 1,
                size: 3,
                md5: String::new(),
                block_size: 16,
                fragment_id: fragment_id
                    .unwrap_or("00000000000000000000000000000000")
                    .into(),
                inline: fragment_id.is_none().then(|| vec![1, 2, 3]),
                checksum: None,
            }],
            tags: Vec::new(),
            modified: None,
        }
    }

    fn write_fragment(store: &Store, id: &str) {
        let mut file = store.create_fragment(id, 1).unwrap();
        file.write(b"frame").unwrap();
        file.commit().unwrap();
    }

    #[test]
    fn newer_versions_win_and_superseded_files_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
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
        assert!(store
            .commit_object(&BUCKET, "k", &record(20, None), None)
            .unwrap());
        assert!(
            !store.fragment_path(&old_id, 1).exists(),
            "replaced fragment removed"
        );
        drop(store);
        let reopened = Store::open(dir.path()).unwrap();
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
    fn fragments_of_any_length_and_chunking_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for len in [1, 4096, 5000, DIRECT_CHUNK, 2 * DIRECT_CHUNK + 4096 * 3 + 7] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let id = fragment_id(&[&len.to_le_bytes()]);
            let mut file = store.create_fragment(&id, 2).unwrap();
            for chunk in data.chunks(65_537) {
                file.write(chunk).unwrap();
            }
            file.commit().unwrap();
            let back = store.read_fragment(&id, 2, 0, len as u64).unwrap();
            assert!(back == data, "{len} bytes read back");
        }
    }

    #[test]
    fn unfinished_fragments_never_appear() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = fragment_id(&[b"x"]);
        let mut file = store.create_fragment(&id, 0).unwrap();
        file.write(b"partial").unwrap();
        drop(file);
        assert!(!store.fragment_path(&id, 0).exists());
        assert!(matches!(
            store.read_fragment(&id, 0, 0, 1),
            Err(StoreError::NoSuchFragment)
        ));
        assert_eq!(
            fs::read_dir(dir.path().join("fragments/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn listings_roll_up_and_keep_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for (i, key) in ["a/1", "a/2", "b", "c/1", "d/x"].iter().enumerate() {
            store
                .commit_object(&BUCKET, key, &record(i as u64 + 1, None), None)
                .unwrap();
        }
        store
            .commit_object(
                &BUCKET,
                "b",
                &ObjectRecord::tombstone(Version {
                    micros: 99,
                    salt: 0,
                }),
                None,
            )
            .unwrap();
        store
            .commit_object(
                &BUCKET,
                "d/x",
                &ObjectRecord::tombstone(Version {
                    micros: 99,
                    salt: 0,
                }),
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
}
