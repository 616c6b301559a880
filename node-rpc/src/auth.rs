//! Authentication of node calls (gateway to node, node to node) with the cluster secret.
//!
//! Every call carries four headers:
//! - `x-tessera-date`: unix seconds. A node refuses dates more than `MAX_SKEW_SECS` from its clock.
//! - `x-tessera-nonce`: 16 random bytes in hex. A node accepts each nonce once: it remembers those
//!   of the dates it still accepts (`NonceMemory`), so a captured call cannot be sent again.
//! - `x-tessera-body`: the blake3 hash of the body in hex, or `streamed` for a fragment upload,
//!   whose body cannot be hashed before the headers go out. A streamed body ends with a tag
//!   (`STREAM_TAG_LEN` bytes): the keyed blake3 hash of the bytes before it, under a key derived
//!   from the secret and this call's signature (`StreamKey`), so that only the signer could have
//!   made it and it fits no other call.
//! - `x-tessera-signature`: HMAC-SHA256 under the secret of the method, the path and query, the
//!   date, the nonce and the body header. Checked in constant time.

use erasure::{FrameFormat, StripeLayout, HASH_LEN};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

pub const DATE_HEADER: &str = "x-tessera-date";
pub const NONCE_HEADER: &str = "x-tessera-nonce";
pub const BODY_HEADER: &str = "x-tessera-body";
pub const SIGNATURE_HEADER: &str = "x-tessera-signature";
/// `BODY_HEADER`'s value for a body that ends with a stream tag instead of being hashed ahead.
const STREAMED: &str = "streamed";
/// Length of the tag that ends a streamed body.
pub const STREAM_TAG_LEN: usize = 32;
/// How far a call's date may be from the node's clock, either way. Short, because every nonce of
/// the window is remembered; nodes and gateways are expected to run NTP.
pub const MAX_SKEW_SECS: u64 = 60;
/// The most nonces a node remembers (about 40 MB at most): enough for 17,000 calls a second,
/// sustained over the window. Past it the node refuses calls (`AuthError::TooManyCalls`) rather
/// than forget nonces it may see again.
pub const MAX_REMEMBERED_NONCES: usize = 1 << 20;

/// Why a call was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing or malformed {0}")]
    Malformed(&'static str),
    #[error("date too far from the node's clock")]
    Skewed,
    #[error("bad signature")]
    BadSignature,
    #[error("call already seen (replay)")]
    Replayed,
    #[error("more calls in the last {MAX_SKEW_SECS} s than the node can remember; try again")]
    TooManyCalls,
    #[error("body does not match its signed digest")]
    BodyMismatch,
    #[error("streamed body does not match its tag")]
    TagMismatch,
}

/// What the signature says of a call's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyDigest {
    /// The blake3 hash of the whole body.
    Hash([u8; 32]),
    /// The body ends with a stream tag (see the module's doc).
    Streamed,
}

impl BodyDigest {
    pub fn of(body: &[u8]) -> BodyDigest {
        BodyDigest::Hash(*blake3::hash(body).as_bytes())
    }

    fn header_value(&self) -> String {
        match self {
            BodyDigest::Hash(hash) => hex::encode(hash),
            BodyDigest::Streamed => STREAMED.to_string(),
        }
    }

