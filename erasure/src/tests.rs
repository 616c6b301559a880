use super::*;
use ErasureError::{NotEnoughFragments, SizeMismatch};

const K: usize = 4;
const M: usize = 2;
const BS: usize = 16;
const SDL: usize = K * BS;

#[test]
fn layouts_from_a_peer_are_checked() {
    // Found by fuzzing (fuzz/, fragment_format): a node took any nonzero numbers from a
    // fragment upload's headers, and the lengths derived from them overflowed (a panic, or
    // in release a wrapped stripe length of 0 and a division by zero).
    let huge = [
        (u64::MAX, 1 << 32, 1 << 32),
        (u64::MAX, 4, usize::MAX),
        (u64::MAX, 1, 1),
        (10, 0, 4),
        (10, 4, 0),
        (10, 257, 4),
    ];
    for (size, k, block) in huge {
        assert!(
            StripeLayout::checked(size, k, block, FrameFormat::NEWEST).is_err(),
            "{size} {k} {block}"
        );
    }
    let ok = StripeLayout::checked(5 << 30, 4, 1 << 20, FrameFormat::NEWEST).unwrap();
    assert_eq!(ok.fragment_len(), 1280 * ((1 << 20) + HASH_LEN as u64));
    let tiny = StripeLayout::checked(1, 1, 1, FrameFormat::NEWEST).unwrap();
    let mut verifier = FragmentVerifier::new(tiny, 0);
    assert!(verifier.update(&[0; 40]).is_err());
}

fn layout(size: usize) -> StripeLayout {
    let (data_shards, block_size) = (K, BS);
    StripeLayout {
        size: size as u64,
        data_shards,
        block_size,
        frames: FrameFormat::NEWEST,
    }
}

/// Deterministic xorshift so tests need no rand dependency.
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn object(size: usize) -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15 ^ size as u64;
    (0..size).map(|_| rng(&mut seed) as u8).collect()
}

/// Encodes with random push chunking; returns frames[stripe][fragment].
fn encode(codec: &Codec, data: &[u8], seed: u64) -> Vec<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut emit = |s: u64, f: Vec<Bytes>| {
        assert_eq!((s as usize, f.len()), (out.len(), K + M));
        out.push(f);
    };
    let mut enc = codec.encoder(layout(data.len()));
    let (mut seed, mut rest) = (seed | 1, data);
    while !rest.is_empty() {
        let n = (rng(&mut seed) as usize % (2 * SDL + 3)).min(rest.len());
        enc.push(&rest[..n], &mut emit).unwrap();
        rest = &rest[n..];
    }
    enc.finish(&mut emit).unwrap();
    out
}

fn refs(frames: &[Bytes]) -> Vec<Option<&[u8]>> {
    frames.iter().map(|f| Some(&f[..])).collect()
}

fn decode_all(codec: &Codec, size: usize, stripes: &[Vec<Bytes>], drop: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    for (s, frames) in stripes.iter().enumerate() {
        let mut given = refs(frames);
        drop.iter().for_each(|&d| given[d] = None);
        let dec = codec
            .decode_stripe(&layout(size), s as u64, &given)
            .unwrap();
        assert!(dec.bad.is_empty());
        out.extend(dec.data);
    }
    out
}

#[test]
fn round_trip_every_small_size_and_chunking() {
    let codec = Codec::new(K, M).unwrap();
    // Covers 0, 1, k-1, every block and stripe boundary +-1, and remainders.
    for size in 0..=3 * SDL + 7 {
        let data = object(size);
        for seed in 1..4 {
            let stripes = encode(&codec, &data, seed);
            assert_eq!(stripes.len() as u64, layout(size).stripe_count());
            assert_eq!(decode_all(&codec, size, &stripes, &[]), data, "size {size}");
        }
    }
}

