"""The operator's commands (`tessera admin nodes | scrub [start NODE] | heal NODE | heals |
metrics-token`) as an operator runs them, checked against the admin API and the nodes' own
metrics."""

from __future__ import annotations

import re
import time
import tomllib
import urllib.request

import pytest

from conftest import start_cluster
from consistency import admin_get
from helpers import unique_bucket
from test_access import admin_cli, tessera_admin


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "admincli", tls=False)
    yield cluster
    cluster.stop()


def node_metric(cluster, node: str, series: str) -> float:
    config = tomllib.loads((cluster.data_dir / "config" / "gateway.toml").read_text())
    addr = next(n["addr"] for n in config["cluster"]["nodes"] if n["id"] == node)
    token = admin_get(cluster, "metrics-token")["token"]
    req = urllib.request.Request(f"http://{addr}/metrics",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(f'{series}{{node="{node}"}} '):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {series} for {node}")


def test_nodes_show_each_disk(cluster):
    # Format 3 is written once the gateway's probe has heard every node report it.
    deadline = time.monotonic() + 5
    while (status := admin_cli(cluster, "nodes"))["frame_format"] != 3:
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    nodes = status["nodes"]
    assert [n["id"] for n in nodes] == list(cluster.node_ids)
    for node in nodes:
        assert node["up"] is True
        assert 0 < node["disk_free_bytes"] <= node["disk_size_bytes"]
        assert node["frame_formats"] == [1, 2, 3]
        assert re.fullmatch(r"[0-9a-f]{16}", node["disk_id"]), node
    # The test cluster's nodes keep their data under one folder: one file system, one id.
    assert len({n["disk_id"] for n in nodes}) == 1
    table = tessera_admin(cluster, "nodes")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NODE", "ZONE", "ADDRESS", "STATE", "USED", "FREE", "SIZE",
                                "USED%", "FRAMES"]
    nodes = lines[1:1 + len(cluster.node_ids)]
    assert all(" up " in line and "%" in line and line.endswith("1,2,3") for line in nodes)
    assert lines[1 + len(cluster.node_ids):] == ["", "new fragments are written in frame format 3"]


def test_scrub_start_runs_a_pass_to_its_end(cluster):
    s3 = cluster.client()
    bucket = unique_bucket("scrub")
    s3.create_bucket(Bucket=bucket)
    for i in range(6):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=bytes([i]) * 300_000)
    node = cluster.node_ids[0]
    before = next(n for n in admin_get(cluster, "status")["nodes"] if n["id"] == node)["scrub"]
    started = tessera_admin(cluster, "scrub", "start", node)
    assert started.returncode == 0, started.stderr
    assert f"Scrub of {node}:" in started.stdout
    deadline = time.monotonic() + 60
    while True:
        scrub = next(n for n in admin_get(cluster, "status")["nodes"] if n["id"] == node)["scrub"]
        if scrub["passes"] == before["passes"] + 1 and not scrub["running"]:
            break
        assert time.monotonic() < deadline, f"the pass did not finish: {scrub}"
        time.sleep(0.2)
    # Every object is erasure-coded over all six nodes: the pass checked one file of each.
    assert scrub["files_checked"] >= 6
    assert scrub["corrupt"] == scrub["missing"] == 0
    assert scrub["last_pass_finished_unix"] >= scrub["pass_started_unix"]
    # The CLI, the admin API and the node's metrics say the same.
    listed = next(n for n in admin_cli(cluster, "scrub")["nodes"] if n["id"] == node)["scrub"]
    assert listed["passes"] == scrub["passes"]
    assert node_metric(cluster, node, "tessera_scrub_passes_total") == scrub["passes"]
    assert node_metric(cluster, node, "tessera_scrub_checked_files") == scrub["files_checked"]
    table = tessera_admin(cluster, "scrub")
    row = next(line for line in table.stdout.splitlines() if line.startswith(node))
    assert row.split()[1:3] == ["idle", str(scrub["passes"])]


def test_operator_errors_are_clear(cluster):
    res = tessera_admin(cluster, "scrub", "start", "no-such-node")
    assert res.returncode != 0
    assert "InvalidArgument" in res.stderr and "no-such-node" in res.stderr
    token = tessera_admin(cluster, "metrics-token")
    assert token.returncode == 0
    assert token.stdout.strip() == admin_get(cluster, "metrics-token")["token"]
    assert len(token.stdout.strip()) == 64


def test_buckets_count_objects_versions_and_bytes(cluster):
    s3 = cluster.client()
    bucket = unique_bucket("usage")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    sizes = {f"k{i}": 1000 * (i + 1) for i in range(10)}  # coded 2+4 (<= 4 KiB) and 4+2
    sizes["big"] = 300_000
    for key, size in sizes.items():
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)
    s3.put_object(Bucket=bucket, Key="k0", Body=b"y" * 50)  # a second version of k0
    s3.delete_object(Bucket=bucket, Key="k1")  # a delete marker over k1
    current = dict(sizes, k0=50)
    del current["k1"]
    expected = {
        "objects": len(current),
        "bytes": sum(current.values()),
        "versions": len(sizes) + 2,
        "version_bytes": sum(sizes.values()) + 50,
        "shards_unanswered": 0,
    }

    def usage() -> dict:
        listed = {b["name"]: b for b in admin_cli(cluster, "buckets")}
        return {k: listed[bucket][k] for k in expected}

    assert usage() == expected
    listed = next(b for b in admin_cli(cluster, "buckets") if b["name"] == bucket)
    assert listed["versioning"] == "Enabled" and listed["owner"] == "tessera"
    # One node down: the other holders of its shards count them.
    node = cluster.node_ids[2]
    cluster.kill_node(node)
    try:
        assert usage() == expected
    finally:
        cluster.start_node(node)
    table = tessera_admin(cluster, "buckets")
    row = next(line for line in table.stdout.splitlines() if line.startswith(bucket))
    assert row.split()[1] == str(expected["objects"])


def test_heal_starts_a_heal_and_heals_lists_them_newest_first(cluster):
    def idle():
        deadline = time.time() + 120
        while (admin_get(cluster, "heal") or {}).get("running"):
            assert time.time() < deadline, "the heal finishes"
            time.sleep(0.2)

    first, second = cluster.node_ids[3], cluster.node_ids[4]
    for node in (first, second):
        idle()  # one a scrub may have started, then each of these
        started = tessera_admin(cluster, "heal", node)
        assert started.returncode == 0, started.stderr
        assert started.stdout.startswith(f"Heal of {node}: "), started.stdout
    idle()
    heals = admin_cli(cluster, "heals")
    assert [h["node"] for h in heals[:2]] == [second, first], heals
    assert all(h["errors"] == 0 and not h["running"] for h in heals[:2]), heals
    table = tessera_admin(cluster, "heals")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NODE", "STATE", "STARTED", "FINISHED", "KEYS-REPAIRED",
                                "REBUILT", "ERRORS"]
    assert lines[1].split()[:2] == [second, "finished"]
    assert lines[2].split()[:2] == [first, "finished"]
