//! Encryption at rest, done in the gateway before erasure coding, so that holders only ever see
//! ciphertext.
//!
//! Every part (a simple object is one part) gets a random 256-bit key of its own, used with
//! AES-256 in counter mode, counter starting at 0. Counter mode keeps the ciphertext exactly as
//! long as the plaintext, so every size, part span and stripe computation holds unchanged, and a
//! ranged read decrypts only the bytes it returns (the counter is seeked to the range's first
//! block). The key is random per part and never reused, which is what counter mode needs.
//! Integrity is not counter mode's job here: every frame carries a blake3 checksum checked on
//! every read and scrub, and the object's MD5 and checksums are of the plaintext.
//!
//! The part key is kept in the part's record wrapped (AES-256-GCM, random nonce) by a
//! key-encryption key: the client's key for SSE-C, never stored, or the gateways' master key for
//! SSE-S3. Unwrapping with another key fails, which is how a wrong SSE-C key is told apart.

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use node_rpc::record::{Encryption, PartData};
use sha2::{Digest, Sha256};

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// Bound into every wrapped key, so that a wrapped part key is never mistaken for anything else.
const WRAP_CONTEXT: &[u8] = b"tessera part key v1";
const NONCE_LEN: usize = 12;

/// A 256-bit key that wraps part keys: an SSE-C client's key or the SSE-S3 master key.
#[derive(Clone)]
pub struct WrappingKey([u8; 32]);

impl WrappingKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        WrappingKey(bytes)
    }

    /// A name for the key that does not give it away (SSE-S3 records name the master key).
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"tessera master key id")
            .chain_update(self.0)
            .finalize();
        hex::encode(&digest[..8])
    }
}

impl WrappingKey {
    /// `secret` encrypted and authenticated with this key, bound to `context` (which must be
    /// given again to open it): base64 of a random nonce and the ciphertext.
    pub fn seal(&self, secret: &[u8], context: &[u8]) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = Aes256Gcm::new(&self.0.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret,
                    aad: context,
                },
            )
            .expect("AES-GCM encrypts any message this small");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        BASE64.encode(out)
    }

    /// What `seal` sealed with this key and `context`.
    pub fn open(&self, sealed: &str, context: &[u8]) -> Result<Vec<u8>, WrongKey> {
        let raw = BASE64.decode(sealed).map_err(|_| WrongKey)?;
        if raw.len() <= NONCE_LEN {
            return Err(WrongKey);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        Aes256Gcm::new(&self.0.into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| WrongKey)
    }
}

impl std::fmt::Debug for WrappingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WrappingKey(..)")
    }
}

/// The wrapped key could not be opened with the key given: another key wrapped it (or the record
/// was altered).
#[derive(Debug, PartialEq, Eq)]
pub struct WrongKey;

/// What a request gives to write or read one encrypted object: how it is encrypted, and the key
/// that wraps its part keys.
pub struct Sse {
    pub encryption: Encryption,
    key: WrappingKey,
}

impl Sse {
    pub fn new(encryption: Encryption, key: WrappingKey) -> Self {
        Sse { encryption, key }
    }

    /// A fresh key for a new part.
    pub fn seal(&self) -> PartSeal {
        let key = PartKey::generate();
        PartSeal {
            wrapped: key.wrap(&self.key),
            hide_md5: matches!(self.encryption, Encryption::Customer { .. }),
            key,
        }
    }

    /// The cipher of a part of this object.
    pub fn open(&self, part: &PartData) -> Result<PartCipher, WrongKey> {
        let wrapped = part.key.as_deref().ok_or(WrongKey)?;
        Ok(PartKey::unwrap(wrapped, &self.key)?.cipher())
    }
}

/// A new part's key, and what its record keeps of it.
pub struct PartSeal {
    key: PartKey,
    pub wrapped: String,
    /// SSE-C: the part's ETag must not be the MD5 of its plaintext (see `PartKey::hidden_md5`).
    hide_md5: bool,
}

impl PartSeal {
    pub fn cipher(&self) -> PartCipher {
        self.key.cipher()
    }

