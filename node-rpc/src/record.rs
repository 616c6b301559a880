//! What a holder stores about objects, buckets and uploads, and the ids that name them.

use crate::object_lock::{BucketLock, ObjectLock};
use erasure::{FrameFormat, StripeLayout};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A totally ordered write version: hybrid-logical-clock microseconds, then a tie-breaker, so that
/// concurrent writes to one key resolve the same way on every holder (last writer wins). The
/// tie-breaker's top byte is the number of the region that made the version (random in versions
/// made before regions, or in a cluster without a `[cluster.region]`), the rest random: two
/// regions never make the same version, and break ties between them the same way everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    pub micros: u64,
    pub salt: u32,
}

/// The newest version's microseconds this process made or observed: the logical half of the
/// hybrid clock (see `Version::now` and `Version::observe`).
static LAST_MICROS: AtomicU64 = AtomicU64::new(0);

/// The number of this process's region (`Version::set_region`); 0: none configured.
static REGION: AtomicU8 = AtomicU8::new(0);

/// How far ahead of the wall clock an observed version may move the clock: one minute.
const MAX_SKEW_MICROS: u64 = 60_000_000;

/// How far an observed version moves the clock, at wall-clock time `wall`.
fn observable(seen: Version, wall: u64) -> u64 {
    seen.micros.min(wall.saturating_add(MAX_SKEW_MICROS))
}

fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl Version {
    /// A version newer than every version this process made before, and close to the wall clock.
    pub fn now() -> Version {
        let wall = wall_micros();
        let mut last = LAST_MICROS.load(Ordering::Relaxed);
        loop {
            let next = wall.max(last + 1);
            match LAST_MICROS.compare_exchange_weak(
                last,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Version {
                        micros: next,
                        salt: salt(REGION.load(Ordering::Relaxed), rand::random()),
                    }
                }
                Err(seen) => last = seen,
            }
        }
    }

    /// Moves this process's clock up to a version made elsewhere (another gateway, or another
    /// region), so that the versions it makes next order after it: a write that follows a read
    /// of a newer version wins over it even when this machine's clock is behind the writer's.
    /// A version more than `MAX_SKEW_MICROS` ahead of the wall clock moves it only that far,
    /// so that one machine with a clock far ahead cannot drag every other one's versions away
    /// from real time.
    pub fn observe(seen: Version) {
        LAST_MICROS.fetch_max(observable(seen, wall_micros()), Ordering::Relaxed);
    }

    /// Makes `number` the region of the versions this process makes from now on.
    pub fn set_region(number: u8) {
        REGION.store(number, Ordering::Relaxed);
    }

    pub fn unix_millis(&self) -> i64 {
        (self.micros / 1000) as i64
    }
}

/// The revision a change made in this process's region gives a version whose newest revision
/// is `revision`: a count in the top 24 bits, one more than `revision`'s, and the region's
/// number in the low byte. Two regions that change one version at once (its tags, each while
/// cut off from the other) then make two different revisions, and the same one wins in both
/// once each has the other's: the higher count, then the higher region number. Revisions
/// written before regions (1, 2, 3, ...) are counts of 0, so the next one is still higher.
pub fn next_revision(revision: u32) -> u32 {
    revision_after(revision, REGION.load(Ordering::Relaxed))
}

fn revision_after(revision: u32, region: u8) -> u32 {
    let count = ((revision >> 8) + 1).min(0x00FF_FFFF);
    count << 8 | u32::from(region)
}

/// A version's tie-breaker: the region's number in the top byte, when there is one.
fn salt(region: u8, random: u32) -> u32 {
    match region {
        0 => random,
        n => u32::from(n) << 24 | random & 0x00ff_ffff,
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:08x}", self.micros, self.salt)
    }
}

impl FromStr for Version {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 24 || !s.is_ascii() {
            return Err(());
        }
        Ok(Version {
            micros: u64::from_str_radix(&s[..16], 16).map_err(|_| ())?,
            salt: u32::from_str_radix(&s[16..], 16).map_err(|_| ())?,
        })
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("invalid version"))
    }
}

