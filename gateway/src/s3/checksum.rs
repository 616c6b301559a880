//! The digests an S3 client may send with an upload, computed in the same pass as the ETag's MD5.

use crate::s3::error::S3Error;
use crate::s3::md5_lanes::Md5Stream;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use crc_fast::CrcAlgorithm;
use md5::Digest;
use node_rpc::record::StoredChecksum;
use sha1::Sha1;
use sha2::Sha256;

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

    /// The header a stored checksum is returned in.
    pub fn header_of(checksum: &StoredChecksum) -> String {
        format!("x-amz-checksum-{}", checksum.algorithm.to_ascii_lowercase())
    }

    pub fn from_header(header: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(header))
    }

    /// The algorithm named by `x-amz-checksum-algorithm` (any case).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The reflected polynomial and width of a CRC; `None` for the SHAs, whose digests of parts
    /// cannot be combined into the digest of the whole.
    fn crc(self) -> Option<(u64, u32)> {
        match self {
            Algorithm::Crc32 => Some((0xEDB8_8320, 32)),
            Algorithm::Crc32c => Some((0x82F6_3B78, 32)),
            Algorithm::Crc64Nvme => Some((0x9A6C_9329_AC4B_C9B5, 64)),
            Algorithm::Sha1 | Algorithm::Sha256 => None,
        }
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
    Crc32c(crc_fast::Digest),
    Crc64Nvme(crc_fast::Digest),
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
            Algorithm::Crc32c => State::Crc32c(crc_fast::Digest::new(CrcAlgorithm::Crc32Iscsi)),
            Algorithm::Crc64Nvme => {
                State::Crc64Nvme(crc_fast::Digest::new(CrcAlgorithm::Crc64Nvme))
            }
            Algorithm::Sha1 => State::Sha1(Sha1::new()),
            Algorithm::Sha256 => State::Sha256(Sha256::new()),
        };
        Checksum { state }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc32(h) => h.update(data),
            State::Crc32c(h) | State::Crc64Nvme(h) => h.update(data),
            State::Sha1(h) => h.update(data),
            State::Sha256(h) => h.update(data),
        }
    }

    /// The digest, big-endian for CRCs, as S3 encodes it (base64).
    pub fn finish(self) -> String {
        let bytes = match self.state {
            State::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
            State::Crc32c(h) => (h.finalize() as u32).to_be_bytes().to_vec(),
            State::Crc64Nvme(h) => h.finalize().to_be_bytes().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Sha256(h) => h.finalize().to_vec(),
        };
        STANDARD.encode(bytes)
    }
}

/// How a multipart object's checksum covers it (`x-amz-checksum-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumType {
    /// The checksum of the parts' checksums, shown as `<base64>-<parts>`.
    Composite,
    /// The checksum of the whole object's bytes (CRCs only: combined from the parts').
    FullObject,
}

