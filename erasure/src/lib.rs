//! Stripe codec and fragment format for Tessera objects.
//!
//! This crate is pure logic (no I/O, no async): it cuts an object into
//! Reed-Solomon stripes, writes the per-fragment frames, and verifies,
//! decodes and rebuilds them.
//!
//! # Fragment format
//!
//! An object of `size` bytes is cut into stripes of `k * block_size` data
//! bytes; the last stripe may be shorter. A stripe holding `r` data bytes has
//! block length `ceil(r / k)`: its data is split into `k` blocks of that length
//! (the last one zero-padded) and Reed-Solomon adds `m` parity blocks of the
//! same length. A zero-size object has zero stripes.
//!
//! Fragment `i` (`0..k+m`) is the concatenation, stripe after stripe, of
//! frames:
//!
//! ```text
//! frame = block i of the stripe || hash (32 bytes)
//! pos   = stripe_index as u64 LE || i as u8
//! hash  = blake3::keyed_hash(KEY, block || pos)[..28] || crc32c(block || pos) LE   (format 3)
//! hash  = blake3::keyed_hash(KEY, block || pos)                                    (format 2)
//! hash  = blake3::keyed_hash(KEY, pos || block)                                    (format 1)
//! KEY   = blake3::derive_key("tessera fragment block v1", b"")
//! ```
//!
//! The stripe and fragment indices are part of the hashed input, so a valid
//! block served from the wrong position fails verification. Format 1 put them
//! first, which shifted every block nine bytes off blake3's 1 KiB chunks: the
//! hash then ran at a fraction of its SIMD width (half the speed on a 2 KiB
//! block, four fifths on 256 KiB). Format 2 puts them last. Each layout names
//! its format (`StripeLayout::frames`); fragments written in format 1 keep it.
//!
//! Format 3 gives readers a cheaper check (`FrameFormat::reads_intact`): the
//! CRC32C alone, several times faster than blake3 on a core without AVX-512,
//! where checking every block read was a third of a large GET's gateway CPU.
//! It catches what reads have to catch: bits flipped on disk or on the wire, a
//! torn or zeroed block, a block written at the wrong position. The blake3
//! part is still checked wherever blocks come in (a node receiving an upload,
//! `FragmentVerifier`) and by the scrubber, and it is what binds a streamed
//! upload's tag to its blocks. Neither is a secret: KEY is public, so whoever
//! can change a block on a node can change its hash too; TLS, not the frame,
//! protects blocks on an untrusted network.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use parity::Parity;
use reed_solomon_erasure::galois_8::ReedSolomon;

mod parity;

pub const HASH_LEN: usize = 32;

#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ErasureError {
    #[error("invalid geometry: {0}")]
    InvalidGeometry(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("frame of stripe {stripe} fails its hash")]
    CorruptFrame { stripe: u64 },
    #[error("not enough valid fragments: need {needed}, have {valid}")]
    NotEnoughFragments { needed: usize, valid: usize },
    #[error("reed-solomon: {0}")]
    ReedSolomon(#[from] reed_solomon_erasure::Error),
}

/// How a frame's hash takes in the block's position (see the crate's header).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FrameFormat {
    /// Format 1: the position before the block; what every fragment written before format 2
    /// existed holds.
    #[default]
    PositionFirst,
    /// Format 2: the position after the block.
    PositionLast,
    /// Format 3: format 2's hash cut to 28 bytes, then a CRC32C that readers check.
    Checksummed,
}

impl FrameFormat {
    /// The format new fragments are written in, once every node that will check them knows it.
    pub const NEWEST: FrameFormat = FrameFormat::Checksummed;

    /// The format's number, as records and node calls carry it.
    pub fn number(self) -> u8 {
        match self {
            FrameFormat::PositionFirst => 1,
            FrameFormat::PositionLast => 2,
            FrameFormat::Checksummed => 3,
        }
    }

    pub fn from_number(number: u8) -> Option<FrameFormat> {
        match number {
            1 => Some(FrameFormat::PositionFirst),
            2 => Some(FrameFormat::PositionLast),
            3 => Some(FrameFormat::Checksummed),
            _ => None,
        }
    }

    /// Every format this release reads and writes, by number.
    pub fn known() -> [u8; 3] {
        [
            FrameFormat::PositionFirst,
            FrameFormat::PositionLast,
            FrameFormat::Checksummed,
        ]
        .map(FrameFormat::number)
    }

