//! One node's disk: fragment files plus RocksDB metadata.
//!
//! Invariants:
//! - A fragment file is only ever visible under its final name complete, and durable once its
//!   commit returns: it is written without a name (`O_TMPFILE`, or under `fragments/tmp/` where
//!   the filesystem cannot), linked (or renamed) into place, fsynced, and the directory fsynced.
//!   A crash before the syncs return may leave it incomplete under its name, unnamed by any
//!   record: an orphan. An existing file is only replaced by a rename. `tmp/` is emptied on open.
//! - Every metadata write is a synced RocksDB write, except the removal queue's deletions, which
//!   a crash only makes happen twice; a record only replaces an older version.
//! - Every change to a key's records (commit, purge, undo, expiry of its replaced version) holds
//!   that key's commit lock (`lock_for`), so "newer version wins" is a read-compare-write.
//! - Fragment files of a superseded record are queued for removal (`TAG_SUPERSEDED`) in the same
//!   synced write as the newer record, and removed once no read can still be opening them
//!   (`remove_superseded`). Those of the version an inline record replaced are kept longer
//!   (`TAG_REPLACED`).
//! - Commits that arrive together are written by one synced write (`group_commit`), each all or
//!   nothing: a commit that fails adds none of its writes to the group's.
//!
//! The modules: `format` (the data dir's format version), `keys` (the key layout),
//! `fragment_file` (fragment files and direct I/O),
//! `group_commit` (the group committer), `versions` (which commit wins, history, purge, undo),
//! `claims` (conditional writes), `listing` (listings and digests), `maintenance` (removal of
//! superseded and orphaned files, expiry, scrubbing), `metadata` (buckets, uploads, parts,
//! settings, hints), `outbox` (changes queued for peer regions).

mod claims;
mod format;
mod fragment_file;
mod group_commit;
mod keys;
mod listing;
mod maintenance;
mod metadata;
mod outbox;
#[cfg(test)]
mod testing;
mod versions;

pub use fragment_file::FragmentFile;
pub use maintenance::{Damaged, Repair, ScrubTarget, Scrubbed};
pub use versions::{FromStored, StoredRecord};

use claims::Claim;
use fragment_file::BufferPool;
use group_commit::{run_committer, CommitJob};
use rocksdb::{BlockBasedOptions, Cache, Env, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

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
    #[error("the version is protected by Object Lock")]
    Locked,
    #[error(
        "the data dir is in store format {found}, and this release reads formats {oldest} to \
         {current}: a newer format needs the newer release that wrote it"
    )]
    UnknownFormat {
        found: u32,
        oldest: u32,
        current: u32,
    },
    #[error("{0} does not name a store format")]
    UnreadableFormat(String),
}

/// Commits to one key are serialised by one of these locks, so that "newer version wins" is a
/// read-compare-write without a global lock (concurrent synced writes still share WAL fsyncs).
const COMMIT_LOCKS: usize = 64;
/// One RocksDB memtable (two at most, the one being flushed and the next), on average over
/// nodes: each node's is this give or take a quarter (`memtable_bytes`).
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
    /// `fragments/tmp/`, where new fragment files are made without a name; `None` where the
    /// filesystem cannot (`fragment_file::nameless_files_in`).
    nameless_in: Option<File>,
    commits: mpsc::Sender<CommitJob>,
    /// Pending hints by the node they are for, kept beside the hints themselves (read from them
    /// at open, then counted as they come and go): a node's health reports them twice a second
    /// to every gateway, which must not mean a scan of every hint each time.
    hint_targets: Mutex<BTreeMap<String, u64>>,
}

/// This node's memtable size: `MEMTABLE_BYTES` give or take a quarter, fixed by the node's id,
/// so that the nodes of one cluster differ (their ids do, wherever their data dirs are) and a
/// node keeps its size across restarts.
fn memtable_bytes(node: &str) -> usize {
    let hash = blake3::hash(node.as_bytes());
    let spread = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
    let quarter = MEMTABLE_BYTES / 4;
    MEMTABLE_BYTES - quarter + (spread % (2 * quarter as u64)) as usize
}

