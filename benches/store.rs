//! One storage node's disk: a 1 MiB fragment written, fsynced, renamed into place (and the
//! directory fsynced), and read back, in a temporary folder.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use storage_node::store::Store;

const LEN: usize = 1 << 20;

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), "test").unwrap();
    let data = common::data(LEN);
    let mut group = c.benchmark_group("fragment 1 MiB");
    group.throughput(Throughput::Bytes(LEN as u64));
    group.sample_size(20);
    let mut n = 0u64;
    group.bench_function("write + fsync + rename + dir fsync", |b| {
        b.iter(|| {
            n += 1;
            let mut file = store.create_fragment(&format!("{n:032x}"), 0).unwrap();
            file.write(black_box(&data)).unwrap();
            file.commit().unwrap();
        })
    });
    let id = format!("{:032x}", 0);
    let mut file = store.create_fragment(&id, 0).unwrap();
    file.write(&data).unwrap();
    file.commit().unwrap();
    group.bench_function("read (page cache)", |b| {
        b.iter(|| store.read_fragment(&id, 0, 0, LEN as u64).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config(3);
    targets = store
}
criterion_main!(benches);
