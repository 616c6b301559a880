//! Fragment files: written with direct I/O from pooled aligned buffers, nameless or under a
//! temporary name, named and made durable by `FragmentFile::commit`, and read back whole, in
//! ranges, or from the page cache without blocking.

use super::{Store, StoreError};
use crate::record::ObjectRecord;
use std::ffi::CString;
use std::fs::{self, File};
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
///
/// The file has no name until `commit` links it into place (`O_TMPFILE`): a name under
/// `fragments/tmp/` cost a directory entry made, synced (ext4 without a journal syncs a new
/// file's parent with it) and renamed away, for every fragment. It is still made in `tmp/`,
/// whose inodes the filesystem allocates near one another: made in their own directories (256
/// of them, spread over the disk) they cost the nodes more CPU, not less. Where the filesystem
/// cannot make nameless files, or the fragment's name is taken, the file gets a name under
/// `tmp/` and is renamed. A nameless file that a crash leaves is the filesystem's to free (its
/// orphan list; without a journal, `fsck`).
pub struct FragmentFile {
    file: File,
    /// Opened with O_DIRECT; false where the filesystem refused it and writes are buffered.
    direct: bool,
    staging: Staging,
    /// Bytes already written out of the buffer.
    written: u64,
    name: Name,
    /// `target`'s directory (see `Store::dirs`).
    dir: Arc<File>,
    target: PathBuf,
}

/// Where a fragment file is until its commit has put it in place.
enum Name {
    /// Made with `O_TMPFILE`, not linked anywhere yet.
    Nameless,
    /// Under `fragments/tmp/`, to be renamed into place; removed if the file is dropped.
    Temporary(PathBuf),
    /// Under its own name.
    Placed,
}

/// Direct-I/O buffers kept for the next fragments: a fresh megabyte costs page faults and the
/// kernel's zeroing of every page, which took a tenth of a node's CPU on large PUTs.
#[derive(Clone, Default)]
pub(super) struct BufferPool(Arc<Mutex<Vec<Vec<u8>>>>);

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

    /// Names the file (links a nameless one into place, or renames it from `tmp/`) and syncs it
    /// and its directory: after this the fragment survives a crash.
    ///
    /// A nameless file is linked once its last byte is written, so that no reader ever finds it
    /// short, and synced after, so that its inode goes to disk with its link: synced nameless, a
    /// crash could leave a directory entry for an inode whose count of links on disk is zero.
    /// Until the syncs return a crash may leave it under its name incomplete, which no record
    /// names (records are committed after this returns) and which goes as an orphan
    /// (`remove_orphans`); an existing file is only ever replaced by a rename.
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
        if let Name::Nameless = self.name {
            self.name = match link(&self.file, &self.target) {
                Ok(()) => Name::Placed,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let tmp = temporary_path(&self.target);
                    link(&self.file, &tmp)?;
                    Name::Temporary(tmp)
                }
                Err(e) => return Err(e.into()),
            };
        }
        self.file.sync_all()?;
        if let Name::Temporary(tmp) = &self.name {
            fs::rename(tmp, &self.target)?;
            self.name = Name::Placed;
        }
        self.dir.sync_all()?;
        Ok(())
    }
}

/// A name under `fragments/tmp/` for a file that becomes the fragment file `target`.
fn temporary_path(target: &Path) -> PathBuf {
    let fragments = target
        .parent()
        .and_then(Path::parent)
        .expect("fragment paths are fragments/<dir>/<name>");
    let name = target.file_name().expect("fragment paths have a name");
    let mut tmp = name.to_os_string();
    tmp.push(format!(".{:016x}", rand::random::<u64>()));
    fragments.join("tmp").join(tmp)
}

/// A file without a name in `dir`'s filesystem (`O_TMPFILE`), for `link` to name; freed by the
/// kernel if it is closed unnamed.
fn create_nameless(dir: &File, direct: bool) -> std::io::Result<File> {
    let flags = libc::O_TMPFILE
        | libc::O_WRONLY
        | libc::O_CLOEXEC
        | if direct { libc::O_DIRECT } else { 0 };
    // SAFETY: the path is a NUL-terminated literal and `dir` an open directory; the descriptor
    // returned is new and owned by the `File` made of it.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c".".as_ptr(), flags, 0o666 as libc::c_uint) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor just opened, owned by nothing else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Gives a nameless file the name `path` (in the same filesystem), through its `/proc/self/fd`
/// link: `linkat` with `AT_EMPTY_PATH` would need `CAP_DAC_READ_SEARCH`. Fails with
/// `AlreadyExists` if `path` is taken.
fn link(file: &File, path: &Path) -> std::io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: both paths are NUL-terminated and outlive the call.
    let linked = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if linked != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `tmp`, opened to make nameless files in, if they can be made there and linked into place
/// (not on filesystems without `O_TMPFILE`, nor without `/proc`).
pub(super) fn nameless_files_in(tmp: &Path) -> Option<File> {
    let dir = File::open(tmp).ok()?;
    let probe = tmp.join("nameless-probe");
    link(&create_nameless(&dir, false).ok()?, &probe).ok()?;
    fs::remove_file(&probe).ok()?;
    Some(dir)
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
        if let Name::Temporary(tmp) = &self.name {
            let _ = fs::remove_file(tmp);
        }
    }
}