/// A bucket's random 128-bit id, which (not the name) keys its objects.
pub type BucketId = [u8; 16];

/// Names the fragment files of one part of one object version on every holder.
pub fn fragment_id(parts: &[&[u8]]) -> String {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex::encode(&hasher.finalize().as_bytes()[..16])
}

/// True for a string that `fragment_id` could have made: it is used in file names.
pub fn is_fragment_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A checksum the client sent with the object, kept to return it on GET.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChecksum {
    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256`.
    pub algorithm: String,
    /// Base64 of the digest, as S3 shows it (`<base64>-<parts>` for a composite one).
    pub value: String,
    /// A multipart object's checksum of its parts' checksums (S3's COMPOSITE type) rather than
    /// of its bytes (FULL_OBJECT).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub composite: bool,
}

/// One erasure-coded run of bytes: a whole simple object, or one multipart part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartData {
    pub number: u32,
    pub size: u64,
    /// MD5 of the part's bytes, hex.
    pub md5: String,
    pub block_size: u32,
    /// Names this part's fragment files (see `fragment_id`).
    pub fragment_id: String,
    /// This holder's fragment when the part is small enough to live in the record itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Inline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
    /// The part's own data key, wrapped (see `Encryption`), when the object is encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// How its frames' hashes take in their position; absent in records written before format 2.
    #[serde(
        default,
        skip_serializing_if = "frame_number::is_first",
        with = "frame_number"
    )]
    pub frames: FrameFormat,
}

impl PartData {
    /// How the part is cut into stripes, for an object coded with `data_shards` data shards.
    pub fn layout(&self, data_shards: usize) -> StripeLayout {
        StripeLayout {
            size: self.size,
            data_shards,
            block_size: self.block_size as usize,
            frames: self.frames,
        }
    }
}

/// How an object's bytes are encrypted at rest. Each part is encrypted with a random key of its
/// own (`PartData::key`), kept only wrapped by a key the gateway gets elsewhere: so a holder's
/// records and fragment files alone never give the bytes away.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encryption {
    /// SSE-S3: part keys wrapped by the gateways' master key, named by its id.
    S3 { master_key_id: String },
    /// SSE-C: part keys wrapped by the client's key, which is never stored; its MD5 (base64) is
    /// kept to answer with, as S3 does.
    Customer { key_md5: String },
}

/// A bucket's default encryption (PutBucketEncryption): SSE-S3 for writes that ask for none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEncryption {
    /// Returned as set; it changes nothing for SSE-S3, as in S3.
    #[serde(default)]
    pub bucket_key_enabled: bool,
}

/// Which version of a key a request names: S3's `versionId`, where `null` names the one version
/// written while versioning was off or suspended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VersionRef {
    Null,
    Id(Version),
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionRef::Null => f.write_str("null"),
            VersionRef::Id(v) => v.fmt(f),
        }
    }
}

impl FromStr for VersionRef {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "null" => Ok(VersionRef::Null),
            id => id.parse().map(VersionRef::Id),
        }
    }
}

/// One version of one key as one holder knows it: an object, or (`deleted`) a delete marker, which
/// in an unversioned bucket is simply the tombstone of a deleted key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    pub version: Version,
    /// Changes that keep the version (its tags) count up here: of two records of one version the
    /// one with the higher revision wins (see `next_revision`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u32,
    /// Written with versioning enabled: the version has its own S3 version id. Otherwise it is the
    /// key's `null` version, of which there is at most one (a newer one replaces it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
    #[serde(default)]
    pub deleted: bool,
    pub size: u64,
    /// The S3 ETag without quotes.
    pub etag: String,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
    pub data_shards: u8,
    pub parity_shards: u8,
    /// The fragment slot this holder keeps, of each part: which of the k+m fragments.
    #[serde(rename = "fragment")]
    pub slot: u8,
    pub parts: Vec<PartData>,
    /// The object's tag set (S3 object tagging), in the order the client gave it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// When the object's bytes and metadata were written, in records whose tag changes made a new
    /// version (before `revision` existed). `None`: `version` is that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<Version>,
    /// The version's Object Lock retention and legal hold; changing them is a new revision.
    #[serde(default, skip_serializing_if = "ObjectLock::is_none")]
    pub lock: ObjectLock,
    /// The multipart upload whose completion wrote this version: a repeated Complete of that
    /// upload (an SDK retrying after a lost response) is answered from this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_upload: Option<String>,
    /// How the version's bytes are encrypted at rest; `None`: they are stored as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Who owns the version and what its ACL grants; `None`: the bucket's owner, privately.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    /// Made in another region and applied here by its replication (S3's `REPLICA` status).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replica: bool,
    /// Queued for peer regions when it was committed (`CommitRequest::replicate`): its holders'
    /// outboxes tell whether it has reached them all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl ObjectRecord {
    /// The length of its inline fragments as JSON: most of a small object's record.
    pub fn inline_json_len(&self) -> usize {
        self.parts
            .iter()
            .filter_map(|p| p.inline.as_ref())
            .map(Inline::json_len)
            .sum()
    }

    /// As JSON, into a buffer sized for it up front: grown from serde_json's default, it was
    /// copied again at every doubling (`prepare_commit` showed in a node's `memmove` under 4 KiB
    /// PUTs).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut json = Vec::with_capacity(self.inline_json_len() + 2048);
        serde_json::to_writer(&mut json, self)?;
        Ok(json)
    }

    /// A delete marker (`versioned`) or the null version's tombstone.
    pub fn tombstone(version: Version, versioned: bool) -> ObjectRecord {
        ObjectRecord {
            version,
            revision: 0,
            versioned,
            deleted: true,
            size: 0,
            etag: String::new(),
            headers: Vec::new(),
            checksum: None,
            data_shards: 0,
            parity_shards: 0,
            slot: 0,
            parts: Vec::new(),
            tags: Vec::new(),
            modified: None,
            lock: ObjectLock::default(),
            completed_upload: None,
            encryption: None,
            acl: None,
            replica: false,
            queued: false,
        }
    }

    /// The codec of this version's layout: the cluster's erasure code, or (one data shard) whole
    /// copies. A delete marker has none.
    pub fn codec(&self) -> Result<erasure::Codec, erasure::ErasureError> {
        erasure::Codec::shared(self.data_shards.into(), self.parity_shards.into())
    }

    /// The object's Last-Modified.
    pub fn last_modified(&self) -> Version {
        self.modified.unwrap_or(self.version)
    }

    /// What orders two records: the version, then the revision within it.
    pub fn stamp(&self) -> (Version, u32) {
        (self.version, self.revision)
    }

    /// The S3 version id this record answers to.
    pub fn version_ref(&self) -> VersionRef {
        if self.versioned {
            VersionRef::Id(self.version)
        } else {
            VersionRef::Null
        }
    }

    /// Whether some part's fragment travels inside the record rather than in a file.
    pub fn has_inline_parts(&self) -> bool {
        self.parts.iter().any(|p| p.inline.is_some())
    }

    /// Fragment files this record refers to (inline parts have none).
    pub fn fragment_files(&self) -> impl Iterator<Item = (&str, u8)> {
        self.parts
            .iter()
            .filter(|p| p.inline.is_none())
            .map(move |p| (p.fragment_id.as_str(), self.slot))
    }
}

/// A bucket in the system table; every node holds every bucket record (last writer wins).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    #[serde(with = "hex_id")]
    pub id: BucketId,
    pub version: Version,
    #[serde(default)]
    pub deleted: bool,
    /// When the bucket was created; `version` moves on with every settings change. `None` in
    /// records written before settings existed, whose `version` is still the creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Version>,
    /// The bucket's tag set (PutBucketTagging); `None` when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<(String, String)>>,
    /// The bucket's CORS rules (PutBucketCors); `None` when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Vec<CorsRule>>,
    /// The bucket's versioning state; `None` until versioning was first enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<Versioning>,
    /// The bucket's lifecycle rules (PutBucketLifecycleConfiguration); `None` when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Vec<LifecycleRule>>,
    /// The bucket's Object Lock configuration; `None` when Object Lock is not enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<BucketLock>,
    /// The bucket's default encryption; `None`: writes are encrypted only when they ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<BucketEncryption>,
    /// The access key that created the bucket, which may do anything with it; `None` for buckets
    /// created by the configured (bootstrap) key or before keys existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The bucket's policy (PutBucketPolicy), the JSON document as given, checked by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The grants of the bucket's ACL; `None`: the canned `private` (its owner's full control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Vec<AclGrant>>,
    /// The bucket's Object Ownership (PutBucketOwnershipControls); `None` when never set, which
    /// behaves as `ObjectWriter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<ObjectOwnership>,
    /// The regions the bucket replicates among (PutBucketReplication); `None`: every region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<BucketReplication>,
}

