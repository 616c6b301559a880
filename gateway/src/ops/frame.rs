//! One fragment frame (a block and its hash) as the read path received it: in the pieces of the
//! node's response it arrived in, which are kept rather than joined. Joining them copied every
//! byte of a large GET once more (`memmove` was 7% of all CPU of a 64 MiB GET at C=8).

use bytes::Bytes;
use erasure::{FrameFormat, HASH_LEN};

#[derive(Debug, Default)]
pub struct Frame {
    pieces: Vec<Bytes>,
    len: usize,
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        let mut frame = Frame::default();
        frame.push(bytes);
        frame
    }
}

impl Frame {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, piece: Bytes) {
        self.len += piece.len();
        if !piece.is_empty() {
            self.pieces.push(piece);
        }
    }

    /// Whether the frame is one block of `stripe` in fragment `fragment` followed by its hash in
    /// format `frames`, as far as a reader checks (`FrameFormat::reads_intact`).
    pub fn is_intact(&self, frames: FrameFormat, stripe: u64, fragment: u8) -> bool {
        let Some(block_len) = self.len.checked_sub(HASH_LEN) else {
            return false;
        };
        let mut hash = [0; HASH_LEN];
        let mut at = 0;
        for piece in self.range(block_len, HASH_LEN) {
            hash[at..at + piece.len()].copy_from_slice(&piece);
            at += piece.len();
        }
        let block = self.range(0, block_len);
        let pieces = block.iter().map(|b| b.as_ref());
        frames.reads_intact(stripe, fragment as usize, pieces, &hash)
    }

    /// The frame's first `len` bytes (at most its block), as slices of its pieces.
    pub fn block_prefix(&self, len: usize) -> Vec<Bytes> {
        self.range(0, len.min(self.len.saturating_sub(HASH_LEN)))
    }

    /// The whole frame in one buffer: copied unless it arrived in one piece. For the paths that
    /// decode or rebuild, which need each block in one slice.
    pub fn joined(&self) -> Bytes {
        match self.pieces.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }

    /// Bytes `[start, start + len)` of the frame as slices of its pieces; `len` is clamped to the end.
    fn range(&self, start: usize, len: usize) -> Vec<Bytes> {
        let end = (start + len).min(self.len);
        let mut out = Vec::new();
        let mut at = 0;
        for piece in &self.pieces {
            let (lo, hi) = (at, at + piece.len());
            at = hi;
            let (a, b) = (start.max(lo), end.min(hi));
            if a < b {
                out.push(piece.slice(a - lo..b - lo));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `block`'s bytes and its hash in format `frames`: a whole frame.
    fn whole(frames: FrameFormat, block: &[u8], stripe: u64, fragment: u8) -> Vec<u8> {
        let hash = frames.block_hash(stripe, fragment as usize, block);
        [block, &hash].concat()
    }

    /// A frame's bytes, cut into pieces at `cuts`.
    fn cut(whole: Vec<u8>, cuts: &[usize]) -> Frame {
        let whole = Bytes::from(whole);
        let mut frame = Frame::default();
        let mut at = 0;
        for &c in cuts.iter().chain([whole.len()].iter()) {
            frame.push(whole.slice(at..c));
            at = c;
        }
        frame
    }

    #[test]
    fn a_frame_in_any_pieces_checks_and_yields_its_block() {
        let block: Vec<u8> = (0..100u8).collect();
        // Cuts inside the block, at its end, inside the hash, and empty pieces.
        for cuts in [
            vec![],
            vec![1],
            vec![50, 50, 99],
            vec![100],
            vec![101, 120],
            vec![10, 20, 30, 131],
        ] {
            let frame = cut(whole(FrameFormat::NEWEST, &block, 7, 2), &cuts);
            assert_eq!(frame.len(), 132);
            let intact = |frames, stripe, fragment| frame.is_intact(frames, stripe, fragment);
            assert!(intact(FrameFormat::NEWEST, 7, 2), "cuts {cuts:?}");
            assert!(!intact(FrameFormat::NEWEST, 8, 2) && !intact(FrameFormat::NEWEST, 7, 3));
            assert!(
                !intact(FrameFormat::PositionFirst, 7, 2),
                "in the other format"
            );
            assert_eq!(frame.block_prefix(1000).concat(), block);
            assert_eq!(frame.block_prefix(42).concat(), block[..42]);
            assert_eq!(frame.joined()[..100], block[..]);
            assert_eq!(frame.joined().len(), 132);
        }
    }

    #[test]
    fn a_changed_byte_or_a_short_frame_fails_the_check() {
        let block = [9u8; 64];
        let frame_of = |frames: FrameFormat, flip: usize| {
            let mut bytes = whole(frames, &block, 0, 0);
            bytes[flip] ^= 1;
            cut(bytes, &[40])
        };
        for frames in [
            FrameFormat::PositionFirst,
            FrameFormat::PositionLast,
            FrameFormat::Checksummed,
        ] {
            // In the block, at the hash's first byte, and in its last four (format 3's CRC32C).
            for flip in [0, 63, 64, 92, 95] {
                // Format 3's readers leave its blake3 part to the node and the scrubber.
                let checked = frames != FrameFormat::Checksummed || !(64..92).contains(&flip);
                assert_eq!(
                    frame_of(frames, flip).is_intact(frames, 0, 0),
                    !checked,
                    "{frames:?}, byte {flip} flipped"
                );
            }
        }
        let short = Frame::from(Bytes::from_static(&[1; 31]));
        assert!(!short.is_intact(FrameFormat::NEWEST, 0, 0));
    }
}
