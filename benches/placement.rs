//! Where an object's fragments go: the shard of a key and that shard's holders, on a nine-node
//! layout of three zones.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use placement::{Layout, NodeInfo};
use std::hint::black_box;

fn placement(c: &mut Criterion) {
    let nodes = (0..9)
        .map(|i| NodeInfo {
            id: format!("z{}-n{}", i % 3 + 1, i / 3 + 1),
            zone: format!("z{}", i % 3 + 1),
            addr: format!("127.0.0.1:{}", 7000 + i),
            weight: 100,
        })
        .collect();
    let layout = Layout::new(nodes, 4, 2, 256).unwrap();
    let bucket = [7u8; 16];
    let keys: Vec<String> = (0..1024)
        .map(|i| format!("photos/2024/06/img-{i:06}.jpg"))
        .collect();
    let mut group = c.benchmark_group("placement");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("shard_of + holders, 9 nodes", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let shard = layout.shard_of(black_box(&bucket), keys[i].as_bytes());
            layout.holders(shard)[0]
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config(2);
    targets = placement
}
criterion_main!(benches);
