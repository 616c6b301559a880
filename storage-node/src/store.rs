//! One node's disk: fragment files plus RocksDB metadata.
//!
//! Invariants:
//! - A fragment file is only ever visible under its final name complete and fsynced: it is written
//!   under `fragments/tmp/`, fsynced, renamed, and the directory fsynced. `tmp/` is emptied on open.
//! - Every metadata write is a synced RocksDB write; a record only replaces an older version.
//! - Fragment files of a superseded record are queued for removal (`TAG_SUPERSEDED`) in the same
//!   synced write as the newer record, and removed once no read can still be opening them
//!   (`remove_superseded`). Those of the version an inline record replaced are kept longer
//!   (`TAG_REPLACED`).

use crate::hints::Hint;
use crate::protocol::{
    unix_now, ClaimAnswer, ListItem, ListRequest, ListResponse, Lookup, ShardDigest,
    VersionListRequest,
};
use crate::record::{
    BucketId, BucketRecord, ListEntry, ObjectRecord, PartData, PartRecord, UploadRecord, Version,
    VersionRef,
};
use erasure::{FragmentVerifier, StripeLayout};
use rocksdb::{BlockBasedOptions, Cache, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};
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
/// Writes kept for a holder that was down (see `crate::hints`).
const TAG_HINT: u8 = b'w';
/// Non-current versions of a key: `h`, bucket, key, 0, then the version inverted (newest first).
const TAG_HISTORY: u8 = b'h';
/// Versions purged from a key, laid out as the history; the value is empty.
const TAG_PURGED: u8 = b'x';
/// The version a plain overwrite with an inline record replaced, with its fragment files: `r`,
/// bucket, key. An inline record's data exists only in the commits that carry it, so an overwrite
/// that reaches fewer than k holders cannot be read; readers then go back to this version and undo
/// the overwrite (`undo`). Kept until the key's next such overwrite or `expire_replaced`.
const TAG_REPLACED: u8 = b'r';
/// Fragment files a commit superseded, to be removed after a grace period: `d`, the time they were
/// superseded (seconds since the Unix epoch, big-endian, so oldest first), the fragment index,
/// the fragment id. A read that found the older version a moment before the commit is still
/// opening them.
const TAG_SUPERSEDED: u8 = b'd';
/// The bytes of a version in a history or purge key.
const VERSION_BYTES: usize = 12;
/// How long a conditional write may hold its claim on a key between claiming and committing.
const CLAIM_TTL: Duration = Duration::from_secs(30);
/// Commits to one key are serialised by one of these locks, so that "newer version wins" is a
/// read-compare-write without a global lock (concurrent synced writes still share WAL fsyncs).
const COMMIT_LOCKS: usize = 64;
/// One RocksDB memtable (two at most, the one being flushed and the next).
const MEMTABLE_BYTES: usize = 8 << 20;
/// RocksDB's cache of SST blocks.
const BLOCK_CACHE_BYTES: usize = 8 << 20;

pub struct Store {
    db: DB,
    fragments: PathBuf,
    locks: Vec<Mutex<()>>,
    /// Keys reserved by a conditional write. Kept in memory: a restart drops them, and the
    /// writer's commits here are then refused, which only costs it this holder's vote.
    claims: Mutex<HashMap<Vec<u8>, Claim>>,
    buffers: BufferPool,
    /// The fragment directories, each opened (and created) once, for the fsync that makes a
    /// committed fragment's name durable: opening the directory for every fragment was a
    /// path walk and two system calls more per fragment.
    dirs: Mutex<HashMap<PathBuf, Arc<File>>>,
    commits: mpsc::Sender<CommitJob>,
}

/// Most commits written by one synced write; more wait for the next.
const MAX_GROUP: usize = 256;
/// Longest a group waits to be as large as the one before it. Under many concurrent small writes
/// every synced write costs a node more CPU than the commits in it (at 4 KiB PUTs, C=32, about
/// 540 fdatasyncs a second for 1,300 commits per node), and a full group keeps the next one full:
/// 4 KiB PUTs at C=32 went from about 1,470 a second to 1,560-1,930 with this wait. A lone writer
/// never waits (its groups are of one), and two writers wait only for each other.
const GATHER: Duration = Duration::from_millis(2);

type CommitReply = oneshot::Sender<Result<bool, StoreError>>;

struct CommitJob {
    bucket: BucketId,
    key: String,
    record: ObjectRecord,
    upload_id: Option<String>,
    done: CommitReply,
}

/// The group committer: takes every plain commit queued while the previous group was being
/// written, waits up to `GATHER` for as many as the previous group had, and writes them with one
/// synced write, instead of a blocking thread and a RocksDB write-group handoff per commit (about
/// a third of a node's CPU on small PUTs). It holds the store only while writing a group, so that
/// dropping the last other handle closes it.
fn run_committer(store: Weak<Store>, jobs: mpsc::Receiver<CommitJob>) {
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

/// A replaced version kept under `TAG_REPLACED`.
#[derive(Serialize, Deserialize)]
struct Replaced {
    record: ObjectRecord,
    /// When it was replaced, in seconds since the Unix epoch.
    at: u64,
}

struct Claim {
    token: String,
    expected: Option<Version>,
    until: Instant,
}

/// One fragment file a record names, as the scrubber checks it.
#[derive(Clone, Debug)]
pub struct ScrubTarget {
    /// The record's key: where the next batch resumes, and a checkpoint across restarts.
    pub position: Vec<u8>,
    pub fragment_id: String,
    pub fragment: u8,
    pub layout: StripeLayout,
}

/// What the scrubber found of one fragment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scrubbed {
    /// Every block matched its hash; this many bytes were read.
    Good(u64),
    /// Failed a hash or had the wrong length: moved aside, to be rebuilt.
    Corrupt,
    /// Its record names it, but it is not on disk.
    Missing,
    /// Superseded, or replaced by a good copy, while it was looked at: nothing to do.
    Gone,
}