/// A bucket's replication configuration, as Tessera takes S3's: the regions among which the
/// bucket's changes replicate. It travels with the bucket's record to every region, and each
/// region sends its own changes to the others of the group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketReplication {
    /// The IAM role the configuration named: shown back, never used (regions authenticate
    /// with the replication key).
    pub role: String,
    /// The region where the configuration was set, which belongs to the group.
    pub source: String,
    pub rules: Vec<ReplicationRule>,
}

/// One rule: the bucket's changes go to `region` (when enabled).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    pub enabled: bool,
    pub region: String,
}

impl BucketReplication {
    /// The regions `here` sends the bucket's changes to: the others of the group (the source
    /// and the enabled rules' regions), if `here` is one of it.
    pub fn targets(&self, here: &str) -> Vec<String> {
        let mut group: Vec<&str> = vec![self.source.as_str()];
        group.extend(
            self.rules
                .iter()
                .filter(|r| r.enabled)
                .map(|r| r.region.as_str()),
        );
        if !group.contains(&here) {
            return Vec::new();
        }
        let mut targets: Vec<String> = Vec::new();
        for region in group.into_iter().filter(|r| *r != here) {
            if !targets.iter().any(|t| t == region) {
                targets.push(region.to_string());
            }
        }
        targets
    }
}