    fn parse(value: &str) -> Option<BodyDigest> {
        if value == STREAMED {
            return Some(BodyDigest::Streamed);
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(value, &mut hash).ok()?;
        Some(BodyDigest::Hash(hash))
    }

    /// Whether `body` is the body signed for; constant time.
    pub fn matches(&self, body: &[u8]) -> bool {
        match self {
            BodyDigest::Hash(hash) => blake3::hash(body) == blake3::Hash::from_bytes(*hash),
            BodyDigest::Streamed => false,
        }
    }
}

/// The key of one call's stream tag. Never printed.
#[derive(Clone)]
pub struct StreamKey([u8; 32]);

impl StreamKey {
    /// A tagger for a fragment of this layout streamed under this key.
    pub fn tagger(&self, layout: StripeLayout) -> StreamTagger {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(&layout.size.to_le_bytes());
        hasher.update(&(layout.data_shards as u64).to_le_bytes());
        hasher.update(&(layout.block_size as u64).to_le_bytes());
        // Format 1's tags are as they were before formats had numbers, so that an upload from a
        // gateway of then still checks.
        if layout.frames != FrameFormat::PositionFirst {
            hasher.update(&[layout.frames.number()]);
        }
        StreamTagger {
            hasher,
            layout,
            stripe: 0,
            at: 0,
        }
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamKey(***)")
    }
}

/// The running tag of a streamed fragment: fed every byte of it, in order and in any chunking,
/// it hashes (under the call's key, after the layout) only the block hash that ends each frame.
///
/// That binds the whole fragment to the call at a fraction of the cost of hashing its bytes
/// again: the node checks every block against its frame's hash as it arrives
/// (`erasure::FragmentVerifier`) and refuses the upload otherwise, so the frame hashes fix the
/// blocks, and changing one block while keeping its hash would take a blake3 collision. Hashing
/// every byte a second time cost about a quarter of the cluster's 64 MiB PUT throughput.
pub struct StreamTagger {
    hasher: blake3::Hasher,
    layout: StripeLayout,
    /// Stripe of the frame being fed, and bytes of it fed so far.
    stripe: u64,
    at: usize,
}

impl StreamTagger {
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let block_len = self.layout.block_len(self.stripe);
            let n = if self.at < block_len {
                (block_len - self.at).min(bytes.len())
            } else {
                let n = (block_len + HASH_LEN - self.at).min(bytes.len());
                self.hasher.update(&bytes[..n]);
                n
            };
            self.at += n;
            bytes = &bytes[n..];
            if self.at == block_len + HASH_LEN {
                self.stripe += 1;
                self.at = 0;
            }
        }
    }

    /// The tag the sender appends.
    pub fn tag(&self) -> [u8; STREAM_TAG_LEN] {
        *self.hasher.finalize().as_bytes()
    }

    /// Whether `tag` is the tag of the bytes seen; constant time.
    pub fn check(&self, tag: &[u8]) -> Result<(), AuthError> {
        let tag: [u8; STREAM_TAG_LEN] = tag.try_into().map_err(|_| AuthError::TagMismatch)?;
        if self.hasher.finalize() == blake3::Hash::from_bytes(tag) {
            Ok(())
        } else {
            Err(AuthError::TagMismatch)
        }
    }
}

/// The headers of a signed call, and the key of its stream tag when its body is streamed.
pub struct SignedCall {
    pub headers: [(&'static str, String); 4],
    pub stream_key: Option<StreamKey>,
}

/// What a node knows of a call once its headers are checked: what its body must be.
#[derive(Debug)]
pub enum VerifiedBody {
    /// A body of this blake3 hash (check it with `BodyDigest::matches`).
    Hashed(BodyDigest),
    /// A streamed body, whose tag is made with this key.
    Streamed(StreamKey),
}

/// The secret shared by all nodes and gateways of a cluster. Never printed.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    pub fn new(secret: String) -> ClusterSecret {
        ClusterSecret(secret)
    }

    /// A 256-bit key for one purpose, derived from the secret (HMAC-SHA256 of the purpose), so
    /// that every process of the cluster derives the same key and no two purposes share one.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"tessera derived key\n");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The bearer token a Prometheus scrape of `/metrics` sends to a node or a gateway: derived,
    /// so that a scraper's config never holds the secret that signs node calls.
    pub fn metrics_token(&self) -> String {
        hex::encode(self.derive_key("metrics scrape"))
    }

    /// Signs a call made now with a fresh nonce.
    pub fn sign(&self, method: &str, path_and_query: &str, body: BodyDigest) -> SignedCall {
        let nonce = hex::encode(rand::random::<[u8; 16]>());
        self.sign_at(method, path_and_query, body, unix_now(), nonce)
    }