impl Store {
    pub fn fragment_path(&self, id: &str, index: u8) -> PathBuf {
        self.fragments.join(&id[..2]).join(format!("{id}.{index}"))
    }

    /// Starts a fragment file, nameless where the filesystem allows; `FragmentFile::commit` names
    /// it and makes it durable.
    pub fn create_fragment(&self, id: &str, index: u8) -> Result<FragmentFile, StoreError> {
        self.create_fragment_file(id, index, self.nameless_in.as_ref())
    }

    /// A fragment file made nameless in `nameless_in`, or else under a temporary name.
    fn create_fragment_file(
        &self,
        id: &str,
        index: u8,
        nameless_in: Option<&File>,
    ) -> Result<FragmentFile, StoreError> {
        let target = self.fragment_path(id, index);
        let dir = self.fragment_dir(&target)?;
        let mut tmp = None;
        let mut open = |direct: bool| match nameless_in {
            Some(tmp_dir) => create_nameless(tmp_dir, direct),
            None => {
                let tmp = tmp.get_or_insert_with(|| temporary_path(&target));
                if direct {
                    File::options()
                        .write(true)
                        .create_new(true)
                        .custom_flags(libc::O_DIRECT)
                        .open(tmp)
                } else {
                    // The refused direct open may have made the file already.
                    File::create(tmp)
                }
            }
        };
        let (file, direct) = match open(true) {
            Ok(file) => (file, true),
            // Filesystems without direct I/O take buffered writes.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(false)?, false),
            Err(e) => return Err(e.into()),
        };
        Ok(FragmentFile {
            file,
            direct,
            staging: Staging::new(self.buffers.clone()),
            written: 0,
            name: tmp.map_or(Name::Nameless, Name::Temporary),
            dir,
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
    pub(super) fn remove_fragments(&self, record: &ObjectRecord) -> Result<(), StoreError> {
        for (id, index) in record.fragment_files() {
            self.remove_fragment(id, index)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fragment_id;
    use crate::store::testing::open;

    /// Both ways of making a file: under `tmp/`, and nameless where the filesystem allows.
    fn both_ways(store: &Store) -> Vec<Option<&File>> {
        let mut ways = vec![None];
        if let Some(tmp_dir) = &store.nameless_in {
            ways.push(Some(tmp_dir));
        }
        ways
    }

    #[test]
    fn fragments_of_any_length_and_chunking_read_back() {
        let (_dir, store) = open();
        for nameless_in in both_ways(&store) {
            let nameless = nameless_in.is_some();
            for len in [1, 4096, 5000, DIRECT_CHUNK, 2 * DIRECT_CHUNK + 4096 * 3 + 7] {
                let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                let id = fragment_id(&[&len.to_le_bytes(), &[nameless as u8]]);
                let mut file = store.create_fragment_file(&id, 2, nameless_in).unwrap();
                for chunk in data.chunks(65_537) {
                    file.write(chunk).unwrap();
                }
                file.commit().unwrap();
                let back = store.read_fragment(&id, 2, 0, len as u64).unwrap();
                assert!(back == data, "{len} bytes read back (nameless: {nameless})");
            }
        }
    }

    #[test]
    fn unfinished_fragments_never_appear() {
        let (dir, store) = open();
        let tmp = dir.path().join("fragments/tmp");
        for nameless_in in both_ways(&store) {
            let nameless = nameless_in.is_some();
            let id = fragment_id(&[b"x", &[nameless as u8]]);
            let mut file = store.create_fragment_file(&id, 0, nameless_in).unwrap();
            file.write(b"partial").unwrap();
            assert_eq!(fs::read_dir(&tmp).unwrap().count(), usize::from(!nameless));
            drop(file);
            assert!(!store.fragment_path(&id, 0).exists());
            assert!(matches!(
                store.read_fragment(&id, 0, 0, 1),
                Err(StoreError::NoSuchFragment)
            ));
            assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        }
    }

    #[test]
    fn a_fragment_committed_again_replaces_the_old_one_whole() {
        let (dir, store) = open();
        for nameless_in in both_ways(&store) {
            let nameless = nameless_in.is_some();
            let id = fragment_id(&[b"again", &[nameless as u8]]);
            for data in [&b"the first version"[..], &[7u8; 5000][..]] {
                let mut file = store.create_fragment_file(&id, 3, nameless_in).unwrap();
                file.write(data).unwrap();
                file.commit().unwrap();
                assert_eq!(store.read_fragment(&id, 3, 0, 1 << 20).unwrap(), data);
            }
            let tmp = dir.path().join("fragments/tmp");
            assert_eq!(fs::read_dir(tmp).unwrap().count(), 0);
        }
    }
}
