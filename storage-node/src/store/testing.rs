//! What the store's tests share: a store in a temporary folder, records, and fragment files.

use super::Store;
use crate::protocol::{ListItem, VersionListRequest};
use crate::record::{BucketId, Inline, ObjectRecord, PartData, Version, VersionRef};
use std::sync::Arc;

pub(super) const BUCKET: BucketId = [7; 16];

pub(super) fn record(micros: u64, fragment_id: Option<&str>) -> ObjectRecord {
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
        slot: 1,
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
            key: None,
            frames: Default::default(),
        }],
        tags: Vec::new(),
        modified: None,
        lock: Default::default(),
        completed_upload: None,
        encryption: None,
        acl: None,
        replica: false,
        queued: false,
    }
}

/// A store in a fresh temporary folder, which lasts as long as the returned guard.
pub(super) fn open() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "test").unwrap();
    (dir, store)
}

pub(super) fn write_fragment(store: &Store, id: &str) {
    let mut file = store.create_fragment(id, 1).unwrap();
    file.write(b"frame").unwrap();
    file.commit().unwrap();
}

pub(super) fn versioned(micros: u64, fragment_id: Option<&str>) -> ObjectRecord {
    ObjectRecord {
        versioned: true,
        ..record(micros, fragment_id)
    }
}

pub(super) fn v(micros: u64) -> Version {
    Version { micros, salt: 0 }
}

pub(super) fn version_list(
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