    pub fn block_hash(self, stripe: u64, fragment: usize, block: &[u8]) -> [u8; HASH_LEN] {
        self.block_hash_of_pieces(stripe, fragment, [block])
    }

    /// `block_hash` of a block held in pieces (as it arrived from the network), without joining
    /// them.
    pub fn block_hash_of_pieces<'a>(
        self,
        stripe: u64,
        fragment: usize,
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> [u8; HASH_LEN] {
        let mut hasher = BlockHasher::new(self, stripe, fragment);
        for piece in pieces {
            hasher.update(piece);
        }
        hasher.finalize()
    }

    /// The reader's check of a block (held in pieces) against the `hash` its frame ends with: in
    /// format 3 the CRC32C alone, in the formats before it the whole hash (see the crate's header
    /// for what that check leaves to the others).
    pub fn reads_intact<'a>(
        self,
        stripe: u64,
        fragment: usize,
        pieces: impl IntoIterator<Item = &'a [u8]>,
        hash: &[u8; HASH_LEN],
    ) -> bool {
        if self != FrameFormat::Checksummed {
            return self.block_hash_of_pieces(stripe, fragment, pieces) == *hash;
        }
        let mut crc = crc32c();
        for piece in pieces {
            crc.update(piece);
        }
        crc.update(&position(stripe, fragment));
        (crc.finalize() as u32).to_le_bytes() == hash[BLAKE3_PART..]
    }
}

/// The bytes of format 3's hash taken from blake3; the CRC32C follows them.
const BLAKE3_PART: usize = HASH_LEN - 4;

/// A running CRC32C. crc-fast's, which folds with VPCLMULQDQ where the CPU has it: 80-88 GB/s on
/// 64-256 KiB against 20-23 GB/s for the `crc32c` crate used before (this machine, 2026-12-07),
/// and every block a GET returns goes through it.
fn crc32c() -> crc_fast::Digest {
    crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi)
}

/// A block's position as its hash takes it in.
fn position(stripe: u64, fragment: usize) -> [u8; 9] {
    let mut position = [0; 9];
    position[..8].copy_from_slice(&stripe.to_le_bytes());
    position[8] = fragment as u8;
    position
}

/// Geometry of one object's stripes, all sizes derived from (size, k, block_size), and the format
/// of its frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeLayout {
    pub size: u64,
    pub data_shards: usize,
    pub block_size: usize,
    pub frames: FrameFormat,
}

impl StripeLayout {
    /// A layout from numbers a peer sent (a fragment upload's headers): refused unless k and the
    /// block size are positive, k is at most 256 (the most Reed-Solomon over GF(2^8) allows),
    /// and every length derived from it fits in 64 bits.
    pub fn checked(
        size: u64,
        data_shards: usize,
        block_size: usize,
        frames: FrameFormat,
    ) -> Result<StripeLayout, ErasureError> {
        let invalid = || {
            ErasureError::InvalidGeometry(format!(
                "{size} bytes in stripes of {data_shards} blocks of {block_size} bytes"
            ))
        };
        if data_shards == 0 || data_shards > 256 || block_size == 0 {
            return Err(invalid());
        }
        let stripe_len = (data_shards as u64)
            .checked_mul(block_size as u64)
            .ok_or_else(invalid)?;
        let frame_len = (block_size as u64)
            .checked_add(HASH_LEN as u64)
            .ok_or_else(invalid)?;
        // Bounds the fragment's length and every frame offset in it.
        size.div_ceil(stripe_len)
            .checked_mul(frame_len)
            .ok_or_else(invalid)?;
        Ok(StripeLayout {
            size,
            data_shards,
            block_size,
            frames,
        })
    }

    pub fn stripe_data_len(&self) -> u64 {
        self.data_shards as u64 * self.block_size as u64
    }

    pub fn stripe_count(&self) -> u64 {
        self.size.div_ceil(self.stripe_data_len())
    }

    pub fn block_len(&self, stripe: u64) -> usize {
        self.stripe_data_len_of(stripe).div_ceil(self.data_shards)
    }

    pub fn frame_len(&self, stripe: u64) -> usize {
        self.block_len(stripe) + HASH_LEN
    }

    pub fn fragment_len(&self) -> u64 {
        match self.stripe_count() {
            0 => 0,
            n => self.frame_offset(n - 1) + self.frame_len(n - 1) as u64,
        }
    }

    /// Every stripe before `stripe` is full, so its frame starts at a fixed multiple.
    pub fn frame_offset(&self, stripe: u64) -> u64 {
        stripe * (self.block_size + HASH_LEN) as u64
    }