/// Who owns an object version, and what its ACL grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The canonical user id of the owner (see `Grantee::User`).
    pub owner: String,
    pub grants: Vec<AclGrant>,
}

/// One grant of an S3 access control list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclGrant {
    pub grantee: Grantee,
    pub permission: AclPermission,
}

/// Whom an ACL grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// A canonical user id: a key's access key id, or `tessera` for the configured key.
    User(String),
    /// Everyone, anonymous requests included.
    AllUsers,
    /// Every request signed with a valid key.
    AuthenticatedUsers,
}

/// What an ACL grant allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclPermission {
    Read,
    Write,
    ReadAcp,
    WriteAcp,
    FullControl,
}

/// A bucket's Object Ownership: who owns the objects others write, and whether ACLs apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    /// The writer owns what it writes; ACLs apply.
    ObjectWriter,
    /// The bucket's owner owns what is written with `bucket-owner-full-control`; ACLs apply.
    BucketOwnerPreferred,
    /// The bucket's owner owns every object; ACLs are disabled.
    BucketOwnerEnforced,
}

/// An access key of the key table, which every node holds (last writer wins, as buckets). The
/// configured key of each gateway is the bootstrap administrator and is not in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The access key id clients sign with.
    pub id: String,
    /// What the key is for, as its creator named it.
    pub name: String,
    /// The secret, sealed by the gateway under a key derived from the cluster secret (nodes never
    /// see it in the clear).
    pub sealed_secret: String,
    pub version: Version,
    /// When the key was created.
    pub created: Version,
    /// Deleted keys stay as tombstones, so that an older copy on a node that missed the delete
    /// never wins.
    #[serde(default)]
    pub deleted: bool,
    /// The key may create buckets (and owns those it creates).
    #[serde(default)]
    pub create_bucket: bool,
    /// What the key may do in each bucket, by bucket id (hex): a bucket deleted and created again
    /// under the same name is a new bucket, which old grants do not reach.
    #[serde(default)]
    pub buckets: std::collections::BTreeMap<String, Grant>,
}

