//! The fragment format (erasure crate): frames of a block and its blake3 hash, checked as a node
//! receives them (`FragmentVerifier`) and as the gateway reads and repairs them (`decode_stripe`,
//! `rebuild_frames`, `rebuild_fragment`).
//!
//! Input: a mode byte (its second bit chooses the frame format: clear for format 2, set for 1), then
//! - mode even: a stripe geometry as a node takes it from a request's headers (any nonzero
//!   numbers), a fragment index, a chunk size, and bytes fed to a verifier as the fragment;
//! - mode odd: a small geometry, a mask of fragments lost and one of fragments corrupted, and
//!   object bytes, which are encoded; every fragment must verify, every stripe must decode to
//!   the bytes while at least k frames are intact, and lost fragments must rebuild as they were.
#![no_main]

use erasure::{Codec, FragmentVerifier, FrameFormat, StripeLayout};
use libfuzzer_sys::fuzz_target;

fn take<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(*head)
}

fn verify_received(frames: FrameFormat, mut data: &[u8]) -> Option<()> {
    let size = u64::from_le_bytes(take::<8>(&mut data)?);
    let data_shards = u64::from_le_bytes(take::<8>(&mut data)?) as usize;
    let block_size = u64::from_le_bytes(take::<8>(&mut data)?) as usize;
    let [index, chunk] = take::<2>(&mut data)?;
    // The checks a node makes on a fragment upload's headers (storage-node `fragment_layout`).
    let layout = StripeLayout::checked(size, data_shards, block_size, frames).ok()?;
    let mut verifier = FragmentVerifier::new(layout, index as usize);
    let mut fed = 0u64;
    for piece in data.chunks(chunk.max(1) as usize) {
        if verifier.update(piece).is_err() {
            return None;
        }
        fed += piece.len() as u64;
    }
    if verifier.finish().is_ok() {
        assert_eq!(fed, layout.fragment_len());
    }
    Some(())
}

fn encode_and_decode(frames: FrameFormat, mut data: &[u8]) -> Option<()> {
    let [k, m, block, lost, corrupt] = take::<5>(&mut data)?;
    let (k, m) = (1 + k as usize % 6, m as usize % 4);
    let (lost, corrupt) = (lost as u32, corrupt as u32);
    let block_size = 1 + block as usize % 64;
    let codec = Codec::new(k, m).ok()?;
    let layout = StripeLayout {
        size: data.len() as u64,
        data_shards: k,
        block_size,
        frames,
    };
    let width = k + m;
    let mut fragments = vec![Vec::new(); width];
    let mut encoder = codec.encoder(layout);
    let mut emit = |_stripe: u64, frames: Vec<bytes::Bytes>| {
        assert_eq!(frames.len(), width);
        for (fragment, frame) in fragments.iter_mut().zip(frames) {
            fragment.extend_from_slice(&frame);
        }
    };
    encoder
        .push(data, &mut emit)
        .expect("the declared bytes encode");
    encoder.finish(&mut emit).expect("all bytes were pushed");
    for (i, fragment) in fragments.iter().enumerate() {
        assert_eq!(fragment.len() as u64, layout.fragment_len());
        let mut verifier = FragmentVerifier::new(layout, i);
        verifier
            .update(fragment)
            .expect("an encoded fragment verifies");
        verifier.finish().expect("and is whole");
    }
    // Lose and corrupt some fragments (corrupting flips one byte of each frame).
    let mut damaged = fragments.clone();
    for (i, fragment) in damaged.iter_mut().enumerate() {
        if corrupt & (1 << i) != 0 {
            for stripe in 0..layout.stripe_count() {
                let at = layout.frame_offset(stripe) as usize
                    + stripe as usize % layout.frame_len(stripe);
                fragment[at] ^= 1;
            }
        }
    }
    let lost_or_bad = |i: usize| (lost | corrupt) & (1 << i) != 0;
    let intact = (0..width).filter(|&i| !lost_or_bad(i)).count();
    let mut decoded = Vec::new();
    for stripe in 0..layout.stripe_count() {
        let at = layout.frame_offset(stripe) as usize;
        let end = at + layout.frame_len(stripe);
        let frames: Vec<Option<&[u8]>> = damaged
            .iter()
            .enumerate()
            .map(|(i, f)| (lost & (1 << i) == 0).then(|| &f[at..end]))
            .collect();
        match codec.decode_stripe(&layout, stripe, &frames) {
            Ok(stripe_data) => {
                assert!(intact >= k);
                for &bad in &stripe_data.bad {
                    assert!(corrupt & (1 << bad) != 0 && lost & (1 << bad) == 0);
                }
                decoded.extend_from_slice(&stripe_data.data);
            }
            Err(_) => {
                assert!(
                    intact < k,
                    "{intact} intact frames of {k}+{m} did not decode"
                );
                return Some(());
            }
        }
    }
    assert!(decoded == data, "decoded bytes differ");
    if intact >= k {
        let whole: Vec<Option<&[u8]>> = damaged
            .iter()
            .enumerate()
            .map(|(i, f)| (!lost_or_bad(i)).then_some(f.as_slice()))
            .collect();
        for wanted in (0..width).filter(|&i| lost_or_bad(i)) {
            let rebuilt = codec
                .rebuild_fragment(&layout, &whole, wanted)
                .expect("rebuilds from k intact fragments");
            assert!(
                rebuilt == fragments[wanted],
                "fragment {wanted} rebuilt differs"
            );
        }
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let frames = match mode & 2 {
        0 => FrameFormat::NEWEST,
        _ => FrameFormat::PositionFirst,
    };
    if mode % 2 == 0 {
        verify_received(frames, rest);
    } else {
        encode_and_decode(frames, rest);
    }
});
