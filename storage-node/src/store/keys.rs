//! The key layout of the metadata database. Every key starts with a one-byte tag naming what it
//! holds; a bucket is its 16-byte id and a version 12 bytes (`VERSION_BYTES`). Keys sort so that
//! one prefix scan finds what a request needs: a bucket's objects in key order, a key's history
//! and purged versions newest first, the removal queue and hints oldest first.
//!
//! | tag | key                                           | value                 |
//! |-----|-----------------------------------------------|-----------------------|
//! | `b` | name                                          | `BucketRecord`        |
//! | `o` | bucket, key                                   | current `ObjectRecord`|
//! | `h` | bucket, key, 0, version inverted              | older `ObjectRecord`  |
//! | `x` | bucket, key, 0, version inverted              | empty                 |
//! | `x` | bucket, key, 0 (the key has purged versions)  | empty                 |
//! | `r` | bucket, key                                   | `Replaced`            |
//! | `u` | bucket, upload id                             | `UploadRecord`        |
//! | `p` | upload id, `/`, part number (big-endian u32)  | `PartRecord`          |
//! | `d` | time (big-endian u64), fragment index, id     | empty                 |
//! | `s` | name                                          | raw bytes             |
//! | `w` | time taken (micros, salt; big-endian)         | `Hint`                |
//! | `q` | target length, target, version, bucket, key   | `Queued`              |
//! | `Q` | bucket, key, 0, version inverted              | `OutboxState`         |
//!
//! This is the disk format: changing a tag or the order of a key's parts needs a migration.

use crate::record::{BucketId, Version};

pub(super) const TAG_BUCKET: u8 = b'b';
pub(super) const TAG_OBJECT: u8 = b'o';
pub(super) const TAG_UPLOAD: u8 = b'u';
pub(super) const TAG_PART: u8 = b'p';
pub(super) const TAG_SETTING: u8 = b's';
/// Access keys of the key table, by id.
pub(super) const TAG_KEY: u8 = b'k';
/// Writes kept for a holder that was down (see `crate::hints`).
pub(super) const TAG_HINT: u8 = b'w';
/// Non-current versions of a key: `h`, bucket, key, 0, then the version inverted (newest first).
pub(super) const TAG_HISTORY: u8 = b'h';
/// Versions purged from a key, laid out as the history; the value is empty. The bare prefix of
/// a key's purged versions (`purged_prefix`) is there too, from its first purge on: every read of
/// a key asks for its purged versions, and a point lookup of that marker (answered by the bloom
/// filters when it is absent, as it nearly always is) is far cheaper than a scan that finds none,
/// which had to seek in every SST file (format 4; see `format`).
pub(super) const TAG_PURGED: u8 = b'x';
/// The version a plain overwrite with an inline record replaced, with its fragment files: `r`,
/// bucket, key. An inline record's data exists only in the commits that carry it, so an overwrite
/// that reaches fewer than k holders cannot be read; readers then go back to this version and undo
/// the overwrite (`undo`). Kept until the key's next such overwrite or `expire_replaced`.
pub(super) const TAG_REPLACED: u8 = b'r';
/// Fragment files a commit superseded, to be removed after a grace period: `d`, the time they were
/// superseded (seconds since the Unix epoch, big-endian, so oldest first), the fragment index,
/// the fragment id. A read that found the older version a moment before the commit is still
/// opening them.
pub(super) const TAG_SUPERSEDED: u8 = b'd';
/// Changes queued for a peer region (see `outbox`): `q`, the target's length (one byte) and
/// name, the version (big-endian, so oldest first), the bucket, the key.
pub(super) const TAG_OUTBOX: u8 = b'q';
/// The peer regions a version is still queued for: `Q`, laid out as the history.
pub(super) const TAG_OUTBOX_STATE: u8 = b'Q';
/// The bytes of a version in a history or purge key.
pub(super) const VERSION_BYTES: usize = 12;

pub(super) fn object_key(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_OBJECT][..], bucket, key.as_bytes()].concat()
}

pub(super) fn history_prefix(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_HISTORY][..], bucket, key.as_bytes(), &[0]].concat()
}

/// Versions inverted, so that a key's history reads newest first.
pub(super) fn version_bytes(version: Version) -> [u8; VERSION_BYTES] {
    let mut out = [0; VERSION_BYTES];
    out[..8].copy_from_slice(&(!version.micros).to_be_bytes());
    out[8..].copy_from_slice(&(!version.salt).to_be_bytes());
    out
}

pub(super) fn history_key(bucket: &BucketId, key: &str, version: Version) -> Vec<u8> {
    [history_prefix(bucket, key), version_bytes(version).to_vec()].concat()
}

pub(super) fn version_from_bytes(bytes: &[u8]) -> Version {
    let mut micros = [0; 8];
    let mut salt = [0; 4];
    micros.copy_from_slice(&bytes[..8]);
    salt.copy_from_slice(&bytes[8..VERSION_BYTES]);
    Version {
        micros: !u64::from_be_bytes(micros),
        salt: !u32::from_be_bytes(salt),
    }
}

pub(super) fn purged_prefix(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_PURGED][..], bucket, key.as_bytes(), &[0]].concat()
}

pub(super) fn purged_key(bucket: &BucketId, key: &str, version: Version) -> Vec<u8> {
    [purged_prefix(bucket, key), version_bytes(version).to_vec()].concat()
}

