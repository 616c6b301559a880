//! The digests an S3 client may send with an upload, computed in the same pass as the ETag's MD5.

use crate::error::S3Error;
use base64::{engine::general_purpose::STANDARD, Engine};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;
use storage_node::record::StoredChecksum;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::Crc32,
        Algorithm::Crc32c,
        Algorithm::Crc64Nvme,
        Algorithm::Sha1,
        Algorithm::Sha256,
    ];

    /// The name S3 uses in `x-amz-sdk-checksum-algorithm` and in XML.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }

    /// The header that carries its value, e.g. `x-amz-checksum-crc32`.
    pub fn header(self) -> String {
        format!("x-amz-checksum-{}", self.name().to_ascii_lowercase())
    }

    pub fn from_header(header: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(header))
    }

    fn digest_len(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }
}

enum State {
    Crc32(crc32fast::Hasher),
    Crc32c(u32),
    Crc64Nvme(crc64fast_nvme::Digest),
    Sha1(Sha1),
    Sha256(Sha256),
}

/// A running checksum of one algorithm.
pub struct Checksum {
    state: State,
}

impl Checksum {
    pub fn new(algorithm: Algorithm) -> Checksum {
        let state = match algorithm {
            Algorithm::Crc32 => State::Crc32(crc32fast::Hasher::new()),
            Algorithm::Crc32c => State::Crc32c(0),
            Algorithm::Crc64Nvme => State::Crc64Nvme(crc64fast_nvme::Digest::new()),
            Algorithm::Sha1 => State::Sha1(Sha1::new()),
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
        };
        Checksum { state }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc32(h) => h.update(data),
            State::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
            State::Crc64Nvme(h) => h.write(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    /// The digest, big-endian for CRCs, as S3 encodes it (base64).
    pub fn finish(self) -> String {
        let bytes = match self.state {
            State::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            State::Crc32c(crc) => crc.to_be_bytes().to_vec(),
            State::Crc64Nvme(h) => h.sum64().to_be_bytes().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        };
        STANDARD.encode(bytes)
    }
}

/// Everything computed over an upload's bytes: always the MD5 (the ETag), plus the client's checksum.
pub struct Digests {
    md5: Md5,
    checksum: Option<Checksum>,
}

/// What the client claimed about the bytes, checked once they have all arrived.
#[derive(Default, Clone)]
pub struct Expected {
    /// Content-MD5, decoded.
    pub md5: Option<Vec<u8>>,
    /// The algorithm asked for, and its value when sent as a header (a trailer comes later).
    pub checksum: Option<(Algorithm, Option<String>)>,
}

impl Expected {
    /// Validates the form of what the client sent (an undecodable value is `InvalidDigest`).
    pub fn new(
        content_md5: Option<&str>,
        checksum: Option<(Algorithm, Option<String>)>,
    ) -> Result<Expected, S3Error> {
        let md5 = content_md5
            .map(|v| {
                STANDARD
                    .decode(v.trim())
                    .map_err(|_| S3Error::InvalidDigest)
            })
            .transpose()?;
        if md5.as_ref().is_some_and(|m| m.len() != 16) {
            return Err(S3Error::InvalidDigest);
        }
        if let Some((algorithm, Some(value))) = &checksum {
            check_form(*algorithm, value)?;
        }
        Ok(Expected { md5, checksum })
    }
}

fn check_form(algorithm: Algorithm, value: &str) -> Result<(), S3Error> {
    match STANDARD.decode(value.trim()) {
        Ok(bytes) if bytes.len() == algorithm.digest_len() => Ok(()),
        _ => Err(S3Error::InvalidRequest(format!(
            "Value for {} header is invalid.",
            algorithm.header()
        ))),
    }
}

/// The outcome of a verified upload.
pub struct Verified {
    pub md5: [u8; 16],
    pub checksum: Option<StoredChecksum>,
}

impl Digests {
    pub fn new(algorithm: Option<Algorithm>) -> Digests {
        Digests {
            md5: Md5::new(),
            checksum: algorithm.map(Checksum::new),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        if let Some(c) = &mut self.checksum {
            c.update(data);
        }
    }

    /// Compares with what the client claimed; `trailer` is the checksum value from an aws-chunked trailer.
    pub fn verify(self, expected: &Expected, trailer: Option<&str>) -> Result<Verified, S3Error> {
        let md5: [u8; 16] = self.md5.finalize().into();
        if expected.md5.as_ref().is_some_and(|m| m[..] != md5) {
            return Err(S3Error::BadDigest("Content-MD5"));
        }
        let checksum = match (self.checksum, &expected.checksum) {
            (Some(sum), Some((algorithm, claimed))) => {
                let claimed = match (claimed.as_deref(), trailer) {
                    (Some(v), _) | (None, Some(v)) => v.trim(),
                    (None, None) => {
                        return Err(S3Error::InvalidRequest(format!(
                            "Missing trailing {} checksum",
                            algorithm.header()
                        )))
                    }
                };
                check_form(*algorithm, claimed)?;
                let actual = sum.finish();
                if actual != claimed {
                    return Err(S3Error::BadDigest(algorithm.name()));
                }
                Some(StoredChecksum {
                    algorithm: algorithm.name().to_string(),
                    value: actual,
                })
            }
            _ => None,
        };
        Ok(Verified { md5, checksum })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(algorithm: Algorithm, data: &[u8]) -> String {
        let mut c = Checksum::new(algorithm);
        c.update(data);
        c.finish()
    }

    #[test]
    fn known_values_of_123456789() {
        // Check values of each CRC's catalogue entry, big-endian as S3 sends them.
        let b64 = |bytes: &[u8]| STANDARD.encode(bytes);
        assert_eq!(
            sum(Algorithm::Crc32, b"123456789"),
            b64(&0xCBF43926u32.to_be_bytes())
        );
        assert_eq!(
            sum(Algorithm::Crc32c, b"123456789"),
            b64(&0xE3069283u32.to_be_bytes())
        );
        assert_eq!(
            sum(Algorithm::Crc64Nvme, b"123456789"),
            b64(&0xAE8B14860A799888u64.to_be_bytes())
        );
        assert_eq!(
            sum(Algorithm::Sha256, b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn split_updates_match_one_update() {
        for algorithm in Algorithm::ALL {
            let mut c = Checksum::new(algorithm);
            c.update(b"hello ");
            c.update(b"world");
            assert_eq!(c.finish(), sum(algorithm, b"hello world"));
        }
    }

    #[test]
    fn mismatches_are_bad_digest() {
        let claimed = sum(Algorithm::Crc32, b"abc");
        let expected =
            Expected::new(None, Some((Algorithm::Crc32, Some(claimed.clone())))).unwrap();
        let mut d = Digests::new(Some(Algorithm::Crc32));
        d.update(b"abd");
        assert!(matches!(
            d.verify(&expected, None),
            Err(S3Error::BadDigest(_))
        ));

        let trailing = Expected::new(None, Some((Algorithm::Crc32, None))).unwrap();
        let mut d = Digests::new(Some(Algorithm::Crc32));
        d.update(b"abc");
        assert!(d.verify(&trailing, Some(&claimed)).is_ok());

        let md5 = Expected::new(Some("1B2M2Y8AsgTpgAmY7PhCfg=="), None).unwrap();
        assert!(
            Digests::new(None).verify(&md5, None).is_ok(),
            "MD5 of nothing"
        );
        let mut d = Digests::new(None);
        d.update(b"x");
        assert!(matches!(d.verify(&md5, None), Err(S3Error::BadDigest(_))));
        assert!(Expected::new(Some("not base64!"), None).is_err());
    }
}
