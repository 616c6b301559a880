//! The on-disk format of a data dir (the key layout of `keys`, the records' encoding, the fragment
//! files' frames), recorded in a file beside the metadata database, so that a node never opens
//! data written in a format it does not know, and a release that changes the format knows what
//! it has to convert.
//!
//! Format 1 is what releases wrote before the file existed: a data dir with a metadata database
//! and no `format` file is format 1. Every format since is read by the releases after it
//! (`tests/upgrade.rs` opens a cluster written in each).
//!
//! Format 2 added fragment frames whose hash takes in the block's position after the block
//! (`erasure::FrameFormat`). A part's record names that format (`PartData::frames`), and a part
//! that names none keeps format 1's frames, so a format 1 data dir opens with nothing to convert.
//! A release before format 2 must not open a data dir of format 2: it would take every newer
//! frame for a damaged one.
//!
//! Format 3 added frames whose hash ends in a CRC32C that readers check instead of blake3
//! (`erasure::FrameFormat::Checksummed`); parts keep naming their own format, so a format 2 data
//! dir opens with nothing to convert, and a release before format 3 must not open one of
//! format 3, for the same reason.
//!
//! Format 4 added the marker of a key with purged versions (`keys::TAG_PURGED`), which readers
//! look up before they scan for those versions: opened, a data dir of an earlier format gets
//! the markers of its purged versions (`Store::mark_purged_keys`) before it is recorded as
//! format 4. A release before format 4 must not open one of format 4: it would write purges
//! without markers, which the newer one would then not see.

use super::StoreError;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// The format this release writes.
pub const CURRENT: u32 = 4;
/// The oldest format this release opens.
const OLDEST: u32 = 1;
/// The first format whose purges mark their keys: a data dir of an earlier one is given the
/// markers when opened (`Store::mark_purged_keys`).
pub const PURGE_MARKERS: u32 = 4;

const FILE: &str = "format";
const PREFIX: &str = "tessera-store-format ";

/// The format recorded in the data dir, checked before the database is opened to be one this
/// release opens; `None` when nothing is recorded: a new data dir, or one in format 1.
/// Errors: a format newer than `CURRENT` or older than `OLDEST`, or a file that does not say.
pub(super) fn recorded(data_dir: &Path) -> Result<Option<u32>, StoreError> {
    let path = data_dir.join(FILE);
    let found = match fs::read_to_string(&path) {
        Ok(text) => text
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.trim_end().parse::<u32>().ok())
            .ok_or_else(|| StoreError::UnreadableFormat(path.display().to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !(OLDEST..=CURRENT).contains(&found) {
        return Err(StoreError::UnknownFormat {
            found,
            oldest: OLDEST,
            current: CURRENT,
        });
    }
    Ok(Some(found))
}

/// Records that the data dir is now in the current format: written aside, synced, renamed over,
/// and the directory synced, so a crash leaves the old record or the new one.
pub(super) fn record(data_dir: &Path) -> Result<(), StoreError> {
    let aside = data_dir.join(format!("{FILE}.new"));
    let mut file = File::create(&aside)?;
    file.write_all(format!("{PREFIX}{CURRENT}\n").as_bytes())?;
    file.sync_all()?;
    fs::rename(&aside, data_dir.join(FILE))?;
    File::open(data_dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn a_new_data_dir_is_recorded_in_the_current_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), None);
        drop(Store::open(dir.path(), "test").unwrap());
        assert_eq!(recorded(dir.path()).unwrap(), Some(CURRENT));
        let text = fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(text, format!("tessera-store-format {CURRENT}\n"));
    }

    #[test]
    fn a_data_dir_from_before_the_format_file_is_recorded_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), "test").unwrap());
        fs::remove_file(dir.path().join(FILE)).unwrap();
        assert_eq!(recorded(dir.path()).unwrap(), None);
        drop(Store::open(dir.path(), "test").unwrap());
        assert_eq!(recorded(dir.path()).unwrap(), Some(CURRENT));
    }

    #[test]
    fn a_newer_or_unreadable_format_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path(), "test").unwrap());
        let path = dir.path().join(FILE);
        let newer = format!("tessera-store-format {}\n", CURRENT + 1);
        fs::write(&path, &newer).unwrap();
        let Err(e) = Store::open(dir.path(), "test") else {
            panic!("a newer format was opened");
        };
        assert!(matches!(e, StoreError::UnknownFormat { found, .. } if found == CURRENT + 1));
        assert!(e.to_string().contains("newer release"), "{e}");
        assert_eq!(fs::read_to_string(&path).unwrap(), newer);

        fs::write(&path, "something else\n").unwrap();
        assert!(matches!(
            Store::open(dir.path(), "test"),
            Err(StoreError::UnreadableFormat(_))
        ));
    }
}