    pub fn data_offset(&self, stripe: u64) -> u64 {
        stripe * self.stripe_data_len()
    }

    /// The object bytes in data block `block` of `stripe`: the blocks of a short stripe end in
    /// padding, and the last ones may be all padding.
    pub fn block_data_len(&self, stripe: u64, block: usize) -> usize {
        let block_len = self.block_len(stripe);
        let len = self.stripe_data_len_of(stripe);
        len.saturating_sub(block * block_len).min(block_len)
    }

    /// Zero for stripes past the end of the object.
    pub fn stripe_data_len_of(&self, stripe: u64) -> usize {
        let left = self.size.saturating_sub(self.data_offset(stripe));
        left.min(self.stripe_data_len()) as usize
    }

    /// Stripes [first, last] covering object bytes [start, end] inclusive (end < size).
    pub fn stripes_for_range(&self, start: u64, end: u64) -> (u64, u64) {
        let len = self.stripe_data_len();
        (start / len, end / len)
    }

    fn check(&self, codec_k: usize) -> Result<(), ErasureError> {
        if self.data_shards != codec_k || self.block_size == 0 {
            return Err(ErasureError::InvalidGeometry(format!(
                "layout k={} block_size={} for a codec with k={codec_k}",
                self.data_shards, self.block_size
            )));
        }
        Ok(())
    }
}

fn hash_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| blake3::derive_key("tessera fragment block v1", b""))
}

/// The hash of one block, fed in pieces; it takes in the block's position where its format puts
/// it.
struct BlockHasher {
    hasher: blake3::Hasher,
    /// The position, still to be fed after the block (formats 2 and 3).
    position: Option<[u8; 9]>,
    /// The CRC32C so far (format 3).
    crc: Option<crc_fast::Digest>,
}

impl BlockHasher {
    fn new(frames: FrameFormat, stripe: u64, fragment: usize) -> BlockHasher {
        let position = position(stripe, fragment);
        let mut hasher = blake3::Hasher::new_keyed(hash_key());
        let (position, crc) = match frames {
            FrameFormat::PositionFirst => {
                hasher.update(&position);
                (None, None)
            }
            FrameFormat::PositionLast => (Some(position), None),
            FrameFormat::Checksummed => (Some(position), Some(crc32c())),
        };
        BlockHasher {
            hasher,
            position,
            crc,
        }
    }

    fn update(&mut self, piece: &[u8]) {
        self.hasher.update(piece);
        if let Some(crc) = &mut self.crc {
            crc.update(piece);
        }
    }

    fn finalize(mut self) -> [u8; HASH_LEN] {
        if let Some(position) = self.position {
            self.update(&position);
        }
        let mut hash = *self.hasher.finalize().as_bytes();
        if let Some(crc) = self.crc {
            hash[BLAKE3_PART..].copy_from_slice(&(crc.finalize() as u32).to_le_bytes());
        }
        hash
    }
}

/// Checks one fragment's frames as its bytes arrive, in any chunking, without holding them: a
/// receiver can write each chunk out as soon as it has been fed here.
pub struct FragmentVerifier {
    layout: StripeLayout,
    fragment: usize,
    /// Stripe of the frame being received.
    stripe: u64,
    /// Bytes of that frame received so far.
    at: usize,
    hasher: BlockHasher,
    hash: [u8; HASH_LEN],
    received: u64,
}

impl FragmentVerifier {
    pub fn new(layout: StripeLayout, fragment: usize) -> FragmentVerifier {
        FragmentVerifier {
            layout,
            fragment,
            stripe: 0,
            at: 0,
            hasher: BlockHasher::new(layout.frames, 0, fragment),
            hash: [0; HASH_LEN],
            received: 0,
        }
    }

    /// Feeds the next bytes of the fragment. Errors on a frame that fails its hash
    /// (`CorruptFrame`) and on bytes past the fragment's end (`SizeMismatch`).
    pub fn update(&mut self, mut data: &[u8]) -> Result<(), ErasureError> {
        self.received += data.len() as u64;
        if self.received > self.layout.fragment_len() {
            return Err(ErasureError::SizeMismatch {
                expected: self.layout.fragment_len(),
                actual: self.received,
            });
        }
        while !data.is_empty() {
            let block_len = self.layout.block_len(self.stripe);
            let n = if self.at < block_len {
                let n = (block_len - self.at).min(data.len());
                self.hasher.update(&data[..n]);
                n
            } else {
                let hashed = self.at - block_len;
                let n = (HASH_LEN - hashed).min(data.len());
                self.hash[hashed..hashed + n].copy_from_slice(&data[..n]);
                n
            };
            self.at += n;
            data = &data[n..];
            if self.at == block_len + HASH_LEN {
                let next = BlockHasher::new(self.layout.frames, self.stripe + 1, self.fragment);
                if std::mem::replace(&mut self.hasher, next).finalize() != self.hash {
                    return Err(ErasureError::CorruptFrame {
                        stripe: self.stripe,
                    });
                }
                self.stripe += 1;
                self.at = 0;
            }
        }
        Ok(())
    }

