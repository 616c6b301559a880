//! The digests a PUT may compute over every byte: MD5 (the ETag), alone and as the gateway runs
//! it for many uploads at once, the CRCs of `x-amz-checksum-*`, and SHA-256 of signed payloads.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const LEN: usize = 1 << 20;

fn checksums(c: &mut Criterion) {
    let data = common::data(LEN);
    let mut group = c.benchmark_group("checksum 1 MiB");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.bench_function("MD5", |b| {
        b.iter(|| <md5::Md5 as md5::Digest>::digest(black_box(&data)))
    });
    group.bench_function("CRC32", |b| b.iter(|| crc32fast::hash(black_box(&data))));
    // CRC32C as the `crc32c` crate computes it (what format 3's frames used before) and as
    // crc-fast does (what they use now).
    group.bench_function("CRC32C (crc32c)", |b| {
        b.iter(|| crc32c::crc32c(black_box(&data)))
    });
    for (name, algorithm) in [
        ("CRC32C", crc_fast::CrcAlgorithm::Crc32Iscsi),
        ("CRC64NVME", crc_fast::CrcAlgorithm::Crc64Nvme),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| crc_fast::checksum(algorithm, black_box(&data)))
        });
    }
    group.bench_function("SHA256", |b| {
        b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(black_box(&data)))
    });
    group.finish();

    // The gateway's MD5 of many uploads at once (`gateway::md5_lanes`): 4, 8 or 16 streams of 1 MiB
    // fed in 64 KiB chunks from as many tasks, on a two-thread runtime like the gateway's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a tokio runtime");
    let shared = bytes::Bytes::from(data);
    for streams in [4, 8, 16] {
        let mut group = c.benchmark_group(format!("MD5 of {streams} uploads of 1 MiB at once"));
        group.throughput(Throughput::Bytes((streams * LEN) as u64));
        group.bench_function("md5_lanes", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..streams)
                        .map(|_| {
                            let data = shared.clone();
                            tokio::spawn(async move {
                                let mut md5 = gateway::md5_lanes::Md5Stream::default();
                                for at in (0..LEN).step_by(64 << 10) {
                                    md5.update(&data.slice(at..at + (64 << 10))).await;
                                }
                                md5.finish().await
                            })
                        })
                        .collect();
                    for task in tasks {
                        black_box(task.await.expect("an MD5 task"));
                    }
                })
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config(2);
    targets = checksums
}
criterion_main!(benches);
