//! The digests a PUT may compute over every byte: MD5 (the ETag), the CRCs of
//! `x-amz-checksum-*`, and SHA-256 of signed payloads.

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
    group.bench_function("CRC32C", |b| b.iter(|| crc32c::crc32c(black_box(&data))));
    group.bench_function("CRC64NVME", |b| {
        b.iter(|| {
            let mut digest = crc64fast_nvme::Digest::new();
            digest.write(black_box(&data));
            digest.sum64()
        })
    });
    group.bench_function("SHA256", |b| {
        b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(black_box(&data)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config(2);
    targets = checksums
}
criterion_main!(benches);