#[test]
fn stripe_data_rebuilt_from_any_k_checked_frames() {
    let codec = Codec::new(K, M).unwrap();
    for size in [1, BS - 1, BS + 1, SDL - 3, 2 * SDL + BS + 5] {
        let data = object(size);
        let l = layout(size);
        for (s, frames) in encode(&codec, &data, 6).iter().enumerate() {
            let start = l.data_offset(s as u64) as usize;
            let want = &data[start..start + l.stripe_data_len_of(s as u64)];
            for drop in [vec![], vec![0], vec![1, K]] {
                let mut given: Vec<Option<&[u8]>> = frames.iter().map(|f| Some(&f[..])).collect();
                drop.iter().for_each(|&d| given[d] = None);
                let data = codec.rebuild_stripe_data(&l, s as u64, &given).unwrap();
                assert_eq!(data, want, "size {size} stripe {s} without {drop:?}");
            }
            let mut short: Vec<Option<&[u8]>> = frames.iter().map(|f| Some(&f[..])).collect();
            (short[0], short[1], short[2]) = (None, None, None);
            assert!(codec.rebuild_stripe_data(&l, s as u64, &short).is_err());
        }
    }
}

#[test]
fn any_two_missing_decodes() {
    let codec = Codec::new(K, M).unwrap();
    let data = object(3 * SDL + 5);
    let stripes = encode(&codec, &data, 7);
    for a in 0..K + M {
        for b in a + 1..K + M {
            assert_eq!(decode_all(&codec, data.len(), &stripes, &[a, b]), data);
        }
    }
}

#[test]
fn flipped_byte_is_reported_and_data_correct() {
    let codec = Codec::new(K, M).unwrap();
    let data = object(SDL + 9);
    let l = layout(data.len());
    for (s, frames) in encode(&codec, &data, 3).iter().enumerate() {
        let s = s as u64;
        // Flip a block byte or a byte of the hash's CRC32C, in a data or a parity frame; or a
        // byte of the hash's blake3 part, which a reader does not check in format 3 (its block is
        // sound, and decodes).
        let crc = l.block_len(s) + HASH_LEN - 1;
        let blake3 = l.block_len(s);
        for (frag, pos, bad) in [
            (0, 0, true),
            (K - 1, crc, true),
            (K, 0, true),
            (1, blake3, false),
        ] {
            let mut broken = frames[frag].to_vec();
            broken[pos] ^= 1;
            let mut given = refs(frames);
            given[frag] = Some(&broken);
            given[if frag == 0 { 1 } else { 0 }] = None;
            let dec = codec.decode_stripe(&l, s, &given).unwrap();
            assert_eq!(
                dec.bad,
                if bad { vec![frag] } else { vec![] },
                "{frag} {pos}"
            );
            let start = l.data_offset(s) as usize;
            assert_eq!(dec.data, data[start..start + l.stripe_data_len_of(s)]);
        }
    }
}

#[test]
fn three_missing_is_not_enough() {
    let codec = Codec::new(K, M).unwrap();
    let stripes = encode(&codec, &object(100), 1);
    let mut given = refs(&stripes[0]);
    (given[0], given[2], given[5]) = (None, None, Some(&b"garbage"[..]));
    let err = codec.decode_stripe(&layout(100), 0, &given).err();
    assert_eq!(
        err,
        Some(NotEnoughFragments {
            needed: 4,
            valid: 3
        })
    );
}

#[test]
fn moved_frame_fails_verification() {
    let codec = Codec::new(K, M).unwrap();
    let data = object(3 * SDL);
    let stripes = encode(&codec, &data, 5);
    // All frames have the same length, so only the hashed indices catch a move.
    for moved in [&stripes[0][2], &stripes[1][3]] {
        let mut given = refs(&stripes[1]);
        given[2] = Some(moved);
        let dec = codec.decode_stripe(&layout(data.len()), 1, &given).unwrap();
        assert_eq!(dec.bad, vec![2]);
        assert_eq!(dec.data, data[SDL..2 * SDL]);
    }
}

#[test]
fn rebuild_frames_is_byte_identical() {
    let codec = Codec::new(K, M).unwrap();
    let data = object(2 * SDL + 11);
    for (s, frames) in encode(&codec, &data, 9).iter().enumerate() {
        let mut given = refs(frames);
        (given[1], given[4]) = (None, None);
        let l = layout(data.len());
        let rebuilt = codec
            .rebuild_frames(&l, s as u64, &given, &[4, 1, 0])
            .unwrap();
        let want = [&frames[4], &frames[1], &frames[0]].map(|f| f.to_vec());
        assert_eq!(rebuilt, want);
    }
}