/// Where a target's outbox entries are.
pub(super) fn outbox_prefix(target: &str) -> Vec<u8> {
    let len = u8::try_from(target.len()).unwrap_or(u8::MAX);
    [&[TAG_OUTBOX, len][..], target.as_bytes()].concat()
}

pub(super) fn outbox_key(target: &str, version: Version, bucket: &BucketId, key: &str) -> Vec<u8> {
    [
        outbox_prefix(target),
        version.micros.to_be_bytes().to_vec(),
        version.salt.to_be_bytes().to_vec(),
        bucket.to_vec(),
        key.as_bytes().to_vec(),
    ]
    .concat()
}

/// The version, bucket and key of an outbox entry's key under `prefix`; `None` for another key.
pub(super) fn parse_outbox_key<'a>(
    prefix: &[u8],
    k: &'a [u8],
) -> Option<(Version, BucketId, &'a str)> {
    let rest = k.strip_prefix(prefix)?;
    let (micros, rest) = rest.split_first_chunk::<8>()?;
    let (salt, rest) = rest.split_first_chunk::<4>()?;
    let (bucket, key) = rest.split_first_chunk::<16>()?;
    let version = Version {
        micros: u64::from_be_bytes(*micros),
        salt: u32::from_be_bytes(*salt),
    };
    Some((version, *bucket, std::str::from_utf8(key).ok()?))
}

pub(super) fn outbox_state_key(bucket: &BucketId, key: &str, version: Version) -> Vec<u8> {
    [
        &[TAG_OUTBOX_STATE][..],
        bucket,
        key.as_bytes(),
        &[0],
        &version_bytes(version),
    ]
    .concat()
}

pub(super) fn superseded_key(at: u64, id: &str, index: u8) -> Vec<u8> {
    [
        &[TAG_SUPERSEDED][..],
        &at.to_be_bytes(),
        &[index],
        id.as_bytes(),
    ]
    .concat()
}

/// The time, fragment index and fragment id of a `TAG_SUPERSEDED` key; `None` for other keys.
pub(super) fn parse_superseded_key(k: &[u8]) -> Option<(u64, u8, &str)> {
    let rest = k.strip_prefix(&[TAG_SUPERSEDED])?;
    let (at, rest) = rest.split_first_chunk::<8>()?;
    let (index, id) = rest.split_first()?;
    Some((
        u64::from_be_bytes(*at),
        *index,
        std::str::from_utf8(id).ok()?,
    ))
}

pub(super) fn replaced_key(bucket: &BucketId, key: &str) -> Vec<u8> {
    [&[TAG_REPLACED][..], bucket, key.as_bytes()].concat()
}

pub(super) fn upload_key(bucket: &BucketId, upload_id: &str) -> Vec<u8> {
    [&[TAG_UPLOAD][..], bucket, upload_id.as_bytes()].concat()
}

/// Where an upload's parts are, in part number order.
pub(super) fn parts_prefix(upload_id: &str) -> Vec<u8> {
    [&[TAG_PART][..], upload_id.as_bytes(), b"/"].concat()
}

pub(super) fn part_key(upload_id: &str, number: u32) -> Vec<u8> {
    [parts_prefix(upload_id), number.to_be_bytes().to_vec()].concat()
}

pub(super) fn bucket_key(name: &str) -> Vec<u8> {
    [&[TAG_BUCKET][..], name.as_bytes()].concat()
}

pub(super) fn access_key_key(id: &str) -> Vec<u8> {
    [&[TAG_KEY][..], id.as_bytes()].concat()
}

pub(super) fn setting_key(name: &str) -> Vec<u8> {
    [&[TAG_SETTING][..], name.as_bytes()].concat()
}

/// Keyed by when the hint was taken, so that hints are handed over in the order they came.
pub(super) fn hint_key(taken: Version) -> Vec<u8> {
    [
        &[TAG_HINT][..],
        &taken.micros.to_be_bytes(),
        &taken.salt.to_be_bytes(),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_back_and_sort_newest_first() {
        let old = Version { micros: 5, salt: 9 };
        let new = Version { micros: 6, salt: 0 };
        assert_eq!(version_from_bytes(&version_bytes(old)), old);
        assert!(version_bytes(new) < version_bytes(old));
    }

    #[test]
    fn outbox_keys_parse_back_and_sort_oldest_first() {
        let bucket = [7; 16];
        let old = Version { micros: 5, salt: 9 };
        let new = Version { micros: 6, salt: 0 };
        let key = outbox_key("eu", old, &bucket, "a/b");
        let parsed = parse_outbox_key(&outbox_prefix("eu"), &key);
        assert_eq!(parsed, Some((old, bucket, "a/b")));
        assert_eq!(parse_outbox_key(&outbox_prefix("e"), &key), None);
        assert!(key < outbox_key("eu", new, &bucket, "a"));
        assert!(!key.starts_with(&outbox_prefix("eu-west")));
    }

    #[test]
    fn superseded_keys_parse_back_and_sort_oldest_first() {
        let key = superseded_key(7, "abc", 2);
        assert_eq!(parse_superseded_key(&key), Some((7, 2, "abc")));
        assert!(key < superseded_key(8, "abc", 2));
        assert_eq!(parse_superseded_key(&object_key(&[0; 16], "k")), None);
    }
}
