//! Upkeep of the disk: removing superseded fragment files after their grace period, expiring
//! kept replaced versions, removing orphaned fragment files, and scrubbing fragment files against
//! their block hashes.

use super::keys::{
    parse_superseded_key, TAG_HINT, TAG_HISTORY, TAG_OBJECT, TAG_PART, TAG_REPLACED, TAG_SUPERSEDED,
};
use super::versions::Replaced;
use super::{Store, StoreError};
use crate::hints::Hint;
use crate::protocol::unix_now;
use crate::record::{ObjectRecord, PartData, PartRecord};
use erasure::{FragmentVerifier, StripeLayout};
use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

/// One fragment file a record names, as the scrubber checks it.
#[derive(Clone, Debug)]
pub struct ScrubTarget {
    /// The record's key: where the next batch resumes, and a checkpoint across restarts.
    pub position: Vec<u8>,
    pub fragment_id: String,
    pub slot: u8,
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

/// A fragment file the scrubber found corrupt or missing, kept until it is rebuilt (by a heal
/// or a read repair) or no longer needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damaged {
    /// The key of the record that named it, in hex.
    pub position: String,
    pub fragment_id: String,
    /// The fragment's slot (its name in the admin API's JSON is `fragment`).
    #[serde(rename = "fragment")]
    pub slot: u8,
}

impl Damaged {
    pub fn of(target: &ScrubTarget) -> Damaged {
        Damaged {
            position: hex::encode(&target.position),
            fragment_id: target.fragment_id.clone(),
            slot: target.slot,
        }
    }
}

/// What became of a damaged fragment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repair {
    /// A good copy is in its place again.
    Rebuilt,
    /// Still lacking, and its record still names it.
    Awaiting,
    /// Its record no longer names it (the version was overwritten or deleted): nothing to rebuild.
    Superseded,
}

/// Bytes the scrubber reads at a time.
const SCRUB_CHUNK: usize = 1 << 20;

impl Store {
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
                        file.map(|id| (id, part.slot)).into_iter().collect()
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
                let Ok((slot, parts, k_of)) = file_parts(tag, &v) else {
                    tracing::warn!(key = %hex::encode(&k), "scrub: unreadable record skipped");
                    continue;
                };
                for part in parts {
                    let layout = StripeLayout {
                        block_size: (part.block_size as usize).max(1),
                        ..part.layout(k_of.unwrap_or(data_shards).max(1))
                    };
                    batch.push(ScrubTarget {
                        position: k.to_vec(),
                        fragment_id: part.fragment_id,
                        slot,
                        layout,
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
        let (id, index) = (&target.fragment_id, target.slot);
        let file = match self.open_fragment(id, index) {
            Ok(file) => file,
            Err(StoreError::NoSuchFragment) => {
                return Ok(if self.names(&target.position, id)? {
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

    /// Whether a fragment file the scrubber found damaged has been rebuilt since.
    pub fn repair_state(&self, damaged: &Damaged) -> Result<Repair, StoreError> {
        let path = self.fragment_path(&damaged.fragment_id, damaged.slot);
        if fs::metadata(path).is_ok() {
            return Ok(Repair::Rebuilt);
        }
        let position = hex::decode(&damaged.position).unwrap_or_default();
        Ok(if self.names(&position, &damaged.fragment_id)? {
            Repair::Awaiting
        } else {
            Repair::Superseded
        })
    }

    /// Whether the record at `position` still names the fragment `id`.
    fn names(&self, position: &[u8], id: &str) -> Result<bool, StoreError> {
        let (Some(tag), Some(value)) = (position.first(), self.db.get_pinned(position)?) else {
            return Ok(false);
        };
        let (_, parts, _) = file_parts(*tag, &value)?;
        Ok(parts.iter().any(|p| p.fragment_id == id))
    }
}

/// Of an object (`TAG_OBJECT`, `TAG_HISTORY`) or part (`TAG_PART`) record: the fragment this node
/// keeps, the parts whose fragment is a file, and k when the record says it (a part's does not).
fn file_parts(tag: u8, value: &[u8]) -> Result<(u8, Vec<PartData>, Option<usize>), StoreError> {
    let (fragment, parts, k) = if tag == TAG_PART {
        let part: PartRecord = serde_json::from_slice(value)?;
        (part.slot, vec![part.part], None)
    } else {
        let record: ObjectRecord = serde_json::from_slice(value)?;
        let k = Some(record.data_shards as usize);
        (record.slot, record.parts, k)
    };
    Ok((
        fragment,
        parts.into_iter().filter(|p| p.inline.is_none()).collect(),
        k,
    ))
}

fn fragment_names(record: &ObjectRecord) -> Vec<(String, u8)> {
    record
        .fragment_files()
        .map(|(id, index)| (id.to_string(), index))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{fragment_id, Version};
    use crate::store::testing::{open, record, write_fragment, BUCKET};
    use std::collections::HashMap;
    use std::fs::File;
    use std::time::Duration;

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
            slot: 1,
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
                    frames: Default::default(),
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

    /// Fragment 1 of `record`'s three bytes [1, 2, 3] (k = 4, one stripe of one-byte blocks), in
    /// format 1, which its record implies by naming none.
    fn write_valid_fragment(store: &Store, id: &str) {
        let mut file = store.create_fragment(id, 1).unwrap();
        file.write(&[2]).unwrap();
        let hash = erasure::FrameFormat::PositionFirst.block_hash(0, 1, &[2]);
        file.write(&hash).unwrap();
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
}