/// One data shard is replication: every fragment's blocks are the object's bytes, so any
/// one fragment serves a read and rebuilds the others.
#[test]
fn one_data_shard_keeps_a_whole_copy_in_every_fragment() {
    let codec = Codec::shared(1, 5).unwrap();
    assert!(Arc::ptr_eq(&codec.rs, &Codec::shared(1, 5).unwrap().rs));
    let data = object(3 * BS + 5);
    let layout = StripeLayout {
        size: data.len() as u64,
        data_shards: 1,
        block_size: BS,
        frames: FrameFormat::NEWEST,
    };
    let mut fragments = vec![Vec::new(); 6];
    let mut encoder = codec.encoder(layout);
    let mut emit = |_: u64, frames: Vec<Bytes>| {
        for (fragment, frame) in fragments.iter_mut().zip(frames) {
            fragment.extend_from_slice(&frame);
        }
    };
    encoder.push(&data, &mut emit).unwrap();
    encoder.finish(&mut emit).unwrap();
    for (i, fragment) in fragments.iter().enumerate() {
        let blocks: Vec<u8> = (0..layout.stripe_count())
            .flat_map(|s| {
                let at = layout.frame_offset(s) as usize;
                fragment[at..at + layout.block_len(s)].to_vec()
            })
            .collect();
        assert_eq!(blocks, data, "fragment {i}");
        let only: Vec<Option<&[u8]>> = (0..6).map(|j| (j == i).then_some(&fragment[..])).collect();
        for (wanted, expected) in fragments.iter().enumerate() {
            let rebuilt = codec.rebuild_fragment(&layout, &only, wanted).unwrap();
            assert_eq!(&rebuilt, expected, "fragment {wanted} from {i}");
        }
    }
}

#[test]
fn rebuild_fragment_from_whole_fragments_is_byte_identical() {
    let codec = Codec::new(K, M).unwrap();
    for size in [0, 1, BS + 3, 2 * SDL + 5] {
        let stripes = encode(&codec, &object(size), 9);
        let fragments: Vec<Vec<u8>> = (0..K + M)
            .map(|i| stripes.iter().flat_map(|s| s[i].to_vec()).collect())
            .collect();
        for wanted in [0, K] {
            let mut given: Vec<Option<&[u8]>> = fragments.iter().map(|f| Some(&f[..])).collect();
            given[wanted] = None;
            given[1] = Some(&fragments[1][..fragments[1].len().saturating_sub(1)]);
            let rebuilt = codec
                .rebuild_fragment(&layout(size), &given, wanted)
                .unwrap();
            assert_eq!(rebuilt, fragments[wanted], "size {size}, fragment {wanted}");
        }
        let mut too_few: Vec<Option<&[u8]>> = vec![None; K + M];
        too_few[0] = Some(&fragments[0]);
        if size > 0 {
            assert!(codec.rebuild_fragment(&layout(size), &too_few, 1).is_err());
        }
    }
}

#[test]
fn layout_offsets_match_encoder_output() {
    let codec = Codec::new(K, M).unwrap();
    for size in [0, 1, SDL, 2 * SDL + 1, 3 * SDL + 50] {
        let (data, l) = (object(size), layout(size));
        let stripes = encode(&codec, &data, 2);
        for frag in 0..K + M {
            let fragment: Vec<u8> = stripes.iter().flat_map(|s| s[frag].to_vec()).collect();
            assert_eq!(fragment.len() as u64, l.fragment_len());
            for s in 0..l.stripe_count() {
                let off = l.frame_offset(s) as usize;
                let frame = &fragment[off..off + l.frame_len(s)];
                assert_eq!(frame, &stripes[s as usize][frag][..]);
                // Data blocks hold the stripe's bytes verbatim, zero-padded.
                let (start, blen) = (l.data_offset(s) as usize, l.block_len(s));
                let mut padded = data[start..start + l.stripe_data_len_of(s)].to_vec();
                padded.resize(K * blen, 0);
                if frag < K {
                    assert_eq!(&frame[..blen], &padded[frag * blen..][..blen]);
                }
            }
        }
    }
    let l = layout(1000);
    assert_eq!(l.stripes_for_range(0, 999), (0, 15));
    assert_eq!(l.stripes_for_range(63, 64), (0, 1));
    assert_eq!((l.stripe_data_len_of(15), l.block_len(15)), (40, 10));
    // 13 bytes in the last stripe: blocks of 4, the last holding one byte of data.
    let l = layout(SDL + 13);
    let lens: Vec<usize> = (0..K).map(|b| l.block_data_len(1, b)).collect();
    assert_eq!(lens, [4, 4, 4, 1]);
    assert_eq!(l.block_data_len(0, K - 1), BS);
    assert_eq!(l.block_data_len(2, 0), 0);
    let block = [7u8; 9];
    let pieces = [&block[..2], &block[2..2], &block[2..]];
    for frames in ALL_FORMATS {
        let hash = frames.block_hash(3, 1, &block);
        assert_eq!(frames.block_hash_of_pieces(3, 1, pieces), hash);
        assert!(frames.reads_intact(3, 1, pieces, &hash));
    }
}

