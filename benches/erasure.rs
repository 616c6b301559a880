//! Reed-Solomon 4+2 as the gateway runs it: encoding a 1 MiB stripe (data appended into the
//! frames, parity, a blake3 hash per block) and decoding one with two data fragments lost.

mod common;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use erasure::{Codec, FrameFormat, StripeLayout};
use std::hint::black_box;

const STRIPE: usize = 1 << 20;

fn layout() -> StripeLayout {
    StripeLayout {
        size: STRIPE as u64,
        data_shards: 4,
        block_size: STRIPE / 4,
        frames: FrameFormat::NEWEST,
    }
}

fn encode(codec: &Codec, data: &[u8]) -> Vec<Bytes> {
    let mut encoder = codec.encoder(layout());
    let mut frames = Vec::new();
    encoder
        .push(data, &mut |_, f| frames = f)
        .expect("one full stripe");
    frames
}

fn erasure(c: &mut Criterion) {
    let codec = Codec::new(4, 2).unwrap();
    let data = common::data(STRIPE);
    let mut group = c.benchmark_group("erasure 4+2");
    group.throughput(Throughput::Bytes(STRIPE as u64));
    group.bench_function("encode 1 MiB stripe (StripeEncoder::push)", |b| {
        b.iter(|| encode(&codec, black_box(&data)))
    });
    let frames = encode(&codec, &data);
    let mut lost: Vec<Option<&[u8]>> = frames.iter().map(|f| Some(&f[..])).collect();
    lost[0] = None;
    lost[1] = None;
    let decoded = codec.decode_stripe(&layout(), 0, &lost).unwrap();
    assert!(decoded.data == data && decoded.bad.is_empty());
    group.bench_function("reconstruct 1 MiB stripe, fragments 0 and 1 lost", |b| {
        b.iter(|| codec.decode_stripe(&layout(), 0, black_box(&lost)).unwrap())
    });
    group.finish();

    // A 1 MiB object's block, and a 4 KiB object's (coded 2+4), in each frame format: written,
    // and checked by a reader.
    for (name, len) in [("256 KiB", STRIPE / 4), ("2 KiB", 2 << 10)] {
        let block = &data[..len];
        let mut group = c.benchmark_group(format!("block_hash {name}"));
        group.throughput(Throughput::Bytes(len as u64));
        for frames in [
            FrameFormat::PositionFirst,
            FrameFormat::PositionLast,
            FrameFormat::Checksummed,
        ] {
            let format = format!("format {}", frames.number());
            group.bench_function(format, |b| {
                b.iter(|| frames.block_hash(0, 0, black_box(block)))
            });
            // What a reader checks: the whole hash before format 3, its CRC32C since.
            let hash = frames.block_hash(0, 0, block);
            let read = format!("read check, format {}", frames.number());
            group.bench_function(read, |b| {
                b.iter(|| frames.reads_intact(0, 0, [black_box(block)], &hash))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config(2);
    targets = erasure
}
criterion_main!(benches);
