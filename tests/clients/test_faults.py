"""Node loss and on-disk corruption on a dedicated http cluster (4+2 erasure coding)."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import pytest

from conftest import NODE_IDS, start_cluster
from helpers import KiB, MiB, flip_middle_byte, newest_fragment, random_bytes, unique_bucket

FAULT_OBJECT_SIZES = [1 * KiB, 100 * KiB, 3 * MiB]
KILLED_NODES = ["z1-n1", "z2-n2"]          # two different zones
CORRUPTED_NODES = ["z1-n2", "z3-n1"]       # two different nodes (and zones)


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "faults", tls=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def s3f(fault_cluster):
    """A client on the fault cluster; every node is up when the test starts."""
    for node_id in NODE_IDS:
        if not fault_cluster.node_alive(node_id):
            fault_cluster.start_node(node_id)
    return fault_cluster.client()


@pytest.fixture
def fbucket(s3f):
    name = unique_bucket("fault")
    s3f.create_bucket(Bucket=name)
    return name


def assert_all_readable(s3, bucket: str, objects: dict[str, bytes]) -> None:
    wrong = [key for key, data in objects.items()
             if s3.get_object(Bucket=bucket, Key=key)["Body"].read() != data]
    assert wrong == [], f"objects read back wrong: {wrong}"


def test_reads_survive_two_dead_nodes(fault_cluster, s3f, fbucket):
    sizes = itertools.islice(itertools.cycle(FAULT_OBJECT_SIZES), 30)
    objects = {f"obj-{i:02d}-{size}": random_bytes(size) for i, size in enumerate(sizes)}
    for key, data in objects.items():
        s3f.put_object(Bucket=fbucket, Key=key, Body=data)

    try:
        for node_id in KILLED_NODES:
            fault_cluster.kill_node(node_id)
        assert_all_readable(s3f, fbucket, objects)
    finally:
        for node_id in KILLED_NODES:
            if not fault_cluster.node_alive(node_id):
                fault_cluster.start_node(node_id)

    assert all(fault_cluster.node_alive(n) for n in NODE_IDS)
    assert_all_readable(s3f, fbucket, objects)


@pytest.mark.parametrize("corrupted", [CORRUPTED_NODES[:1], CORRUPTED_NODES],
                         ids=["one-node", "two-nodes"])
def test_reads_survive_corrupted_fragments(fault_cluster, s3f, fbucket, corrupted):
    size = 3 * MiB
    data = random_bytes(size)
    since = time.time() - 0.05  # file mtimes use a coarse clock
    s3f.put_object(Bucket=fbucket, Key="victim", Body=data)

    for node_id in corrupted:
        fragment = newest_fragment(fault_cluster.fragments_dir(node_id), since, size // 4)
        flip_middle_byte(fragment)

    # Full and ranged reads must both return the original bytes, twice (in case the
    # first read repairs something and the second takes another path).
    for _ in range(2):
        assert s3f.get_object(Bucket=fbucket, Key="victim")["Body"].read() == data
        middle = s3f.get_object(Bucket=fbucket, Key="victim",
                                Range=f"bytes={size // 4}-{3 * size // 4}")["Body"].read()
        assert middle == data[size // 4: 3 * size // 4 + 1]