const ALL_FORMATS: [FrameFormat; 3] = [
    FrameFormat::PositionFirst,
    FrameFormat::PositionLast,
    FrameFormat::Checksummed,
];

/// The formats as the crate's header states them, so that none changes unnoticed: fragments
/// already written in an older format must keep checking.
#[test]
fn each_frame_format_hashes_as_documented() {
    let key = blake3::derive_key("tessera fragment block v1", b"");
    let block = object(3000);
    let position = [&5u64.to_le_bytes()[..], &[2]].concat();
    let first = blake3::keyed_hash(&key, &[&position[..], &block].concat());
    let last = blake3::keyed_hash(&key, &[&block[..], &position].concat());
    let crc = crc32c::crc32c(&[&block[..], &position].concat());
    let checksummed = [&last.as_bytes()[..28], &crc.to_le_bytes()].concat();
    let hash = |frames: FrameFormat| frames.block_hash(5, 2, &block);
    assert_eq!(hash(FrameFormat::PositionFirst), *first.as_bytes());
    assert_eq!(hash(FrameFormat::PositionLast), *last.as_bytes());
    assert_eq!(hash(FrameFormat::Checksummed)[..], checksummed[..]);
    for frames in ALL_FORMATS {
        assert_eq!(FrameFormat::from_number(frames.number()), Some(frames));
        assert!(FrameFormat::known().contains(&frames.number()));
    }
    assert_eq!(FrameFormat::default(), FrameFormat::PositionFirst);
    assert_eq!(FrameFormat::from_number(4), None);
}

/// A reader's check of a format 3 block looks at the CRC32C alone; it still catches a changed
/// block, a block from another position and a changed CRC32C. Before format 3 it is the whole
/// hash. The full check (`FragmentVerifier`, as an upload's receiver and the scrubber run it)
/// also catches a change in format 3's blake3 part.
#[test]
fn a_reader_checks_a_format_3_block_by_its_crc32c() {
    let block = object(5000);
    for frames in ALL_FORMATS {
        let hash = frames.block_hash(9, 4, &block);
        let intact = |stripe, fragment, block: &[u8], hash: &[u8; HASH_LEN]| {
            frames.reads_intact(stripe, fragment, [&block[..1000], &block[1000..]], hash)
        };
        assert!(intact(9, 4, &block, &hash), "{frames:?}");
        assert!(!intact(8, 4, &block, &hash) && !intact(9, 3, &block, &hash));
        let mut changed = block.clone();
        changed[4321] ^= 0x10;
        assert!(!intact(9, 4, &changed, &hash), "{frames:?}");
        for at in [0, 27, 28, 31] {
            let mut wrong = hash;
            wrong[at] ^= 1;
            let in_crc = at >= 28;
            let read_caught = frames != FrameFormat::Checksummed || in_crc;
            assert_eq!(
                intact(9, 4, &block, &wrong),
                !read_caught,
                "{frames:?} {at}"
            );
            let layout = StripeLayout {
                size: block.len() as u64,
                data_shards: 1,
                block_size: block.len(),
                frames,
            };
            let full_check = |hash: &[u8]| {
                let frame = [&block[..], hash].concat();
                FragmentVerifier::new(layout, 0).update(&frame).is_ok()
            };
            let mut wrong = frames.block_hash(0, 0, &block);
            assert!(full_check(&wrong));
            wrong[at] ^= 1;
            assert!(!full_check(&wrong), "{frames:?}: hash byte {at}");
        }
    }
}

