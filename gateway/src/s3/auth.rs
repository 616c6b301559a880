//! What both signature versions (`sigv2`, `sigv4`) check against and hand on: the key pair a
//! request may be signed with, and a request whose signature checked out, with how its body is
//! protected. The body of a signed `aws-chunked` upload goes on being authenticated chunk by
//! chunk (`ChunkSigner`) after the request's own signature is checked.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// An access key pair a request may be signed with.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

/// How the request body is protected, as the signed `x-amz-content-sha256` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Not covered by the signature.
    Unsigned,
    /// Must hash to this SHA-256 (lowercase hex).
    Sha256(String),
    /// `aws-chunked`: each chunk signed (`signer` set) or not, optionally followed by trailers.
    Chunked { signed: bool, trailer: bool },
}

/// A request whose signature checked out.
pub struct Authenticated {
    pub payload: Payload,
    /// Set for signed chunked payloads: verifies each chunk's signature in turn.
    pub chunk_signer: Option<ChunkSigner>,
    /// Signed as a presigned URL, whose `x-amz-*` parameters stand for headers
    /// (`sigv4::hoist_query_headers`).
    pub presigned: bool,
}

/// Chains chunk signatures from the request's seed signature.
pub struct ChunkSigner {
    key: [u8; 32],
    amz_date: String,
    scope: String,
    previous: String,
}

impl ChunkSigner {
    /// The chain of a request signed with SigV4 signing key `key` at `amz_date` in `scope`,
    /// whose own signature was `seed`.
    pub(super) fn new(key: [u8; 32], amz_date: String, scope: String, seed: String) -> Self {
        ChunkSigner {
            key,
            amz_date,
            scope,
            previous: seed,
        }
    }

    /// Checks one chunk's signature given the SHA-256 of its data, and advances the chain.
    pub fn verify_chunk(&mut self, signature: &str, data_sha256: &[u8]) -> bool {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            hex::encode(data_sha256)
        );
        self.advance(signature, &to_sign)
    }

    /// Checks the trailer signature over the trailer lines as sent (each `name:value\n`).
    pub fn verify_trailer(&mut self, signature: &str, trailer: &[u8]) -> bool {
        let to_sign = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            hex::encode(Sha256::digest(trailer))
        );
        self.advance(signature, &to_sign)
    }

    fn advance(&mut self, signature: &str, to_sign: &str) -> bool {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(to_sign.as_bytes());
        let expected = hex::encode(mac.finalize().into_bytes());
        let ok = bool::from(expected.as_bytes().ct_eq(signature.as_bytes()));
        self.previous = expected;
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_chunk_signature_chain() {
        // The seed and first chunk of the AWS "Signature Calculations for the Authorization Header:
        // Transferring Payload in Multiple Chunks" example (65536 bytes of 'a'), signed with the
        // SigV4 documentation's example secret key on its day in its region.
        let key = hex::decode("dbb893acc010964918f1fd433add87c70e8b0db6be30c1fbeafefa5ec6ba8378")
            .unwrap();
        let mut signer = ChunkSigner::new(
            key.try_into().unwrap(),
            "20130524T000000Z".into(),
            "20130524/us-east-1/s3/aws4_request".into(),
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9".into(),
        );
        let chunk = vec![b'a'; 65536];
        assert!(signer.verify_chunk(
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            &Sha256::digest(&chunk)
        ));
        assert!(!signer.verify_chunk("00", &Sha256::digest(b"")));
    }
}