/// Permissions of a key in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// GET, HEAD and listings.
    #[serde(default)]
    pub read: bool,
    /// Object writes and deletes, multipart uploads, object tags, retention and legal holds.
    #[serde(default)]
    pub write: bool,
    /// The bucket's settings and its deletion.
    #[serde(default)]
    pub owner: bool,
}

impl Grant {
    pub fn is_empty(&self) -> bool {
        !(self.read || self.write || self.owner)
    }
}

/// One lifecycle rule of a bucket, as S3's `Rule` (the actions Tessera applies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub enabled: bool,
    /// Keys the rule applies to.
    #[serde(default)]
    pub prefix: String,
    /// The prefix came in a `<Filter>` (not the legacy rule-level `<Prefix>`): returned that way.
    #[serde(default)]
    pub filter: bool,
    /// Expire current versions this many days after they were written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_days: Option<u32>,
    /// Expire current versions from this time on (unix seconds; S3 requires midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date: Option<i64>,
    /// Abort multipart uploads this many days after they were started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_upload_days: Option<u32>,
    /// Objects the rule applies to have every one of these tags (a `Tag` or `And` filter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// Objects the rule applies to are larger than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_greater_than: Option<u64>,
    /// Objects the rule applies to are smaller than this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_less_than: Option<u64>,
    /// Purge versions this many days after a newer version (or delete marker) replaced them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_days: Option<u32>,
    /// With `noncurrent_days`: keep this many of a key's newest noncurrent versions however old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newer_noncurrent_versions: Option<u32>,
    /// Remove a delete marker once no other version of its key is left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired_object_delete_marker: bool,
}

impl LifecycleRule {
    /// Whether the rule's filter, but for its tags, covers an object of this key and size.
    pub fn covers(&self, key: &str, size: u64) -> bool {
        key.starts_with(&self.prefix)
            && self.size_greater_than.is_none_or(|min| size > min)
            && self.size_less_than.is_none_or(|max| size < max)
    }

    /// Whether an object with `tags` has every tag the rule's filter names.
    pub fn tags_match(&self, tags: &[(String, String)]) -> bool {
        self.tags.iter().all(|want| tags.contains(want))
    }
}

/// A bucket's versioning state once it has been set (S3 never returns a bucket to unversioned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    Enabled,
    Suspended,
}

impl BucketRecord {
    pub fn created(&self) -> Version {
        self.created.unwrap_or(self.version)
    }

    /// New writes get their own version id (versioning enabled) rather than replacing `null`.
    pub fn versions_writes(&self) -> bool {
        self.versioning == Some(Versioning::Enabled)
    }
}

/// One CORS rule of a bucket, as S3's `CORSRule`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u32>,
}

/// An open multipart upload, kept by the holders of its key's shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub key: String,
    pub version: Version,
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    /// `COMPOSITE` or `FULL_OBJECT`, with `checksum_algorithm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
    /// Tags from `x-amz-tagging` on CreateMultipartUpload, given to the completed object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// The Object Lock state asked for on CreateMultipartUpload, given to the completed object.
    #[serde(default, skip_serializing_if = "ObjectLock::is_none")]
    pub lock: ObjectLock,
    /// How the upload's parts are encrypted, and so the completed object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// The owner and ACL the completed object gets (`ObjectRecord::acl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
}

/// One uploaded part of an open upload as one holder keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub version: Version,
    /// The holder's fragment slot.
    #[serde(rename = "fragment")]
    pub slot: u8,
    pub part: PartData,
}