impl ChecksumType {
    pub fn name(self) -> &'static str {
        match self {
            ChecksumType::Composite => "COMPOSITE",
            ChecksumType::FullObject => "FULL_OBJECT",
        }
    }

    pub fn from_name(name: &str) -> Option<ChecksumType> {
        [ChecksumType::Composite, ChecksumType::FullObject]
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The type of a stored checksum (a simple object's is of its bytes).
    pub fn of(checksum: &StoredChecksum) -> ChecksumType {
        if checksum.composite {
            ChecksumType::Composite
        } else {
            ChecksumType::FullObject
        }
    }

    /// The type S3 gives an upload that names only its algorithm: CRC64NVME is full-object only.
    pub fn default_for(algorithm: Algorithm) -> ChecksumType {
        match algorithm {
            Algorithm::Crc64Nvme => ChecksumType::FullObject,
            _ => ChecksumType::Composite,
        }
    }

    /// Whether S3 allows this type with that algorithm.
    pub fn allowed(self, algorithm: Algorithm) -> bool {
        match self {
            ChecksumType::Composite => algorithm != Algorithm::Crc64Nvme,
            ChecksumType::FullObject => algorithm.crc().is_some(),
        }
    }
}

/// The checksum of a multipart object from its parts' checksums (base64) and sizes, in order.
/// `None` when a part's checksum does not decode, or for a full-object SHA (not allowed).
pub fn multipart_checksum(
    algorithm: Algorithm,
    kind: ChecksumType,
    parts: &[(&str, u64)],
) -> Option<String> {
    let digests = parts
        .iter()
        .map(|(value, _)| {
            STANDARD
                .decode(value)
                .ok()
                .filter(|d| d.len() == algorithm.digest_len())
        })
        .collect::<Option<Vec<Vec<u8>>>>()?;
    match kind {
        ChecksumType::Composite => {
            let mut sum = Checksum::new(algorithm);
            for digest in &digests {
                sum.update(digest);
            }
            Some(format!("{}-{}", sum.finish(), parts.len()))
        }
        ChecksumType::FullObject => {
            let (poly, width) = algorithm.crc()?;
            let mut whole = 0u64;
            for (digest, (_, size)) in digests.iter().zip(parts) {
                let crc = digest
                    .iter()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                whole = crc_combine(whole, crc, *size, poly, width);
            }
            let bytes = whole.to_be_bytes();
            Some(STANDARD.encode(&bytes[8 - width as usize / 8..]))
        }
    }
}

/// The CRC of `A || B` from `crc(A)`, `crc(B)` and `len(B)`, for a reflected CRC of `width` bits
/// whose initial value and final XOR are all ones (CRC-32, CRC-32C, CRC-64/NVME): `crc(A)`
/// multiplied by x^(8 len(B)) modulo the polynomial, plus `crc(B)`. The CRC of nothing is 0, so
/// folding from 0 combines any number of parts.
fn crc_combine(crc_a: u64, crc_b: u64, len_b: u64, poly: u64, width: u32) -> u64 {
    let top = 1u64 << (width - 1);
    // x^0 and x^8 in the reflected representation (bit `width - 1 - k` is the coefficient of x^k).
    let mut power = top;
    let mut base = top >> 8;
    let mut n = len_b;
    while n > 0 {
        if n & 1 == 1 {
            power = mult_mod(power, base, poly, top);
        }
        base = mult_mod(base, base, poly, top);
        n >>= 1;
    }
    mult_mod(power, crc_a, poly, top) ^ crc_b
}

/// `a * b` modulo the reflected polynomial `poly` whose x^0 coefficient is bit `top`.
fn mult_mod(a: u64, mut b: u64, poly: u64, top: u64) -> u64 {
    let mut product = 0;
    let mut bit = top;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        b = if b & 1 == 1 { (b >> 1) ^ poly } else { b >> 1 };
        bit >>= 1;
    }
    product
}

/// Everything computed over an upload's bytes: always the MD5 (the ETag), plus the client's checksum.
pub struct Digests {
    md5: Md5Stream,
    checksum: Option<Checksum>,
    algorithm: Option<Algorithm>,
}

/// What the client claimed about the bytes, checked once they have all arrived.
#[derive(Default, Clone)]
pub struct Expected {
    /// Content-MD5, decoded.
    pub md5: Option<Vec<u8>>,
    /// The algorithm asked for, and its value when sent as a header (a trailer comes later).
    pub checksum: Option<(Algorithm, Option<String>)>,
    /// A checksum to compute and keep though the client sent none: a part of an upload created
    /// with a checksum algorithm, copied or sent without one.
    pub compute: Option<Algorithm>,
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
        Ok(Expected {
            md5,
            checksum,
            compute: None,
        })
    }

    /// The algorithm to run over the bytes: the client's, or the one to compute.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.checksum.as_ref().map(|(a, _)| *a).or(self.compute)
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
            md5: Md5Stream::default(),
            checksum: algorithm.map(Checksum::new),
            algorithm,
        }
    }

    /// Takes the next bytes; waits while too many of this upload's bytes wait for hashing.
    pub async fn update(&mut self, data: &Bytes) {
        if let Some(c) = &mut self.checksum {
            c.update(data);
        }
        self.md5.update(data).await;
    }

    /// Compares with what the client claimed; `trailer` is the checksum value from an aws-chunked trailer.
    pub async fn verify(
        self,
        expected: &Expected,
        trailer: Option<&str>,
    ) -> Result<Verified, S3Error> {
        Ok(self.check(expected, trailer).await?.finish().await)
    }

    /// Compares what the client claimed: its checksum, and its Content-MD5 if it sent one (the
    /// MD5 finished for it). Without a Content-MD5 the MD5 is only the ETag, left to
    /// `Checked::finish`: a caller can let it finish while it does something else.
    pub async fn check(
        self,
        expected: &Expected,
        trailer: Option<&str>,
    ) -> Result<Checked, S3Error> {
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
                    composite: false,
                })
            }
            (Some(sum), None) => self.algorithm.map(|algorithm| StoredChecksum {
                algorithm: algorithm.name().to_string(),
                value: sum.finish(),
                composite: false,
            }),
            _ => None,
        };
        let md5 = match &expected.md5 {
            Some(claimed) => {
                let md5 = self.md5.finish().await;
                if claimed[..] != md5 {
                    return Err(S3Error::BadDigest("Content-MD5"));
                }
                Md5::Done(md5)
            }
            None => Md5::Hashing(self.md5),
        };
        Ok(Checked { md5, checksum })
    }
}