    /// Errors (`SizeMismatch`) unless the whole fragment has been fed.
    pub fn finish(&self) -> Result<(), ErasureError> {
        if self.received != self.layout.fragment_len() {
            return Err(ErasureError::SizeMismatch {
                expected: self.layout.fragment_len(),
                actual: self.received,
            });
        }
        Ok(())
    }
}

/// Reed-Solomon k+m; cheap to clone (Arc inside).
#[derive(Clone)]
pub struct Codec {
    rs: Arc<ReedSolomon>,
    parity: Arc<Parity>,
}

/// Verified blocks (None when missing or bad) and the indices of bad frames.
type Verified<'a> = (Vec<Option<&'a [u8]>>, Vec<usize>);

pub struct DecodedStripe {
    pub data: Vec<u8>,
    pub bad: Vec<usize>,
}

impl Codec {
    pub fn new(data_shards: usize, parity_shards: usize) -> Result<Codec, ErasureError> {
        let rs = ReedSolomon::new(data_shards, parity_shards)?;
        let parity = Arc::new(Parity::new(&rs));
        Ok(Codec {
            rs: Arc::new(rs),
            parity,
        })
    }

    /// The codec for k+m, built once per process: each object record names its own layout, and
    /// building a codec inverts a matrix.
    pub fn shared(data_shards: usize, parity_shards: usize) -> Result<Codec, ErasureError> {
        static BUILT: Mutex<Vec<Codec>> = Mutex::new(Vec::new());
        let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
        let same =
            |c: &&Codec| c.data_shards() == data_shards && c.parity_shards() == parity_shards;
        if let Some(codec) = built.iter().find(same) {
            return Ok(codec.clone());
        }
        let codec = Codec::new(data_shards, parity_shards)?;
        built.push(codec.clone());
        Ok(codec)
    }

    pub fn data_shards(&self) -> usize {
        self.rs.data_shard_count()
    }

    pub fn parity_shards(&self) -> usize {
        self.rs.parity_shard_count()
    }

    pub fn width(&self) -> usize {
        self.rs.total_shard_count()
    }

    /// Streaming encoder for one object of known size.
    pub fn encoder(&self, layout: StripeLayout) -> StripeEncoder {
        StripeEncoder {
            codec: self.clone(),
            layout,
            stripe: 0,
            filled: 0,
            pushed: 0,
            frames: Vec::new(),
        }
    }