/// A summary of one key (or, in a version listing, of one version of it) for listings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    pub key: String,
    pub version: Version,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versioned: bool,
    pub deleted: bool,
    pub size: u64,
    pub etag: String,
    /// The object's Last-Modified when it differs from `version` (see `ObjectRecord::modified`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<Version>,
    /// The object's owner when it is not the bucket's (`ObjectRecord::acl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ListEntry {
    pub fn of(key: String, record: &ObjectRecord) -> ListEntry {
        ListEntry {
            key,
            version: record.version,
            versioned: record.versioned,
            deleted: record.deleted,
            size: record.size,
            etag: record.etag.clone(),
            modified: record.modified,
            owner: record.acl.as_ref().map(|acl| acl.owner.clone()),
        }
    }

    pub fn last_modified(&self) -> Version {
        self.modified.unwrap_or(self.version)
    }

    pub fn version_ref(&self) -> VersionRef {
        if self.versioned {
            VersionRef::Id(self.version)
        } else {
            VersionRef::Null
        }
    }
}

/// A fragment kept inside a record, held as the JSON string of its base64 that records and the
/// node protocol carry: holders store it and send it back without decoding it (decoding and
/// encoding it again on every commit and lookup was about 4% of a node's CPU under 4 KiB PUTs).
/// Only the gateway, which builds and reads the bytes, converts.
#[derive(Clone)]
pub struct Inline(Box<RawValue>);

impl Inline {
    pub fn encode(bytes: &[u8]) -> Inline {
        let mut json = String::with_capacity(bytes.len().div_ceil(3) * 4 + 2);
        json.push('"');
        base64_simd::STANDARD.encode_append(bytes, &mut json);
        json.push('"');
        Inline(RawValue::from_string(json).expect("quoted base64 is a JSON string"))
    }

    /// Its length as JSON (base64 and quotes).
    pub fn json_len(&self) -> usize {
        self.0.get().len()
    }

    /// The fragment's bytes; an error if the text is not canonical base64 (padded, and no bits
    /// set past the end). SIMD, as the small GET decodes every inline fragment it serves: the
    /// scalar decoder was 3% of the gateway's CPU under 4 KiB GETs.
    pub fn decode(&self) -> Result<Vec<u8>, base64_simd::Error> {
        base64_simd::STANDARD.decode_to_vec(self.base64())
    }

    fn base64(&self) -> &str {
        let quoted = self.0.get();
        &quoted[1..quoted.len() - 1]
    }
}

impl PartialEq for Inline {
    fn eq(&self, other: &Inline) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Eq for Inline {}

impl fmt::Debug for Inline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Inline({} base64 characters)", self.base64().len())
    }
}

impl Serialize for Inline {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Inline {
    /// Takes a JSON string and nothing else. Whether it is base64 is left to `decode`, in the
    /// gateway: checking every character on every holder and every lookup cost more than the
    /// decoding this type saves. A string with escapes (JSON writers may escape `/`) is kept
    /// without them.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = Box::<RawValue>::deserialize(d)?;
        let json = raw.get();
        if json.starts_with('"') && !json.contains('\\') {
            return Ok(Inline(raw));
        }
        let text: String = serde_json::from_str(json).map_err(D::Error::custom)?;
        // Refuses a text that needs escapes even after unescaping: it cannot be base64. A
        // backslash must be refused here: quoted as it is, it would escape the character after
        // it, and the raw value would mean another text (the JSON `"A\\/B"`, text `A\/B`, kept
        // as `"A\/B"`, would be read as `A/B` by the next reader: valid base64).
        if text.contains('\\') {
            return Err(D::Error::custom("an inline fragment is not base64"));
        }
        RawValue::from_string(format!("\"{text}\""))
            .map(Inline)
            .map_err(D::Error::custom)
    }
}

/// A `FrameFormat` as its number, absent for format 1 (see `PartData::frames`).
pub mod frame_number {
    use erasure::FrameFormat;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn is_first(frames: &FrameFormat) -> bool {
        *frames == FrameFormat::PositionFirst
    }

    pub fn serialize<S: Serializer>(frames: &FrameFormat, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(frames.number())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<FrameFormat, D::Error> {
        let number = u8::deserialize(d)?;
        FrameFormat::from_number(number)
            .ok_or_else(|| D::Error::custom(format!("unknown frame format {number}")))
    }
}

mod hex_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        let mut id = [0u8; 16];
        hex::decode_to_slice(s, &mut id).map_err(serde::de::Error::custom)?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests;