    /// The part's ETag (hex, without quotes), given the MD5 of its plaintext.
    pub fn etag(&self, md5: &[u8; 16]) -> String {
        if self.hide_md5 {
            self.key.hidden_md5(md5)
        } else {
            hex::encode(md5)
        }
    }
}

/// One part's data key.
pub struct PartKey([u8; 32]);

impl PartKey {
    pub fn generate() -> Self {
        PartKey(rand::random())
    }

    /// The key wrapped by `with`, as the part's record keeps it.
    pub fn wrap(&self, with: &WrappingKey) -> String {
        with.seal(&self.0, WRAP_CONTEXT)
    }

    pub fn unwrap(wrapped: &str, with: &WrappingKey) -> Result<PartKey, WrongKey> {
        let key = with.open(wrapped, WRAP_CONTEXT)?;
        Ok(PartKey(key.try_into().map_err(|_| WrongKey)?))
    }

    pub fn cipher(&self) -> PartCipher {
        PartCipher(Aes256Ctr::new(&self.0.into(), &[0u8; 16].into()))
    }

    /// An ETag for an SSE-C part that is not the MD5 of its plaintext (which would let anyone
    /// who can list the bucket test guesses of the content), but is fixed for the part: AWS's
    /// ETags of SSE-C objects are not MD5s either.
    pub fn hidden_md5(&self, md5: &[u8; 16]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"tessera etag");
        mac.update(md5);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// Encrypts or decrypts (the same in counter mode) one part's bytes at any offset.
pub struct PartCipher(Aes256Ctr);

impl PartCipher {
    /// `data`, which follows the bytes passed before, through the cipher.
    pub fn next(&mut self, data: &[u8]) -> Bytes {
        let mut out = BytesMut::from(data);
        self.0.apply_keystream(&mut out);
        out.freeze()
    }

    /// `data`, which sits at `offset` in the part, through the cipher.
    pub fn apply(&mut self, offset: u64, data: &[u8]) -> Bytes {
        let mut out = BytesMut::from(data);
        self.0.seek(offset);
        self.0.apply_keystream(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_key_opens_only_with_the_key_that_wrapped_it() {
        let (a, b) = (WrappingKey::new([1; 32]), WrappingKey::new([2; 32]));
        let key = PartKey::generate();
        let wrapped = key.wrap(&a);
        assert_eq!(PartKey::unwrap(&wrapped, &a).unwrap().0, key.0);
        assert_eq!(PartKey::unwrap(&wrapped, &b).err(), Some(WrongKey));
        assert_eq!(PartKey::unwrap("not base64!", &a).err(), Some(WrongKey));
        assert_eq!(PartKey::unwrap("", &a).err(), Some(WrongKey));
        assert_ne!(key.wrap(&a), wrapped, "a fresh nonce each time");
    }

    #[test]
    fn any_span_decrypts_on_its_own() {
        let key = PartKey::generate();
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let sealed = key.cipher().apply(0, &plain);
        assert_ne!(&sealed[..], &plain[..]);
        // Encrypted in pieces of odd sizes, it is the same ciphertext.
        let mut cipher = key.cipher();
        let mut pieces = Vec::new();
        for (at, chunk) in (0u64..).step_by(7919).zip(plain.chunks(7919)) {
            pieces.extend_from_slice(&cipher.apply(at, chunk));
        }
        assert_eq!(pieces, sealed);
        for (start, end) in [
            (0, 1),
            (15, 17),
            (16, 32),
            (65_535, 65_537),
            (99_999, 100_000),
        ] {
            let opened = key.cipher().apply(start as u64, &sealed[start..end]);
            assert_eq!(&opened[..], &plain[start..end], "{start}..{end}");
        }
    }

    #[test]
    fn parts_with_the_same_bytes_differ() {
        let plain = [7u8; 64];
        let (a, b) = (PartKey::generate(), PartKey::generate());
        assert_ne!(a.cipher().apply(0, &plain), b.cipher().apply(0, &plain));
        assert_ne!(a.hidden_md5(&[0; 16]), b.hidden_md5(&[0; 16]));
        assert_eq!(a.hidden_md5(&[0; 16]), a.hidden_md5(&[0; 16]));
    }
}