    /// Checks frame count and hashes of one stripe's frames, as a reader does
    /// (`FrameFormat::reads_intact`): a frame the fetch engine took must not fail here.
    fn verify<'a>(
        &self,
        layout: &StripeLayout,
        stripe: u64,
        frames: &[Option<&'a [u8]>],
    ) -> Result<Verified<'a>, ErasureError> {
        layout.check(self.data_shards())?;
        if frames.len() != self.width() || stripe >= layout.stripe_count() {
            let (n, count) = (frames.len(), layout.stripe_count());
            return Err(ErasureError::InvalidArgument(format!(
                "{n} frames for stripe {stripe} of {count}; codec width {}",
                self.width()
            )));
        }
        let block_len = layout.block_len(stripe);
        let mut bad = Vec::new();
        let mut blocks = Vec::with_capacity(frames.len());
        for (i, frame) in frames.iter().enumerate() {
            let block = frame.and_then(|f| {
                let (block, hash) = f.split_at(block_len.min(f.len()));
                let ok = <&[u8; HASH_LEN]>::try_from(hash)
                    .is_ok_and(|hash| layout.frames.reads_intact(stripe, i, [block], hash));
                if !ok {
                    bad.push(i);
                }
                ok.then(|| &f[..block_len])
            });
            blocks.push(block);
        }
        let valid = blocks.iter().flatten().count();
        if valid < self.data_shards() {
            return Err(ErasureError::NotEnoughFragments {
                needed: self.data_shards(),
                valid,
            });
        }
        Ok((blocks, bad))
    }

    /// Owned shards for Reed-Solomon: only the first k valid blocks are kept,
    /// since more would just be copied and ignored.
    fn shards_for_reconstruct(&self, blocks: &[Option<&[u8]>]) -> Vec<Option<Vec<u8>>> {
        let mut kept = 0;
        blocks
            .iter()
            .map(|b| {
                let b = b.filter(|_| kept < self.data_shards())?;
                kept += 1;
                Some(b.to_vec())
            })
            .collect()
    }

    /// Decode one stripe: `frames[i]` is fragment i's frame for this stripe (block + hash) or None when unavailable.
    /// Verifies every given frame's hash; a frame that fails is treated as missing and its index reported.
    /// Returns the stripe's data bytes (exactly stripe_data_len_of(stripe) long) and the list of bad fragment indices.
    /// Fast path: when all k data frames are present and valid, no Reed-Solomon work is done.
    /// Error `NotEnoughFragments` when fewer than k valid frames remain.
    pub fn decode_stripe(
        &self,
        layout: &StripeLayout,
        stripe: u64,
        frames: &[Option<&[u8]>],
    ) -> Result<DecodedStripe, ErasureError> {
        let (blocks, bad) = self.verify(layout, stripe, frames)?;
        let k = self.data_shards();
        let len = layout.stripe_data_len_of(stripe);
        let mut data = if blocks[..k].iter().all(Option::is_some) {
            blocks[..k]
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
                .concat()
        } else {
            self.reconstruct_stripe(&blocks)?
        };
        data.truncate(len);
        Ok(DecodedStripe { data, bad })
    }

    /// The data of one stripe rebuilt by Reed-Solomon from any k of its frames, whose hashes the
    /// caller has already checked (the read path checks each frame as it arrives, to replace a bad
    /// source at once, and serves the k data blocks as they are when it has them). The result is
    /// `stripe_data_len_of(stripe)` bytes long.
    pub fn rebuild_stripe_data(
        &self,
        layout: &StripeLayout,
        stripe: u64,
        frames: &[Option<&[u8]>],
    ) -> Result<Vec<u8>, ErasureError> {
        layout.check(self.data_shards())?;
        let k = self.data_shards();
        let block_len = layout.block_len(stripe);
        let blocks: Vec<Option<&[u8]>> = frames
            .iter()
            .map(|f| f.filter(|f| f.len() == block_len + HASH_LEN))
            .map(|f| f.map(|f| &f[..block_len]))
            .collect();
        let valid = blocks.iter().flatten().count();
        if frames.len() != self.width() || valid < k {
            return Err(ErasureError::NotEnoughFragments { needed: k, valid });
        }
        let mut data = self.reconstruct_stripe(&blocks)?;
        data.truncate(layout.stripe_data_len_of(stripe));
        Ok(data)
    }

    /// The k data blocks of a stripe, joined, rebuilt from any k valid blocks.
    fn reconstruct_stripe(&self, blocks: &[Option<&[u8]>]) -> Result<Vec<u8>, ErasureError> {
        let mut shards = self.shards_for_reconstruct(blocks);
        self.rs.reconstruct_data(&mut shards)?;
        let data: Vec<&[u8]> = shards[..self.data_shards()]
            .iter()
            .flatten()
            .map(Vec::as_slice)
            .collect();
        Ok(data.concat())
    }

    /// Rebuild the frames of the given missing fragment indices for one stripe from any k valid frames (for repair/healing).
    pub fn rebuild_frames(
        &self,
        layout: &StripeLayout,
        stripe: u64,
        frames: &[Option<&[u8]>],
        wanted: &[usize],
    ) -> Result<Vec<Vec<u8>>, ErasureError> {
        if let Some(&w) = wanted.iter().find(|&&w| w >= self.width()) {
            return Err(ErasureError::InvalidArgument(format!(
                "fragment {w} out of range"
            )));
        }
        let (blocks, _) = self.verify(layout, stripe, frames)?;
        let mut shards = self.shards_for_reconstruct(&blocks);
        self.rs.reconstruct(&mut shards)?;
        Ok(wanted
            .iter()
            .map(|&w| {
                // reconstruct() filled every shard, so each is Some here.
                let block = shards[w].as_deref().unwrap_or_default();
                let mut frame = Vec::with_capacity(block.len() + HASH_LEN);
                frame.extend_from_slice(block);
                frame.extend_from_slice(&layout.frames.block_hash(stripe, w, block));
                frame
            })
            .collect())
    }

    /// Rebuilds one whole fragment (`wanted`) of a small object held in memory, from the other
    /// fragments (`fragments[i]`: fragment i, if known), stripe by stripe. A fragment of the wrong
    /// length counts as missing. Used for inline fragments, which are at most a few frames.
    pub fn rebuild_fragment(
        &self,
        layout: &StripeLayout,
        fragments: &[Option<&[u8]>],
        wanted: usize,
    ) -> Result<Vec<u8>, ErasureError> {
        let whole = layout.fragment_len();
        let mut out = Vec::with_capacity(whole as usize);
        for stripe in 0..layout.stripe_count() {
            let at = layout.frame_offset(stripe) as usize;
            let end = at + layout.frame_len(stripe);
            let frames: Vec<Option<&[u8]>> = fragments
                .iter()
                .map(|f| f.filter(|f| f.len() as u64 == whole).map(|f| &f[at..end]))
                .collect();
            let rebuilt = self.rebuild_frames(layout, stripe, &frames, &[wanted])?;
            out.extend_from_slice(&rebuilt[0]);
        }
        Ok(out)
    }
}