/// Bytes the scrubber reads at a time.
const SCRUB_CHUNK: usize = 1 << 20;

impl Store {
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
        // What RocksDB keeps in memory is what an idle node holds: by default up to two 64 MiB
        // memtables and a 32 MiB block cache, over twice a node's whole budget at rest. Small
        // memtables flush more often (a few seconds apart under a 4 KiB PUT load), and SST
        // blocks that fall out of the small cache are still in the page cache.
        opts.set_write_buffer_size(MEMTABLE_BYTES);
        opts.set_max_write_buffer_number(2);
        // Levels sized for those memtables rather than RocksDB's 64 MiB ones: with the default
        // 256 MiB base level every compaction of L0 rewrote the whole database (32, 65, then 98
        // MB in a 15 s PUT run), which made the disk, not the CPU, the limit of small PUTs.
        opts.set_max_bytes_for_level_base(4 * MEMTABLE_BYTES as u64);
        opts.set_target_file_size_base(MEMTABLE_BYTES as u64);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE_BYTES));
        // Most point lookups are for keys that are not there (a new key's current record, a
        // purged version, a history entry): a filter answers those without reading a block.
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, data_dir.join("meta"))?;

        let (commits, jobs) = mpsc::channel();
        let store = Arc::new(Store {
            db,
            fragments,
            locks: (0..COMMIT_LOCKS).map(|_| Mutex::new(())).collect(),
            claims: Mutex::default(),
            buffers: BufferPool::default(),
            dirs: Mutex::default(),
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
        let (file, direct) = match direct {
            Ok(file) => (file, true),
            // Filesystems without direct I/O (tmpfs) take buffered writes.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (File::create(&tmp)?, false),
            Err(e) => return Err(e.into()),
        };
        let target = self.fragment_path(id, index);
        Ok(FragmentFile {
            file,
            direct,
            staging: Staging::new(self.buffers.clone()),
            written: 0,
            tmp,
            dir: self.fragment_dir(&target)?,
            target,
        })
    }

    /// The directory `target` goes in, created if missing.
    fn fragment_dir(&self, target: &Path) -> Result<Arc<File>, StoreError> {
        let path = target.parent().expect("fragment paths have a parent");
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = dirs.get(path) {
            return Ok(dir.clone());
        }
        fs::create_dir_all(path)?;
        let dir = Arc::new(File::open(path)?);
        dirs.insert(path.to_path_buf(), dir.clone());
        Ok(dir)
    }

    /// Reads `len` bytes of a fragment file from `offset` (short only at the end of the file).
    pub fn read_fragment(
        &self,
        id: &str,
        index: u8,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let mut file = self.open_fragment(id, index)?;
        file.seek(std::io::SeekFrom::Start(offset))?;
        let len = len.min(64 << 20);
        // `read_to_end` reads into the spare capacity without zeroing it first: zeroing each
        // megabyte before reading over it was 4% of the CPU of a 64 MiB GET.
        let mut buf = Vec::with_capacity(len as usize);
        file.take(len).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// `len` bytes of a fragment from `offset` if all of them are in the page cache, read without
    /// waiting for the disk (`RWF_NOWAIT`), so that the caller can stay on its async thread: the
    /// two thread switches of a blocking read cost more than copying a cached megabyte. `None`:
    /// some of the bytes would come from the disk (or the file is shorter): use `read_fragment`.
    pub fn read_cached_fragment(
        &self,
        id: &str,
        index: u8,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let file = self.open_fragment(id, index)?;
        let mut buf = Vec::<u8>::with_capacity(len);
        let iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: len,
        };
        let Ok(at) = libc::off_t::try_from(offset) else {
            return Ok(None);
        };
        // SAFETY: the one iovec covers `buf`'s `len` bytes of spare capacity, which outlive the
        // call; the kernel writes at most that many bytes.
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
        if read < 0 {
            let error = std::io::Error::last_os_error();
            // EAGAIN: not all cached; EOPNOTSUPP: a filesystem without non-blocking reads.
            return match error.raw_os_error() {
                Some(libc::EAGAIN | libc::EOPNOTSUPP) => Ok(None),
                _ => Err(error.into()),
            };
        }
        if read as usize != len {
            return Ok(None);
        }
        // SAFETY: the kernel initialised the first `read` = `len` bytes.
        unsafe { buf.set_len(len) };
        Ok(Some(buf))
    }

    pub(crate) fn open_fragment(&self, id: &str, index: u8) -> Result<File, StoreError> {
        File::open(self.fragment_path(id, index)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::NoSuchFragment,
            _ => e.into(),
        })
    }

    pub fn remove_fragment(&self, id: &str, index: u8) -> Result<(), StoreError> {
        match fs::remove_file(self.fragment_path(id, index)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Removes the fragment files of a record this node no longer keeps.
    fn remove_fragments(&self, record: &ObjectRecord) -> Result<(), StoreError> {
        for (id, index) in record.fragment_files() {
            self.remove_fragment(id, index)?;
        }
        Ok(())
    }

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
        self.commit_locked(bucket, key, record, upload_id)
    }

    /// Queues a plain commit (see `commit_locked`) for the group committer and returns where its
    /// outcome will come, so that an async caller waits without holding a thread. Commits that
    /// arrive together share one synced write.
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

    /// Writes a group of commits with one synced write, holding the commit locks of all their keys
    /// (taken in order, so that it cannot deadlock with a writer holding one). A second commit to a
    /// key already in the group goes to `deferred`, for the next group.
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
            let upload_id = job.upload_id.as_deref();
            match self.prepare_commit(&job.bucket, &job.key, &job.record, upload_id, &mut batch) {
                Ok(true) => applied.push(job.done),
                Ok(false) => replies.push((job.done, Ok(false))),
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

    /// Records one version of a key, with the key's commit lock held:
    /// - a version seen before is only replaced by a higher revision of it (a tag change);
    /// - a version purged here (DeleteObject with `versionId`) is never taken again;
    /// - a `null` version replaces the key's null version wherever it is, unless that is newer;
    /// - the newest version is the key's current record, every other one goes to its history.
    ///
    /// Fragment files of a replaced record are queued for removal (see `remove_superseded`).
    fn commit_locked(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        upload_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut batch = WriteBatch::default();
        if !self.prepare_commit(bucket, key, record, upload_id, &mut batch)? {
            return Ok(false);
        }
        self.write_synced(batch)?;
        Ok(true)
    }

    /// Adds the writes of a commit (see `commit_locked`) to `batch`, with the key's commit lock
    /// held; returns whether the record is applied.
    fn prepare_commit(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        upload_id: Option<&str>,
        batch: &mut WriteBatch,
    ) -> Result<bool, StoreError> {
        if self
            .db
            .get_pinned(purged_key(bucket, key, record.version))?
            .is_some()
        {
            return Ok(false);
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
                return Ok(false);
            }
            batch.put(at, serde_json::to_vec(record)?);
            replaced = Some(existing.clone());
        } else {
            if !record.versioned {
                if let Some((at, null)) = stored().find(|(_, r)| !r.versioned) {
                    if null.version > record.version {
                        return Ok(false);
                    }
                    batch.delete(at);
                    replaced = Some(null.clone());
                }
            }
            match &current {
                Some(cur) if cur.version > record.version => {
                    batch.put(
                        history_key(bucket, key, record.version),
                        serde_json::to_vec(record)?,
                    );
                }
                _ => {
                    if let Some(cur) = current.as_ref().filter(|c| c.versioned || record.versioned)
                    {
                        batch.put(
                            history_key(bucket, key, cur.version),
                            serde_json::to_vec(cur)?,
                        );
                    }
                    batch.put(&db_key, serde_json::to_vec(record)?);
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
                batch.put(at, serde_json::to_vec(&kept)?);
            }
        }
        let mut superseded: Vec<(String, u8)> = replaced
            .iter()
            .flat_map(|old| old.fragment_files())
            .map(|(id, index)| (id.to_string(), index))
            .collect();
        if let Some(upload_id) = upload_id {
            batch.delete(upload_key(bucket, upload_id));
            for part in self.parts(upload_id)? {
                batch.delete(part_key(upload_id, part.part.number));
                if part.part.inline.is_none() {
                    superseded.push((part.part.fragment_id, part.fragment));
                }
            }
        }
        let kept: Vec<(&str, u8)> = record.fragment_files().collect();
        let now = unix_now();
        for (id, index) in superseded {
            if !kept.contains(&(id.as_str(), index)) {
                batch.put(superseded_key(now, &id, index), b"");
            }
        }
        Ok(true)
    }

    /// Removes the fragment files superseded before `cutoff` (seconds since the Unix epoch).
    /// Returns how many went.
    pub fn remove_superseded(&self, cutoff: u64) -> Result<usize, StoreError> {
        let mut batch = WriteBatch::default();
        let mut removed = 0;
        for entry in self.db.prefix_iterator([TAG_SUPERSEDED]) {
            let (k, _) = entry?;
            let Some((at, index, id)) = parse_superseded_key(&k) else {
                break;
            };
            if at >= cutoff {
                break;
            }
            self.remove_fragment(id, index)?;
            batch.delete(&k);
            removed += 1;
        }
        // Not synced: after a crash the entries come back, and removing a file twice is harmless.
        self.db.write(batch)?;
        Ok(removed)
    }

    /// The key's current record: its newest version (possibly a delete marker or tombstone).
    pub fn object(&self, bucket: &BucketId, key: &str) -> Result<Option<ObjectRecord>, StoreError> {
        self.get_json(&object_key(bucket, key))
    }

    /// The key's current record, with the versions purged here that are newer than it.
    pub fn current(&self, bucket: &BucketId, key: &str) -> Result<Lookup, StoreError> {
        let record = self.object(bucket, key)?;
        let prefix = purged_prefix(bucket, key);
        let mut purged = Vec::new();
        for entry in self.db.prefix_iterator(&prefix) {
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
            if record.as_ref().is_some_and(|r| r.version > version) {
                break;
            }
            purged.push(version);
        }
        Ok(Lookup {
            record,
            purged,
            fragment_len: None,
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
        })
    }

    /// Every version of a key this node has, newest first.
    fn versions(&self, bucket: &BucketId, key: &str) -> Result<Vec<ObjectRecord>, StoreError> {
        let mut versions: Vec<ObjectRecord> = self.object(bucket, key)?.into_iter().collect();
        versions.extend(self.history(bucket, key)?.into_iter().map(|(_, r)| r));
        Ok(versions)
    }

    /// The non-current versions of a key with their database keys, newest first.
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

    fn history(
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
    pub fn purge(
        &self,
        bucket: &BucketId,
        key: &str,
        which: VersionRef,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let db_key = object_key(bucket, key);
        let _guard = self.lock_for(&db_key);
        let current: Option<ObjectRecord> = self.get_json(&db_key)?;
        let history = self.history(bucket, key)?;
        let mut batch = WriteBatch::default();
        let target = match current.as_ref().filter(|c| c.version_ref() == which) {
            Some(cur) => {
                match history.first() {
                    Some((at, next)) => {
                        batch.delete(at);
                        batch.put(&db_key, serde_json::to_vec(next)?);
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
            batch.put(purged_key(bucket, key, version), b"");
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
        batch.put(purged_key(bucket, key, version), b"");
        batch.delete(replaced_key(bucket, key));
        batch.put(&db_key, serde_json::to_vec(&kept.record)?);
        self.write_synced(batch)?;
        self.remove_fragments(&current)?;
        Ok(true)
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
        })
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
                let key = &k[prefix.len()..prefix.len() + key_len];
                let record: ObjectRecord = serde_json::from_slice(&v)?;
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
            }
        }
        Ok(shards)
    }

    /// Removes the fragment files that nothing here refers to and that were last written before
    /// `cutoff`: those of writes that never committed on this node and were not cleaned up (their
    /// gateway died, or this node was unreachable when it cleaned up). The age spares writes in
    /// progress, and unfinished writes that a reader or a heal may still complete from these
    /// files (see `NodeConfig::orphan_age_secs`). Returns how many went.
    pub fn remove_orphans(&self, cutoff: std::time::SystemTime) -> Result<usize, StoreError> {
        let mut old = Vec::new();
        for dir in fs::read_dir(&self.fragments)? {
            let dir = dir?;
            if dir.file_name() == "tmp" || !dir.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(dir.path())? {
                let file = file?;
                if file.metadata()?.modified()? < cutoff {
                    old.push(file);
                }
            }
        }
        if old.is_empty() {
            return Ok(0);
        }
        let referenced = self.referenced_fragments()?;
        let mut removed = 0;
        for file in old {
            if !referenced.contains(file.file_name().to_string_lossy().as_ref()) {
                match fs::remove_file(file.path()) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => removed += 1,
                }
            }
        }
        Ok(removed)
    }

    /// The file names of every fragment file that a record, a kept version, a multipart part, a
    /// hint or the removal queue names.
    fn referenced_fragments(&self) -> Result<HashSet<String>, StoreError> {
        let mut names = HashSet::new();
        for tag in [
            TAG_OBJECT,
            TAG_HISTORY,
            TAG_REPLACED,
            TAG_PART,
            TAG_HINT,
            TAG_SUPERSEDED,
        ] {
            for entry in self.db.prefix_iterator([tag]) {
                let (k, v) = entry?;
                if k.first() != Some(&tag) {
                    break;
                }
                let files: Vec<(String, u8)> = match tag {
                    TAG_OBJECT | TAG_HISTORY => fragment_names(&serde_json::from_slice(&v)?),
                    TAG_REPLACED => fragment_names(&serde_json::from_slice::<Replaced>(&v)?.record),
                    TAG_PART => {
                        let part: PartRecord = serde_json::from_slice(&v)?;
                        let file = part.part.inline.is_none().then_some(part.part.fragment_id);
                        file.map(|id| (id, part.fragment)).into_iter().collect()
                    }
                    TAG_HINT => serde_json::from_slice::<Hint>(&v)?
                        .fragments
                        .into_iter()
                        .map(|f| (f.id, f.index))
                        .collect(),
                    _ => parse_superseded_key(&k)
                        .map(|(_, index, id)| (id.to_string(), index))
                        .into_iter()
                        .collect(),
                };
                names.extend(files.into_iter().map(|(id, index)| format!("{id}.{index}")));
            }
        }
        Ok(names)
    }

    /// The next fragment files to scrub, in key order after `after` (a position this returned
    /// before; `None`: from the start): those that object records (current and history) and
    /// multipart part records name, at most `limit` of them. Part records carry no k: theirs is
    /// the cluster's `data_shards`. An empty batch ends a pass.
    pub fn scrub_batch(
        &self,
        after: Option<&[u8]>,
        limit: usize,
        data_shards: usize,
    ) -> Result<Vec<ScrubTarget>, StoreError> {
        let mut batch = Vec::new();
        for tag in [TAG_HISTORY, TAG_OBJECT, TAG_PART] {
            let start = match after {
                Some(position) if position.first() == Some(&tag) => position.to_vec(),
                Some(position) if position.first() > Some(&tag) => continue,
                _ => vec![tag],
            };
            let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
            for entry in self.db.iterator(mode) {
                let (k, v) = entry?;
                if k.first() != Some(&tag) {
                    break;
                }
                if Some(&k[..]) == after {
                    continue;
                }
                // An unreadable record is not this pass's to fix, and must not stop it.
                let Ok((fragment, parts, k_of)) = file_parts(tag, &v) else {
                    tracing::warn!(key = %hex::encode(&k), "scrub: unreadable record skipped");
                    continue;
                };
                for part in parts {
                    batch.push(ScrubTarget {
                        position: k.to_vec(),
                        fragment_id: part.fragment_id,
                        fragment,
                        layout: StripeLayout {
                            size: part.size,
                            data_shards: k_of.unwrap_or(data_shards).max(1),
                            block_size: (part.block_size as usize).max(1),
                        },
                    });
                }
                if batch.len() >= limit {
                    return Ok(batch);
                }
            }
        }
        Ok(batch)
    }

    /// Re-reads one fragment file and checks every block's hash; `on_read` is told of each chunk
    /// read (for rate limiting). A corrupt or truncated file is moved aside under
    /// `fragments/corrupt/` (its name there is no fragment's, so it goes as an orphan after
    /// `orphan_age_secs`), after which this node lacks it like any missing fragment and a heal
    /// rebuilds it. A missing file counts only while its record still names it (a file removed
    /// because a newer version superseded it is not missing).
    pub fn scrub_fragment(
        &self,
        target: &ScrubTarget,
        mut on_read: impl FnMut(usize),
    ) -> Result<Scrubbed, StoreError> {
        let (id, index) = (&target.fragment_id, target.fragment);
        let file = match self.open_fragment(id, index) {
            Ok(file) => file,
            Err(StoreError::NoSuchFragment) => {
                let still_named = match self.db.get_pinned(&target.position)? {
                    Some(v) => {
                        let (_, parts, _) = file_parts(target.position[0], &v)?;
                        parts.iter().any(|p| p.fragment_id == *id)
                    }
                    None => false,
                };
                return Ok(if still_named {
                    Scrubbed::Missing
                } else {
                    Scrubbed::Gone
                });
            }
            Err(e) => return Err(e),
        };
        let mut verifier = FragmentVerifier::new(target.layout, index as usize);
        let mut buf = vec![0; SCRUB_CHUNK.min(target.layout.fragment_len().max(1) as usize)];
        let mut offset = 0;
        let sound = loop {
            let n = match file.read_at(&mut buf, offset) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // A read error (EIO from a bad sector) is damage like a wrong hash.
                Err(e) => {
                    tracing::warn!(fragment = %format!("{id}.{index}"), error = %e, "scrub: read failed");
                    break false;
                }
            };
            on_read(n);
            if n == 0 {
                break verifier.finish().is_ok();
            }
            if verifier.update(&buf[..n]).is_err() {
                break false;
            }
            offset += n as u64;
        };
        // A scrub reads data nobody asked for: keep it out of the page cache.
        // SAFETY: a plain advisory call on an open descriptor.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if sound {
            return Ok(Scrubbed::Good(offset));
        }
        // A heal or read repair may have put a good copy in place while this one was read.
        let path = self.fragment_path(id, index);
        let replaced = fs::metadata(&path).map(|m| m.ino()).ok() != Some(file.metadata()?.ino());
        if replaced {
            return Ok(Scrubbed::Gone);
        }
        let corrupt = self.fragments.join("corrupt");
        fs::create_dir_all(&corrupt)?;
        fs::rename(&path, corrupt.join(format!("{id}.{index}.{}", unix_now())))?;
        Ok(Scrubbed::Corrupt)
    }

    /// Drops the replaced versions kept since before `cutoff` (seconds since the Unix epoch), with
    /// their fragment files. Returns how many went.
    pub fn expire_replaced(&self, cutoff: u64) -> Result<usize, StoreError> {
        let mut due = Vec::new();
        for entry in self.db.prefix_iterator([TAG_REPLACED]) {
            let (k, v) = entry?;
            if k.first() != Some(&TAG_REPLACED) {
                break;
            }
            if serde_json::from_slice::<Replaced>(&v)?.at < cutoff {
                due.push(k.to_vec());
            }
        }
        let mut expired = 0;
        for at in due {
            let _guard = self.lock_for(&[&[TAG_OBJECT][..], &at[1..]].concat());
            // Looked at again under the key's lock: an overwrite or an undo may have moved it.
            let Some(kept) = self.get_json::<Replaced>(&at)?.filter(|k| k.at < cutoff) else {
                continue;
            };
            let mut batch = WriteBatch::default();
            batch.delete(&at);
            self.write_synced(batch)?;
            self.remove_fragments(&kept.record)?;
            expired += 1;
        }
        Ok(expired)
    }

    /// Reserves a key for one conditional write (`token`) while the key's current version is not
    /// newer than `expected`, the version the writer checked its condition against. A claim ends
    /// with `commit_claimed` or `release`, or after `CLAIM_TTL` when its writer went away.
    pub fn claim(
        &self,
        bucket: &BucketId,
        key: &str,
        token: &str,
        expected: Option<Version>,
    ) -> Result<ClaimAnswer, StoreError> {
        let db_key = object_key(bucket, key);
        let _guard = self.lock_for(&db_key);
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        claims.retain(|_, c| c.until > now);
        if claims.get(&db_key).is_some_and(|c| c.token != token) {
            return Ok(ClaimAnswer::Busy);
        }
        let current: Option<ObjectRecord> = self.get_json(&db_key)?;
        if current.is_some_and(|c| Some(c.version) > expected) {
            return Ok(ClaimAnswer::Changed);
        }
        claims.insert(
            db_key,
            Claim {
                token: token.to_string(),
                expected,
                until: now + CLAIM_TTL,
            },
        );
        Ok(ClaimAnswer::Granted)
    }

    /// Gives up a claim (a conditional write that did not get its quorum of claims).
    pub fn release(&self, bucket: &BucketId, key: &str, token: &str) {
        let db_key = object_key(bucket, key);
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        if claims.get(&db_key).is_some_and(|c| c.token == token) {
            claims.remove(&db_key);
        }
    }

    /// Commits a conditional write: only while its claim holds and the key's current version is
    /// still not newer than the one its condition was checked against (a plain write may have
    /// landed since the claim). The claim ends either way. Returns whether it was applied.
    pub fn commit_claimed(
        &self,
        bucket: &BucketId,
        key: &str,
        record: &ObjectRecord,
        upload_id: Option<&str>,
        token: &str,
    ) -> Result<bool, StoreError> {
        let db_key = object_key(bucket, key);
        let _guard = self.lock_for(&db_key);
        let claim = {
            let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
            match claims.get(&db_key) {
                Some(c) if c.token == token => claims.remove(&db_key),
                _ => None,
            }
        };
        let Some(claim) = claim.filter(|c| c.until > Instant::now()) else {
            return Ok(false);
        };
        let current: Option<ObjectRecord> = self.get_json(&db_key)?;
        if current.is_some_and(|c| Some(c.version) > claim.expected) {
            return Ok(false);
        }
        self.commit_locked(bucket, key, record, upload_id)
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

    /// Keeps a write meant for another node (hinted handoff) until it is handed over. Hints are
    /// keyed by the time they were taken, so they are handed over in the order they came.
    pub fn add_hint(&self, hint: &Hint) -> Result<(), StoreError> {
        let seq = Version::now();
        let mut key = vec![TAG_HINT];
        key.extend_from_slice(&seq.micros.to_be_bytes());
        key.extend_from_slice(&seq.salt.to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.put(key, serde_json::to_vec(hint)?);
        self.write_synced(batch)
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

    pub fn hint_count(&self) -> Result<u64, StoreError> {
        let mut count = 0;
        for entry in self.db.prefix_iterator([TAG_HINT]) {
            if entry?.0.first() != Some(&TAG_HINT) {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    pub fn remove_hint(&self, key: &[u8]) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.delete(key);
        self.write_synced(batch)
    }

    fn lock_for(&self, key: &[u8]) -> std::sync::MutexGuard<'_, ()> {
        self.locks[self.stripe(key)]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Which commit lock guards a key.
    fn stripe(&self, key: &[u8]) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        hasher.finish() as usize % COMMIT_LOCKS
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
///
/// Bytes come in by `write`, or are read straight into the buffer (`spare`, `fill`) by a receiver
/// that owns its connection; either way only `flush` and `commit` do I/O.
pub struct FragmentFile {
    file: File,
    /// Opened with O_DIRECT; false where the filesystem refused it and writes are buffered.
    direct: bool,
    staging: Staging,
    /// Bytes already written out of the buffer.
    written: u64,
    tmp: PathBuf,
    /// `target`'s directory (see `Store::dirs`).
    dir: Arc<File>,
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
    /// Copies `bytes` in, writing each buffer that fills.
    pub fn write(&mut self, mut bytes: &[u8]) -> Result<(), StoreError> {
        while !bytes.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.fill(n);
            bytes = &bytes[n..];
            if self.is_full() {
                self.flush()?;
            }
        }
        Ok(())
    }

    /// The free end of the buffer, for the next bytes to be read into; `fill` then counts them.
    /// Empty only when the buffer is full, which `flush` empties.
    pub fn spare(&mut self) -> &mut [u8] {
        let filled = self.staging.filled;
        &mut self.staging.window()[filled..]
    }

    /// Counts `n` bytes put at the start of `spare`.
    pub fn fill(&mut self, n: usize) {
        assert!(
            self.staging.filled + n <= DIRECT_CHUNK,
            "filled past the buffer"
        );
        self.staging.filled += n;
    }

    pub fn is_full(&self) -> bool {
        self.staging.filled == DIRECT_CHUNK
    }

    /// The bytes in the buffer, not yet written.
    pub fn pending(&mut self) -> &[u8] {
        let filled = self.staging.filled;
        &self.staging.window()[..filled]
    }

    /// Writes a full buffer out and empties it.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        debug_assert!(
            self.is_full(),
            "only whole buffers keep direct writes aligned"
        );
        self.file.write_all(self.staging.window())?;
        self.written += DIRECT_CHUNK as u64;
        self.staging.filled = 0;
        Ok(())
    }

    /// fsync, rename into place, fsync the directory: after this the fragment survives a crash.
    pub fn commit(mut self) -> Result<(), StoreError> {
        let filled = self.staging.filled;
        if !self.direct {
            self.file.write_all(&self.staging.window()[..filled])?;
        } else {
            let aligned = filled - filled % DIRECT_ALIGN;
            self.file.write_all(&self.staging.window()[..aligned])?;
            if aligned < filled {
                // The unaligned tail as a buffered write (fsync covers the whole file), on the
                // same descriptor rather than a second one opened by path.
                clear_direct(&self.file)?;
                self.file.write_all_at(
                    &self.staging.window()[aligned..filled],
                    self.written + aligned as u64,
                )?;
            }
        }
        self.file.sync_all()?;
        fs::rename(&self.tmp, &self.target)?;
        self.dir.sync_all()?;
        Ok(())
    }
}

/// Turns O_DIRECT off for the rest of a file's writes.
fn clear_direct(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL and F_SETFL only read and set the open file's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for FragmentFile {
    fn drop(&mut self) {
        // After a successful commit the temporary name is gone and this is a no-op.
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Of an object (`TAG_OBJECT`, `TAG_HISTORY`) or part (`TAG_PART`) record: the fragment this node
/// keeps, the parts whose fragment is a file, and k when the record says it (a part's does not).
fn file_parts(tag: u8, value: &[u8]) -> Result<(u8, Vec<PartData>, Option<usize>), StoreError> {
    let (fragment, parts, k) = if tag == TAG_PART {
        let part: PartRecord = serde_json::from_slice(value)?;
        (part.fragment, vec![part.part], None)
    } else {
        let record: ObjectRecord = serde_json::from_slice(value)?;
        let k = Some(record.data_shards as usize);
        (record.fragment, record.parts, k)
    };
    Ok((
        fragment,
        parts.into_iter().filter(|p| p.inline.is_none()).collect(),
        k,
    ))
}

fn object_key(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_OBJECT][..], bucket, key.as_bytes()].concat()
}

fn history_prefix(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_HISTORY][..], bucket, key.as_bytes(), &[0]].concat()
}