impl Store {
    /// Opens (or creates) the store of the node `node` (its id) in `data_dir`.
    pub fn open(data_dir: &Path, node: &str) -> Result<Arc<Store>, StoreError> {
        let format = format::recorded(data_dir)?;
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
        // The holders of a shard take the same writes, so with memtables of one size they
        // flushed within milliseconds of each other, and compacted together: every write quorum
        // then waited on a node that was busy. Sizes spread over nodes keep them apart; under
        // 4 KiB PUTs at 32 in flight the p99 fell from 32-38 ms to 22-28 ms.
        opts.set_write_buffer_size(memtable_bytes(node));
        opts.set_max_write_buffer_number(2);
        // A WAL written over an old one's blocks is synced without a metadata change: appending
        // to a new file made every commit's fdatasync also commit the file system's journal,
        // which waits for the data other files (flushes, compactions, other nodes) put in it.
        // Four recycled logs are about four memtables of disk (RocksDB's recyclable record
        // format tells their old records from new ones after a crash).
        opts.set_recycle_log_file_num(4);
        // Levels sized for those memtables rather than RocksDB's 64 MiB ones: with the default
        // 256 MiB base level every compaction of L0 rewrote the whole database (32, 65, then 98
        // MB in a 15 s PUT run), which made the disk, not the CPU, the limit of small PUTs.
        opts.set_max_bytes_for_level_base(4 * MEMTABLE_BYTES as u64);
        opts.set_target_file_size_base(MEMTABLE_BYTES as u64);
        // Flushes and compactions run at the lowest CPU priority (nice 19): a request waits for
        // its commit's fsync, not for them, and when the cores are busy they only took the cores
        // from the requests. 4 KiB PUTs at 32 in flight kept their rate with it and their p99 fell
        // from 33-38 ms to 26-31 ms. They still run whenever a core is free, and RocksDB stalls
        // writes if they fall behind (counted in `tessera_rocksdb_write_stall_seconds_total`).
        let mut env = Env::new()?;
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        opts.set_env(&env);
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
            nameless_in: fragment_file::nameless_files_in(&tmp),
            commits,
            hint_targets: Mutex::default(),
        });
        if format != Some(format::CURRENT) {
            if format.unwrap_or(1) < format::PURGE_MARKERS {
                store.mark_purged_keys()?;
            }
            format::record(data_dir)?;
        }
        *store.hint_targets.lock().unwrap_or_else(|p| p.into_inner()) = store.count_hints()?;
        let weak = Arc::downgrade(&store);
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || run_committer(weak, jobs))?;
        Ok(store)
    }

    /// Seconds RocksDB has held writes back since the store was opened (see
    /// `metrics::write_stall_secs`); `None` if RocksDB does not say.
    pub fn write_stall_secs(&self) -> Option<f64> {
        let stats = self.db.property_value("rocksdb.dbstats").ok()??;
        crate::metrics::write_stall_secs(&stats)
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

#[cfg(test)]
mod tests {
    use super::memtable_bytes;
    use super::testing::open;

    /// The nice value of each of this process's threads whose name starts with `prefix`.
    fn nice_of_threads(prefix: &str) -> Vec<i64> {
        let tasks = std::fs::read_dir("/proc/self/task").unwrap();
        let mut nice = Vec::new();
        for task in tasks.flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The fields after the name, which may hold spaces: state is the 3rd, nice the 19th.
            let Some((_, fields)) = stat.rsplit_once(')') else {
                continue;
            };
            if comm.starts_with(prefix) {
                nice.push(fields.split_whitespace().nth(16).unwrap().parse().unwrap());
            }
        }
        nice
    }

    #[test]
    fn the_nodes_of_a_dev_cluster_take_memtables_of_their_own_size() {
        let sizes: Vec<usize> = ["z1-n1", "z1-n2", "z2-n1", "z2-n2", "z3-n1", "z3-n2"]
            .map(memtable_bytes)
            .into();
        for size in &sizes {
            assert!((6 << 20..10 << 20).contains(size), "{size}");
        }
        let mut distinct = sizes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), sizes.len(), "{sizes:?}");
        let spread = distinct[distinct.len() - 1] - distinct[0];
        assert!(spread > 1 << 20, "{sizes:?}");
        assert_eq!(memtable_bytes("z1-n1"), sizes[0]);
    }

    #[test]
    fn flushes_and_compactions_run_at_the_lowest_cpu_priority() {
        let (_dir, store) = open();
        // Two overlapping tables, then a manual compaction: a job for each pool, whose threads
        // take their priority when they pick one up.
        for value in [&b"one"[..], b"two"] {
            store.db.put(b"s-nice", value).unwrap();
            store.db.flush().unwrap();
        }
        store.db.compact_range(None::<&[u8]>, None::<&[u8]>);
        for pool in ["rocksdb:high", "rocksdb:low"] {
            let nice = nice_of_threads(pool);
            assert!(nice.contains(&19), "{pool} threads at nice {nice:?}");
        }
    }
}