    fn sign_at(
        &self,
        method: &str,
        path_and_query: &str,
        body: BodyDigest,
        date: u64,
        nonce: String,
    ) -> SignedCall {
        let body_value = body.header_value();
        let signature = self
            .mac(method, path_and_query, date, &nonce, &body_value)
            .finalize()
            .into_bytes();
        let stream_key = (body == BodyDigest::Streamed).then(|| self.stream_key(&signature));
        SignedCall {
            headers: [
                (DATE_HEADER, date.to_string()),
                (NONCE_HEADER, nonce),
                (BODY_HEADER, body_value),
                (SIGNATURE_HEADER, hex::encode(signature)),
            ],
            stream_key,
        }
    }

    /// Checks a call's headers (`header` looks one up by name): its date, its signature in
    /// constant time, and then that its nonce is new, which `nonces` remembers from then on.
    pub fn verify<'a>(
        &self,
        method: &str,
        path_and_query: &str,
        header: impl Fn(&str) -> Option<&'a str>,
        nonces: &NonceMemory,
    ) -> Result<VerifiedBody, AuthError> {
        let date: u64 = header(DATE_HEADER)
            .and_then(|d| d.parse().ok())
            .ok_or(AuthError::Malformed(DATE_HEADER))?;
        let nonce_text = header(NONCE_HEADER).ok_or(AuthError::Malformed(NONCE_HEADER))?;
        let mut nonce = [0u8; 16];
        hex::decode_to_slice(nonce_text, &mut nonce)
            .map_err(|_| AuthError::Malformed(NONCE_HEADER))?;
        let body_value = header(BODY_HEADER).ok_or(AuthError::Malformed(BODY_HEADER))?;
        let body = BodyDigest::parse(body_value).ok_or(AuthError::Malformed(BODY_HEADER))?;
        let signature = header(SIGNATURE_HEADER)
            .and_then(|s| hex::decode(s).ok())
            .ok_or(AuthError::Malformed(SIGNATURE_HEADER))?;
        let now = unix_now();
        if now.abs_diff(date) > MAX_SKEW_SECS {
            return Err(AuthError::Skewed);
        }
        self.mac(method, path_and_query, date, nonce_text, body_value)
            .verify_slice(&signature)
            .map_err(|_| AuthError::BadSignature)?;
        // Only signed nonces are remembered: no one without the secret can fill the memory.
        nonces.remember(date, u128::from_be_bytes(nonce), now)?;
        Ok(match body {
            BodyDigest::Streamed => VerifiedBody::Streamed(self.stream_key(&signature)),
            hashed => VerifiedBody::Hashed(hashed),
        })
    }

    fn mac(
        &self,
        method: &str,
        path_and_query: &str,
        date: u64,
        nonce: &str,
        body: &str,
    ) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(format!("{method}\n{path_and_query}\n{date}\n{nonce}\n{body}").as_bytes());
        mac
    }

    /// The stream tag key of the call with this signature: unique to the call, since the
    /// signature covers its nonce, and derivable only with the secret.
    fn stream_key(&self, signature: &[u8]) -> StreamKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(b"tessera stream tag\n");
        mac.update(signature);
        StreamKey(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(***)")
    }
}

/// The nonces of the calls a node accepted whose dates it still accepts, by date: a bucket per
/// second, dropped once its second leaves the window, when the date check alone refuses its
/// calls. A replay carries its original date (it is signed), so only that bucket is looked in.
pub struct NonceMemory {
    seen: Mutex<Seen>,
    cap: usize,
}

#[derive(Default)]
struct Seen {
    by_date: BTreeMap<u64, HashSet<u128>>,
    count: usize,
}

impl NonceMemory {
    /// A memory that holds at most `cap` nonces.
    pub fn new(cap: usize) -> NonceMemory {
        NonceMemory {
            seen: Mutex::new(Seen::default()),
            cap,
        }
    }