/// Versions inverted, so that a key's history reads newest first.
fn version_bytes(version: Version) -> [u8; VERSION_BYTES] {
    let mut out = [0; VERSION_BYTES];
    out[..8].copy_from_slice(&(!version.micros).to_be_bytes());
    out[8..].copy_from_slice(&(!version.salt).to_be_bytes());
    out
}

fn history_key(bucket: &BucketId, key: &str, version: Version) -> Vec<u8> {
    [history_prefix(bucket, key), version_bytes(version).to_vec()].concat()
}

fn version_from_bytes(bytes: &[u8]) -> Version {
    let mut micros = [0; 8];
    let mut salt = [0; 4];
    micros.copy_from_slice(&bytes[..8]);
    salt.copy_from_slice(&bytes[8..VERSION_BYTES]);
    Version {
        micros: !u64::from_be_bytes(micros),
        salt: !u32::from_be_bytes(salt),
    }
}

fn purged_prefix(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_PURGED][..], bucket, key.as_bytes(), &[0]].concat()
}

fn purged_key(bucket: &BucketId, key: &str, version: Version) -> Vec<u8> {
    [purged_prefix(bucket, key), version_bytes(version).to_vec()].concat()
}

fn fragment_names(record: &ObjectRecord) -> Vec<(String, u8)> {
    record
        .fragment_files()
        .map(|(id, index)| (id.to_string(), index))
        .collect()
}