/// Push object bytes in any chunking; get back, per completed stripe, one frame per fragment.
pub struct StripeEncoder {
    codec: Codec,
    layout: StripeLayout,
    /// Index of the stripe being filled.
    stripe: u64,
    /// Data bytes of the current stripe written so far.
    filled: usize,
    pushed: u64,
    /// Frame buffers of the current stripe, allocated when its first byte arrives.
    frames: Vec<BytesMut>,
}

impl StripeEncoder {
    /// Feed bytes. For every stripe this completes, calls `emit(stripe_index, frames)` where frames.len() == k+m
    /// and frames[i] is the frame (block || hash) for fragment i as `bytes::Bytes`.
    pub fn push(
        &mut self,
        mut data: &[u8],
        emit: &mut dyn FnMut(u64, Vec<Bytes>),
    ) -> Result<(), ErasureError> {
        self.layout.check(self.codec.data_shards())?;
        let actual = self.pushed + data.len() as u64;
        if actual > self.layout.size {
            return Err(ErasureError::SizeMismatch {
                expected: self.layout.size,
                actual,
            });
        }
        self.pushed = actual;
        while !data.is_empty() {
            let block_len = self.layout.block_len(self.stripe);
            if self.frames.is_empty() {
                // Not zeroed: data blocks fill by appending, the padding of a short stripe is
                // zeroed at the flush, and parity is written whole (`Parity::encode`).
                let frame_len = block_len + HASH_LEN;
                self.frames = (0..self.codec.width())
                    .map(|_| BytesMut::with_capacity(frame_len))
                    .collect();
            }
            // Append to the data block at the current position.
            let (block, offset) = (self.filled / block_len, self.filled % block_len);
            let n = (block_len - offset).min(data.len());
            self.frames[block].extend_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.layout.stripe_data_len_of(self.stripe) {
                self.flush_stripe(emit)?;
            }
        }
        Ok(())
    }

    /// Flush the final partial stripe; error `SizeMismatch` if the bytes pushed != layout.size (too many bytes pushed must also error in push).
    pub fn finish(self, _emit: &mut dyn FnMut(u64, Vec<Bytes>)) -> Result<(), ErasureError> {
        // push() flushes every stripe as soon as its last byte arrives, so
        // once all bytes are in there is nothing left to emit.
        if self.pushed != self.layout.size {
            return Err(ErasureError::SizeMismatch {
                expected: self.layout.size,
                actual: self.pushed,
            });
        }
        Ok(())
    }

    fn flush_stripe(&mut self, emit: &mut dyn FnMut(u64, Vec<Bytes>)) -> Result<(), ErasureError> {
        let block_len = self.layout.block_len(self.stripe);
        let (data, parity) = self.frames.split_at_mut(self.codec.data_shards());
        for frame in data.iter_mut() {
            frame.resize(block_len, 0);
        }
        let data_blocks: Vec<&[u8]> = data.iter().map(|f| &f[..]).collect();
        self.codec
            .parity
            .encode(&self.codec.rs, &data_blocks, parity)?;
        let frames = std::mem::take(&mut self.frames)
            .into_iter()
            .enumerate()
            .map(|(i, mut frame)| {
                let hash = self.layout.frames.block_hash(self.stripe, i, &frame);
                frame.extend_from_slice(&hash);
                frame.freeze()
            })
            .collect();
        emit(self.stripe, frames);
        self.stripe += 1;
        self.filled = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