/// An upload whose claims matched, with its MD5 perhaps still to finish.
pub struct Checked {
    md5: Md5,
    checksum: Option<StoredChecksum>,
}

enum Md5 {
    Hashing(Md5Stream),
    Done([u8; 16]),
}

impl Md5 {
    async fn finish(self) -> [u8; 16] {
        match self {
            Md5::Hashing(stream) => stream.finish().await,
            Md5::Done(md5) => md5,
        }
    }
}

impl Checked {
    pub async fn finish(self) -> Verified {
        Verified {
            md5: self.md5.finish().await,
            checksum: self.checksum,
        }
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
    fn crcs_of_parts_combine_into_the_whole() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for algorithm in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let pieces = [&data[..1], &data[1..4097], &data[4097..4097], &data[4097..]];
            let sums: Vec<String> = pieces.iter().map(|p| sum(algorithm, p)).collect();
            let parts: Vec<(&str, u64)> = sums
                .iter()
                .zip(pieces)
                .map(|(s, p)| (s.as_str(), p.len() as u64))
                .collect();
            assert_eq!(
                multipart_checksum(algorithm, ChecksumType::FullObject, &parts).unwrap(),
                sum(algorithm, &data),
                "{algorithm:?}"
            );
        }
        assert!(multipart_checksum(Algorithm::Sha256, ChecksumType::FullObject, &[]).is_none());
    }

    #[test]
    fn composite_checksums_hash_the_part_checksums() {
        let a = sum(Algorithm::Sha256, b"a");
        let b = sum(Algorithm::Sha256, b"b");
        let mut raw = STANDARD.decode(&a).unwrap();
        raw.extend(STANDARD.decode(&b).unwrap());
        assert_eq!(
            multipart_checksum(
                Algorithm::Sha256,
                ChecksumType::Composite,
                &[(&a, 1), (&b, 1)]
            )
            .unwrap(),
            format!("{}-2", sum(Algorithm::Sha256, &raw))
        );
        assert!(
            multipart_checksum(Algorithm::Crc32, ChecksumType::Composite, &[("x", 1)]).is_none()
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

    #[tokio::test]
    async fn an_unclaimed_md5_is_finished_after_the_checksum_is_checked() {
        let claimed = sum(Algorithm::Crc32, b"abc");
        let expected = Expected::new(None, Some((Algorithm::Crc32, Some(claimed)))).unwrap();
        let mut d = Digests::new(Some(Algorithm::Crc32));
        d.update(&Bytes::from_static(b"abc")).await;
        let checked = d.check(&expected, None).await.unwrap();
        assert!(
            matches!(checked.md5, Md5::Hashing(_)),
            "no Content-MD5 to compare"
        );
        let verified = checked.finish().await;
        assert_eq!(STANDARD.encode(verified.md5), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(
            verified.checksum.unwrap().value,
            sum(Algorithm::Crc32, b"abc")
        );
    }

    #[tokio::test]
    async fn mismatches_are_bad_digest() {
        let claimed = sum(Algorithm::Crc32, b"abc");
        let expected =
            Expected::new(None, Some((Algorithm::Crc32, Some(claimed.clone())))).unwrap();
        let mut d = Digests::new(Some(Algorithm::Crc32));
        d.update(&Bytes::from_static(b"abd")).await;
        assert!(matches!(
            d.verify(&expected, None).await,
            Err(S3Error::BadDigest(_))
        ));

        let trailing = Expected::new(None, Some((Algorithm::Crc32, None))).unwrap();
        let mut d = Digests::new(Some(Algorithm::Crc32));
        d.update(&Bytes::from_static(b"abc")).await;
        assert!(d.verify(&trailing, Some(&claimed)).await.is_ok());

        let md5 = Expected::new(Some("1B2M2Y8AsgTpgAmY7PhCfg=="), None).unwrap();
        assert!(
            Digests::new(None).verify(&md5, None).await.is_ok(),
            "MD5 of nothing"
        );
        let mut d = Digests::new(None);
        d.update(&Bytes::from_static(b"x")).await;
        assert!(matches!(
            d.verify(&md5, None).await,
            Err(S3Error::BadDigest(_))
        ));
        assert!(Expected::new(Some("not base64!"), None).is_err());
    }
}