fn superseded_key(at: u64, id: &str, index: u8) -> Vec<u8> {
    [
        &[TAG_SUPERSEDED][..],
        &at.to_be_bytes(),
        &[index],
        id.as_bytes(),
    ]
    .concat()
}

/// The time, fragment index and fragment id of a `TAG_SUPERSEDED` key; `None` for other keys.
fn parse_superseded_key(k: &[u8]) -> Option<(u64, u8, &str)> {
    let rest = k.strip_prefix(&[TAG_SUPERSEDED])?;
    let (at, rest) = rest.split_first_chunk::<8>()?;
    let (index, id) = rest.split_first()?;
    Some((
        u64::from_be_bytes(*at),
        *index,
        std::str::from_utf8(id).ok()?,
    ))
}

fn replaced_key(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_REPLACED][..], bucket, key.as_bytes()].concat()
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
    use crate::record::{fragment_id, Inline, PartData, Version};

    const BUCKET: BucketId = [7; 16];

    fn record(micros: u64, fragment_id: Option<&str>) -> ObjectRecord {
        ObjectRecord {
            version: Version { micros, salt: 0 },
            revision: 0,
            versioned: false,
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
                inline: fragment_id.is_none().then(|| Inline::encode(&[1, 2, 3])),
                checksum: None,
            }],
            tags: Vec::new(),
            modified: None,
        }
    }

    /// A store in a fresh temporary folder, which lasts as long as the returned guard.
    fn open() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn write_fragment(store: &Store, id: &str) {
        let mut file = store.create_fragment(id, 1).unwrap();
        file.write(b"frame").unwrap();
        file.commit().unwrap();
    }

    #[test]
    fn only_old_fragment_files_that_nothing_names_are_orphans() {
        let (_dir, store) = open();
        let [committed, parted, hinted, orphan, young] =
            ["committed", "parted", "hinted", "orphan", "young"]
                .map(|n| fragment_id(&[n.as_bytes()]));
        for id in [&committed, &parted, &hinted, &orphan, &young] {
            write_fragment(&store, id);
        }
        store
            .commit_object(&BUCKET, "k", &record(10, Some(&committed)), None)
            .unwrap();
        let mut part = record(11, Some(&parted)).parts.remove(0);
        part.number = 1;
        let part = PartRecord {
            version: Version {
                micros: 11,
                salt: 0,
            },
            fragment: 1,
            part,
        };
        store.put_part("upload", &part).unwrap();
        store
            .add_hint(&Hint {
                target: "z1-n1".into(),
                method: "POST".into(),
                path: "/v1/commit".into(),
                body: "{}".into(),
                fragments: vec![crate::hints::HintedFragment {
                    id: hinted.clone(),
                    index: 1,
                    size: 3,
                    block_size: 16,
                }],
            })
            .unwrap();
        let day = Duration::from_secs(86_400);
        let two_days_ago = std::time::SystemTime::now() - 2 * day;
        for id in [&committed, &parted, &hinted, &orphan] {
            let file = File::options()
                .write(true)
                .open(store.fragment_path(id, 1))
                .unwrap();
            file.set_modified(two_days_ago).unwrap();
        }
        let cutoff = std::time::SystemTime::now() - day;
        assert_eq!(store.remove_orphans(cutoff).unwrap(), 1);
        assert!(!store.fragment_path(&orphan, 1).exists());
        for id in [&committed, &parted, &hinted, &young] {
            assert!(store.fragment_path(id, 1).exists());
        }
        assert_eq!(store.remove_orphans(cutoff).unwrap(), 0);
    }

    /// Fragment 1 of `record`'s three bytes [1, 2, 3] (k = 4, one stripe of one-byte blocks).
    fn write_valid_fragment(store: &Store, id: &str) {
        let mut file = store.create_fragment(id, 1).unwrap();
        file.write(&[2]).unwrap();
        file.write(&erasure::block_hash(0, 1, &[2])).unwrap();
        file.commit().unwrap();
    }

    #[test]
    fn scrubbing_finds_rotten_short_and_missing_fragment_files() {
        let (_dir, store) = open();
        let ids: Vec<String> = ["good", "rot", "short", "lost"]
            .iter()
            .map(|name| fragment_id(&[name.as_bytes()]))
            .collect();
        for (i, (name, id)) in ["good", "rot", "short", "lost"]
            .iter()
            .zip(&ids)
            .enumerate()
        {
            write_valid_fragment(&store, id);
            let record = record(10 + i as u64, Some(id));
            assert!(store.commit_object(&BUCKET, name, &record, None).unwrap());
        }
        let path = |i: usize| store.fragment_path(&ids[i], 1);
        let mut rotten = fs::read(path(1)).unwrap();
        rotten[0] ^= 1;
        fs::write(path(1), rotten).unwrap();
        fs::write(path(2), [2]).unwrap();
        fs::remove_file(path(3)).unwrap();

        let batch = store.scrub_batch(None, 100, 4).unwrap();
        assert_eq!(batch.len(), 4, "every fragment file a record names");
        let verdicts: HashMap<String, Scrubbed> = batch
            .iter()
            .map(|t| {
                (
                    t.fragment_id.clone(),
                    store.scrub_fragment(t, |_| {}).unwrap(),
                )
            })
            .collect();
        assert_eq!(verdicts[&ids[0]], Scrubbed::Good(33));
        assert_eq!(verdicts[&ids[1]], Scrubbed::Corrupt);
        assert_eq!(verdicts[&ids[2]], Scrubbed::Corrupt);
        assert_eq!(verdicts[&ids[3]], Scrubbed::Missing);
        assert!(path(0).exists(), "a good file stays");
        assert!(
            !path(1).exists() && !path(2).exists(),
            "corrupt files are moved aside"
        );
        let aside = fs::read_dir(store.fragments.join("corrupt"))
            .unwrap()
            .count();
        assert_eq!(aside, 2);

        // Batches resume after the position they reached, and an empty one ends the pass.
        let first = store.scrub_batch(None, 1, 4).unwrap();
        let rest = store.scrub_batch(Some(&first[0].position), 100, 4).unwrap();
        assert_eq!(rest.len(), 3);
        assert!(rest.iter().all(|t| t.position > first[0].position));
        let last = &rest[2].position;
        assert!(store.scrub_batch(Some(last), 100, 4).unwrap().is_empty());
    }

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
    fn fragments_of_any_length_and_chunking_read_back() {
        let (_dir, store) = open();
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
        let (dir, store) = open();
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

    fn versioned(micros: u64, fragment_id: Option<&str>) -> ObjectRecord {
        ObjectRecord {
            versioned: true,
            ..record(micros, fragment_id)
        }
    }

    fn v(micros: u64) -> Version {
        Version { micros, salt: 0 }
    }

    fn version_list(
        store: &Store,
        key_marker: Option<&str>,
        marker: Option<VersionRef>,
        limit: usize,
    ) -> Vec<(String, String)> {
        let answer = store
            .list_versions(&VersionListRequest {
                bucket: BUCKET,
                prefix: String::new(),
                key_marker: key_marker.map(String::from),
                version_marker: marker,
                delimiter: None,
                limit,
            })
            .unwrap();
        answer
            .items
            .iter()
            .map(|item| match item {
                ListItem::Key(e) => (e.key.clone(), e.version_ref().to_string()),
                ListItem::Prefix(p) => (p.clone(), String::new()),
            })
            .collect()
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
            .purge(&BUCKET, "k", VersionRef::Id(v(30)))
            .unwrap()
            .unwrap();
        assert!(removed.deleted);
        assert_eq!(store.object(&BUCKET, "k").unwrap().unwrap().version, v(20));
        assert!(store
            .purge(&BUCKET, "k", VersionRef::Id(v(20)))
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
            store.current(&BUCKET, "k").unwrap().purged,
            [v(30), v(20)],
            "purged versions newer than the current one"
        );
        assert!(store
            .purge(&BUCKET, "k", VersionRef::Null)
            .unwrap()
            .is_none());
        assert!(store
            .purge(&BUCKET, "k", VersionRef::Id(v(10)))
            .unwrap()
            .is_some());
        assert!(
            store.object(&BUCKET, "k").unwrap().is_none(),
            "no versions left"
        );
        assert!(version_list(&store, None, None, 10).is_empty());
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

    #[test]
    fn claims_admit_one_conditional_writer() {
        let (_dir, store) = open();
        assert_eq!(
            store.claim(&BUCKET, "k", "one", None).unwrap(),
            ClaimAnswer::Granted
        );
        assert_eq!(
            store.claim(&BUCKET, "k", "two", None).unwrap(),
            ClaimAnswer::Busy
        );
        assert!(!store
            .commit_claimed(&BUCKET, "k", &record(10, None), None, "two")
            .unwrap());
        assert!(store
            .commit_claimed(&BUCKET, "k", &record(10, None), None, "one")
            .unwrap());
        assert_eq!(
            store.claim(&BUCKET, "k", "two", None).unwrap(),
            ClaimAnswer::Changed
        );
        assert_eq!(
            store.claim(&BUCKET, "k", "two", Some(v(10))).unwrap(),
            ClaimAnswer::Granted
        );
        store.release(&BUCKET, "k", "two");
        assert_eq!(
            store.claim(&BUCKET, "k", "three", Some(v(10))).unwrap(),
            ClaimAnswer::Granted
        );
        // A plain write between claim and commit makes the conditional commit fail.
        store
            .commit_object(&BUCKET, "k", &record(20, None), None)
            .unwrap();
        assert!(!store
            .commit_claimed(&BUCKET, "k", &record(30, None), None, "three")
            .unwrap());
    }
}