/// A fragment written in one format fails in the other, and format 1 encodes, decodes and
/// rebuilds as format 2 does.
#[test]
fn a_fragment_checks_only_in_its_own_format() {
    let codec = Codec::new(K, M).unwrap();
    let data = object(2 * SDL + 7);
    let old = StripeLayout {
        frames: FrameFormat::PositionFirst,
        ..layout(data.len())
    };
    let mut stripes = Vec::new();
    let mut encoder = codec.encoder(old);
    let mut emit = |_: u64, frames: Vec<Bytes>| stripes.push(frames);
    encoder.push(&data, &mut emit).unwrap();
    encoder.finish(&mut emit).unwrap();
    let mut decoded = Vec::new();
    for (s, frames) in stripes.iter().enumerate() {
        let mut given = refs(frames);
        given[0] = None;
        let stripe = codec.decode_stripe(&old, s as u64, &given).unwrap();
        assert!(stripe.bad.is_empty());
        decoded.extend(stripe.data);
        let rebuilt = codec.rebuild_frames(&old, s as u64, &given, &[0]).unwrap();
        assert_eq!(rebuilt[0], frames[0].to_vec());
        let newer = codec.decode_stripe(&layout(data.len()), s as u64, &refs(frames));
        assert!(newer.is_err(), "stripe {s} checked in format 2");
    }
    assert_eq!(decoded, data);
    let fragment: Vec<u8> = stripes.iter().flat_map(|s| s[3].to_vec()).collect();
    let mut verifier = FragmentVerifier::new(old, 3);
    verifier.update(&fragment).unwrap();
    verifier.finish().unwrap();
    let mut verifier = FragmentVerifier::new(layout(data.len()), 3);
    assert_eq!(
        verifier.update(&fragment),
        Err(ErasureError::CorruptFrame { stripe: 0 })
    );
}

#[test]
fn verifier_takes_any_chunking_and_catches_corruption() {
    let codec = Codec::new(K, M).unwrap();
    let data = object(3 * SDL + 5);
    let l = layout(data.len());
    let stripes = encode(&codec, &data, 4);
    let fragment =
        |frag: usize| -> Vec<u8> { stripes.iter().flat_map(|s| s[frag].to_vec()).collect() };
    for (frag, step) in [(0, 1), (2, 7), (K, 1000)] {
        let bytes = fragment(frag);
        let mut verifier = FragmentVerifier::new(l, frag);
        for chunk in bytes.chunks(step) {
            verifier.update(chunk).unwrap();
        }
        verifier.finish().unwrap();
        let mut short = FragmentVerifier::new(l, frag);
        short.update(&bytes[..bytes.len() - 1]).unwrap();
        assert!(short.finish().is_err());
        let mut long = FragmentVerifier::new(l, frag);
        assert!(long.update(&[&bytes[..], &[0]].concat()).is_err());
    }
    let mut broken = fragment(1);
    let second = l.frame_offset(1) as usize + 3;
    broken[second] ^= 1;
    let mut verifier = FragmentVerifier::new(l, 1);
    assert_eq!(
        verifier.update(&broken),
        Err(ErasureError::CorruptFrame { stripe: 1 })
    );
    let mut wrong_slot = FragmentVerifier::new(l, 2);
    assert!(wrong_slot.update(&fragment(1)).is_err());
}

#[test]
fn size_mismatch() {
    let codec = Codec::new(K, M).unwrap();
    let mut emit = |_: u64, _: Vec<Bytes>| {};
    let mut enc = codec.encoder(layout(10));
    enc.push(&[0; 6], &mut emit).unwrap();
    let err = enc.push(&[0; 5], &mut emit).err();
    assert_eq!(
        err,
        Some(SizeMismatch {
            expected: 10,
            actual: 11
        })
    );
    let err = enc.finish(&mut emit).err();
    assert_eq!(
        err,
        Some(SizeMismatch {
            expected: 10,
            actual: 6
        })
    );
}

#[test]
fn bad_parameters() {
    assert!(Codec::new(0, 2).is_err());
    assert!(Codec::new(200, 100).is_err());
    let codec = Codec::new(K, M).unwrap();
    let wrong_k = StripeLayout {
        data_shards: 3,
        ..layout(10)
    };
    assert!(codec
        .encoder(wrong_k)
        .push(&[0; 4], &mut |_, _| {})
        .is_err());
    assert!(codec.decode_stripe(&layout(10), 0, &[None; 5]).is_err());
    let frames = encode(&codec, &object(10), 1).remove(0);
    assert!(codec.decode_stripe(&layout(10), 1, &refs(&frames)).is_err());
}