    fn remember(&self, date: u64, nonce: u128, now: u64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = now.saturating_sub(MAX_SKEW_SECS);
        while let Some(entry) = seen.by_date.first_entry() {
            if *entry.key() >= oldest {
                break;
            }
            let dropped = entry.remove().len();
            seen.count -= dropped;
        }
        if seen.by_date.get(&date).is_some_and(|s| s.contains(&nonce)) {
            return Err(AuthError::Replayed);
        }
        if seen.count >= self.cap {
            return Err(AuthError::TooManyCalls);
        }
        seen.by_date.entry(date).or_default().insert(nonce);
        seen.count += 1;
        Ok(())
    }
}

impl Default for NonceMemory {
    fn default() -> NonceMemory {
        NonceMemory::new(MAX_REMEMBERED_NONCES)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> ClusterSecret {
        ClusterSecret::new("s3cret".into())
    }

    fn lookup<'a>(call: &'a SignedCall) -> impl Fn(&str) -> Option<&'a str> + 'a {
        |name| {
            call.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    fn check(call: &SignedCall, method: &str, path: &str) -> Result<VerifiedBody, AuthError> {
        secret().verify(method, path, lookup(call), &NonceMemory::default())
    }

    #[test]
    fn a_call_is_accepted_once() {
        let nonces = NonceMemory::default();
        let call = secret().sign("POST", "/v1/commit", BodyDigest::of(b"{}"));
        let verified = secret().verify("POST", "/v1/commit", lookup(&call), &nonces);
        let Ok(VerifiedBody::Hashed(digest)) = verified else {
            panic!("{verified:?}");
        };
        assert!(digest.matches(b"{}"));
        assert_eq!(
            secret()
                .verify("POST", "/v1/commit", lookup(&call), &nonces)
                .unwrap_err(),
            AuthError::Replayed
        );
    }

    #[test]
    fn a_changed_body_is_refused() {
        let call = secret().sign("POST", "/v1/commit", BodyDigest::of(b"{\"key\":\"a\"}"));
        let Ok(VerifiedBody::Hashed(digest)) = check(&call, "POST", "/v1/commit") else {
            panic!("refused");
        };
        assert!(!digest.matches(b"{\"key\":\"b\"}"));
        // Nor can the body header be swapped for the changed body's hash.
        let mut forged = secret().sign("POST", "/v1/commit", BodyDigest::of(b"{\"key\":\"a\"}"));
        forged.headers[2].1 = BodyDigest::of(b"{\"key\":\"b\"}").header_value();
        assert_eq!(
            check(&forged, "POST", "/v1/commit").unwrap_err(),
            AuthError::BadSignature
        );
    }

    #[test]
    fn a_changed_method_path_or_query_is_refused() {
        let call = secret().sign("GET", "/v1/x?offset=0&len=10", BodyDigest::of(b""));
        for (method, path) in [
            ("PUT", "/v1/x?offset=0&len=10"),
            ("GET", "/v1/y?offset=0&len=10"),
            ("GET", "/v1/x?offset=0&len=11"),
            ("GET", "/v1/x"),
        ] {
            assert_eq!(
                check(&call, method, path).unwrap_err(),
                AuthError::BadSignature,
                "{method} {path}"
            );
        }
        assert!(check(&call, "GET", "/v1/x?offset=0&len=10").is_ok());
    }

    #[test]
    fn dates_outside_the_window_are_refused() {
        let nonce = || hex::encode(rand::random::<[u8; 16]>());
        let body = BodyDigest::of(b"");
        for date in [
            unix_now() - MAX_SKEW_SECS - 5,
            unix_now() + MAX_SKEW_SECS + 5,
        ] {
            let call = secret().sign_at("GET", "/v1/x", body, date, nonce());
            assert_eq!(check(&call, "GET", "/v1/x").unwrap_err(), AuthError::Skewed);
        }
        let call = secret().sign_at("GET", "/v1/x", body, unix_now() - 30, nonce());
        assert!(check(&call, "GET", "/v1/x").is_ok());
    }

    #[test]
    fn a_wrong_secret_is_refused() {
        let call = ClusterSecret::new("other".into()).sign("GET", "/v1/x", BodyDigest::of(b""));
        assert_eq!(
            check(&call, "GET", "/v1/x").unwrap_err(),
            AuthError::BadSignature
        );
    }

    #[test]
    fn missing_headers_are_refused() {
        let mut call = secret().sign("GET", "/v1/x", BodyDigest::of(b""));
        call.headers[1].1 = "not hex".into();
        assert_eq!(
            check(&call, "GET", "/v1/x").unwrap_err(),
            AuthError::Malformed(NONCE_HEADER)
        );
    }

    #[test]
    fn streamed_fragments_are_bound_to_their_call_by_the_tag() {
        // Two stripes of blocks of 4 bytes: frames of 4 + 32 bytes.
        let layout = StripeLayout {
            size: 16,
            data_shards: 2,
            block_size: 4,
            frames: FrameFormat::NEWEST,
        };
        let fragment: Vec<u8> = (0..2 * (4 + HASH_LEN) as u8).collect();
        let call = secret().sign("PUT", "/v1/fragment/a/1", BodyDigest::Streamed);
        let mut sender = call
            .stream_key
            .as_ref()
            .expect("a streamed call")
            .tagger(layout);
        sender.update(&fragment);
        let tag = sender.tag();
        let Ok(VerifiedBody::Streamed(key)) = check(&call, "PUT", "/v1/fragment/a/1") else {
            panic!("refused");
        };
        let received = |bytes: &[u8], chunk: usize| {
            let mut node = key.tagger(layout);
            bytes.chunks(chunk).for_each(|c| node.update(c));
            node
        };
        for chunk in [1, 5, 36, 100] {
            assert_eq!(received(&fragment, chunk).check(&tag), Ok(()), "{chunk}");
        }
        // A changed frame hash changes the tag. (A changed block with its old hash fails the
        // node's frame check instead: the tag leaves blocks to their hashes.)
        for at in [4, 35, 40 + 31] {
            let mut forged = fragment.clone();
            forged[at] ^= 1;
            assert_eq!(
                received(&forged, 7).check(&tag),
                Err(AuthError::TagMismatch),
                "{at}"
            );
        }
        assert_eq!(
            received(&fragment, 7).check(&tag[..31]),
            Err(AuthError::TagMismatch)
        );
        // Another layout or frame format, or another call's key, makes another tag for the same
        // bytes.
        for other_layout in [
            StripeLayout { size: 17, ..layout },
            StripeLayout {
                frames: FrameFormat::PositionFirst,
                ..layout
            },
        ] {
            let mut relaid = key.tagger(other_layout);
            relaid.update(&fragment);
            assert_ne!(relaid.tag(), tag);
        }
        let other = secret().sign("PUT", "/v1/fragment/a/1", BodyDigest::Streamed);
        let mut elsewhere = other.stream_key.unwrap().tagger(layout);
        elsewhere.update(&fragment);
        assert_ne!(elsewhere.tag(), tag);
    }

    #[test]
    fn nonces_are_forgotten_as_the_window_moves_and_capped() {
        let memory = NonceMemory::new(2);
        let now = 1_000_000;
        assert_eq!(memory.remember(now, 1, now), Ok(()));
        assert_eq!(memory.remember(now, 1, now), Err(AuthError::Replayed));
        assert_eq!(memory.remember(now, 2, now), Ok(()));
        assert_eq!(memory.remember(now, 3, now), Err(AuthError::TooManyCalls));
        // Once `now`'s second has left the window, its nonces go and make room.
        let later = now + MAX_SKEW_SECS + 1;
        assert_eq!(memory.remember(later, 3, later), Ok(()));
        assert_eq!(memory.seen.lock().unwrap().count, 1);
    }

    #[test]
    fn secrets_are_not_printed() {
        let call = secret().sign("PUT", "/v1/x", BodyDigest::Streamed);
        assert!(!format!("{:?}", secret()).contains("s3cret"));
        assert_eq!(format!("{:?}", call.stream_key.unwrap()), "StreamKey(***)");
    }
}
