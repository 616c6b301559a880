"""Reads see the latest acknowledged write, under faults (issue 16).

- `test_checker_*`: the checker's rules on made-up histories (no cluster), so that a clean run
  means something.
- `test_randomized_faults_keep_reads_consistent`: the randomized checker (consistency.py) on its
  own 3x3 cluster for TESSERA_CHECK_SECS (default 60 s, cluster start included); TESSERA_SEED
  replays a run's faults.
- `test_first_read_after_gateway_restart_sees_hinted_writes`: the interleaving of issue 16, made
  deterministic: it fails on code that serves a read from two holders that are still waiting for
  their hints.
- `test_region_partitions_keep_each_region_consistent_and_converge`: regions_checker.py on two
  regions whose link a nemesis cuts and restores, for TESSERA_GEO_CHECK_SECS (default 30 s).
- `test_a_read_counts_inline_fragments_still_kept_as_hints` and `..._for_holders_that_are_up`: an
  inline object whose fragments are partly still hints on substitutes is served when k of them
  are reachable (it was 503), whether the holders they are for are down or back but behind.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from botocore.exceptions import ClientError

from conftest import start_cluster
from consistency import (
    NOT_FOUND, History, NodeRpc, Op, admin_get, check, kill9, make_body, parse_body, pick_seed,
    process_gone, run_checker, s3_client, zone_of,
)
from helpers import unique_bucket
from regions_checker import check_foreign, run_region_checker, start_regions

CHECK_SECS = float(os.environ.get("TESSERA_CHECK_SECS", "60"))
GEO_CHECK_SECS = float(os.environ.get("TESSERA_GEO_CHECK_SECS", "30"))


@pytest.fixture(scope="module")
def cluster_3x3(tmp_path_factory):
    """Three zones of three nodes: a down holder's writes go to a substitute (hinted handoff)."""
    cluster = start_cluster(tmp_path_factory, "check3x3", tls=False, zones=3, nodes_per_zone=3)
    yield cluster
    cluster.stop()


# --------------------------------------------------------------------------- the model


def history_of(*ops: tuple) -> History:
    """Ops as (client, kind, key, invoke, complete, outcome, value)."""
    history = History()
    for i, (client, kind, key, invoke, complete, outcome, value) in enumerate(ops):
        history.ops.append(Op(i, client, kind, key, invoke, complete, outcome, value))
    return history


INF = float("inf")


def kinds(history: History) -> list[str]:
    return [v.kind for v in check(history)]


def test_checker_accepts_reads_of_concurrent_or_latest_writes():
    history = history_of(
        ("a", "put", "k", 0, 1, "ok", "v1"),
        ("a", "put", "k", 2, 4, "ok", "v2"),
        ("b", "get", "k", 3, 5, "ok", "v1"),        # concurrent with v2: either is fine
        ("b", "get", "k", 3.5, 5, "ok", "v2"),
        ("c", "put", "k", 6, INF, "maybe", "v3"),    # may apply at any later time...
        ("b", "get", "k", 7, 8, "ok", "v2"),
        ("b", "get", "k", 9, 10, "ok", "v3"),        # ...or late
        ("a", "get", "k2", 0, 1, "ok", NOT_FOUND),   # never written
    )
    assert kinds(history) == []


def test_checker_finds_stale_lost_reverted_and_corrupt_reads():
    stale = history_of(
        ("a", "put", "k", 0, 1, "ok", "v1"),
        ("a", "put", "k", 2, 3, "ok", "v2"),
        ("a", "put", "k", 4, 5, "ok", "v3"),
        ("b", "get", "k", 3.5, 3.6, "ok", "v1"),     # v2 was acknowledged before it began
    )
    assert kinds(stale) == ["stale read"]
    lost = history_of(
        ("a", "put", "k", 0, 1, "ok", "v1"),
        ("a", "put", "k", 2, 3, "ok", "v2"),         # the last write of the key
        ("b", "get", "k", 9, 10, "ok", "v1"),
        ("b", "get", "k", 11, 12, "ok", NOT_FOUND),
    )
    assert kinds(lost) == ["lost acknowledged write"] * 2
    reverted = history_of(
        ("a", "put", "k", 0, 1, "ok", "v1"),
        ("a", "put", "k", 2, INF, "maybe", "v2"),    # never acknowledged, but seen
        ("b", "get", "k", 3, 4, "ok", "v2"),
        ("c", "get", "k", 5, 6, "ok", "v1"),
    )
    assert kinds(reverted) == ["reverted read"]
    deleted = history_of(
        ("a", "put", "k", 0, 1, "ok", "v1"),
        ("a", "delete", "k", 2, 3, "ok", "d1"),
        ("a", "put", "k", 2.5, INF, "maybe", "v2"),
        ("b", "get", "k", 4, 5, "ok", "v1"),         # the delete came after v1
    )
    assert kinds(deleted) == ["stale read"]
    corrupt = history_of(
        ("a", "put", "k", 0, 1, "ok", "v1"),
        ("b", "get", "k", 2, 3, "corrupt", None),
        ("b", "get", "k", 2, 3, "ok", "elsewhere"),
    )
    assert kinds(corrupt) == ["corrupt body"] * 2


def test_a_region_reads_the_others_keys_only_as_written_there():
    home = history_of(
        ("east.c0", "put", "k", 0, 1, "ok", "v1"),
        ("east.c0", "put", "k", 2, INF, "maybe", "v2"),
        ("east.c0", "put", "k", 9, 10, "ok", "v3"),
    )
    away = history_of(
        ("west.c0", "get", "k", 3, 4, "ok", NOT_FOUND),  # not there yet: fine
        ("west.c0", "get", "k", 5, 6, "ok", "v1"),        # late: fine
        ("west.c0", "get", "k", 5, 6, "ok", "v2"),        # a maybe-applied write: fine
        ("west.c0", "get", "k", 5, 6, "ok", "v3"),        # written after this read ended
        ("west.c0", "get", "k", 5, 6, "ok", "v9"),        # never written
        ("west.c0", "get", "k", 5, 6, "corrupt", None),
    )
    found = check_foreign(away, {"east": home})
    assert [(v.kind, v.read.value) for v in found] == [
        ("corrupt body", "v3"), ("corrupt body", "v9"), ("corrupt body", None)]


def test_bodies_name_their_value_and_show_any_change():
    body = make_body("123.c4.56", 3000)
    assert len(body) == 3000 and parse_body(body) == "123.c4.56"
    assert parse_body(body[:-1] + bytes([body[-1] ^ 1])) is None
    assert parse_body(body[:-1]) is None


# --------------------------------------------------------------------------- randomized


def test_randomized_faults_keep_reads_consistent(tmp_path_factory):
    """Clients, nemesis and checker on a fresh 3x3 cluster; no violation is allowed."""
    started = time.monotonic()
    seed = pick_seed()
    cluster = start_cluster(tmp_path_factory, "checker", tls=False, zones=3, nodes_per_zone=3)
    try:
        # Healing, the final wait for a whole cluster and the final reads: ~10-30 s.
        budget = CHECK_SECS - (time.monotonic() - started) - 25
        result = run_checker(cluster, max(20.0, budget), seed)
    finally:
        cluster.stop()
    print(result.summary)
    assert result.nemesis_error is None, f"the nemesis failed: {result.nemesis_error!r}"
    ok_reads = sum(1 for op in result.history.ops if op.kind == "get" and op.outcome == "ok")
    assert ok_reads > 100, "too few successful reads to judge anything"
    assert not result.violations, "\n" + result.summary


# --------------------------------------------------------------------------- issue 16


def holders_by_slot(rpc: NodeRpc, bucket: str, key: str, etag: str) -> dict[int, str]:
    """Fragment slot -> node, from the nodes whose current record is the given version."""
    records = rpc.records(bucket, key)
    return {r["fragment"]: node for node, r in records.items() if r and r["etag"] == etag}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def node_status(cluster) -> dict[str, dict]:
    return {n["id"]: n for n in admin_get(cluster, "status")["nodes"]}


def victim_key(s3, rpc: NodeRpc, bucket: str) -> tuple[str, dict[int, str]]:
    """A small key, written once (value `<key>.v0`), whose first two fragment slots (the two
    holders a small-object GET asks first) are in different zones; and its holders by slot."""
    for attempt in range(20):
        key = f"victim-{attempt}"
        etag = s3.put_object(Bucket=bucket, Key=key,
                             Body=make_body(f"{key}.v0", 1000))["ETag"].strip('"')

        def all_six(key=key, etag=etag):
            holders = holders_by_slot(rpc, bucket, key, etag)
            return holders if len(holders) == 6 else None

        slots = wait_for(all_six, 10, f"6 holders of {key}")
        if zone_of(slots[0]) != zone_of(slots[1]):
            return key, slots
    pytest.fail("no key with its first two holders in different zones")


def victim(cluster, prefix: str):
    """A client, the node caller, a new bucket and a `victim_key` in it, with its holders."""
    s3 = s3_client(cluster, timeout=30)
    rpc = NodeRpc(cluster)
    bucket = unique_bucket(prefix)
    s3.create_bucket(Bucket=bucket)
    key, slots = victim_key(s3, rpc, bucket)
    return s3, rpc, bucket, key, slots


def kill_and_wait_down(cluster, nodes: list[str]) -> None:
    for node in nodes:
        kill9(cluster, node)
    wait_for(lambda: all(not node_status(cluster)[n]["up"] for n in nodes), 15,
             f"{nodes} to be down")
    # The status above asks the nodes itself; the gateway's own probe (every 0.5 s, 1 s
    # timeout) decides where writes go.
    time.sleep(2)


def restart_gateway_and_get(cluster, bucket: str, key: str) -> str | None:
    """kill -9 the gateway, start it again, and GET the key as its first read: the value id."""
    kill9(cluster, "gateway")
    cluster.start_node("gateway")
    try:
        body = s3_client(cluster, timeout=30).get_object(Bucket=bucket, Key=key)["Body"].read()
        return parse_body(body)
    except ClientError as err:
        return f"error {err.response['Error'].get('Code')}"


def restore(cluster, paused: list[str]) -> None:
    for node in paused:
        try:
            os.kill(cluster.node_pid(node), signal.SIGCONT)
        except ProcessLookupError:
            pass
    for node in [*cluster.node_ids, "gateway"]:
        if process_gone(cluster.node_pid(node)):
            cluster.start_node(node)


@pytest.mark.stale_read
def test_first_read_after_gateway_restart_sees_hinted_writes(cluster_3x3):
    """Issue 16: acknowledged writes whose copies for two down holders sit as hints on
    substitutes; the holders come back before the hints do (the substitutes are paused, which
    makes the hand-back as slow as it can be), the gateway is killed and restarted, and its
    first GET asks the two holders that missed every write. It must still see the last one."""
    cluster = cluster_3x3
    s3, rpc, bucket, key, slots = victim(cluster, "stale")
    stale_holders = [slots[0], slots[1]]
    print(f"key {key}: holders by slot {slots}; killing {stale_holders}")

    substitutes: list[str] = []
    try:
        kill_and_wait_down(cluster, stale_holders)
        latest = None
        for i in range(1, 7):
            latest = f"{key}.v{i}"
            s3.put_object(Bucket=bucket, Key=key, Body=make_body(latest, 1000 + i))
        status = node_status(cluster)
        substitutes = sorted(n for n, s in status.items() if s.get("hints"))
        print(f"six PUTs acknowledged, last {latest}; hints held by "
              f"{ {n: status[n]['hints'] for n in substitutes} }")
        assert substitutes, "no node holds hints: the writes did not use substitutes"
        assert not set(substitutes) & set(slots.values()), "a holder holds hints"

        # Stall the hand-back: the substitutes stop before the holders return.
        for node in substitutes:
            os.kill(cluster.node_pid(node), signal.SIGSTOP)
        for node in stale_holders:
            cluster.start_node(node)
        seen = restart_gateway_and_get(cluster, bucket, key)
        records = rpc.records(bucket, key)  # the paused substitutes do not answer: left out
        versions = {n: (r or {}).get("etag") for n, r in records.items() if n in slots.values()}
        assert seen == latest, (
            f"the gateway's first GET after its restart returned {seen!r}, not the latest "
            f"acknowledged {latest!r} (holders {stale_holders} came back without the writes; "
            f"their hints wait on paused substitutes {substitutes}; holders' etags: {versions})")
    finally:
        restore(cluster, substitutes)



@pytest.mark.stale_read
def test_a_read_counts_inline_fragments_still_kept_as_hints(cluster_3x3):
    """Issue 16, "a read with k good fragments reachable must not fail": an object of 20 KB is
    kept inline in its records as k=4 fragments. Written while two of its holders are down, it is
    acknowledged by the four others and two substitutes, which keep those two holders' records
    (with their fragments) as hints. With a third holder down too, three holders have it and the
    substitutes two: five fragments are reachable, and the GET must return it. It was 503 ("only 3
    good fragments of 4"): a read counted only what holders had, never what was on its way to
    them."""
    cluster = cluster_3x3
    s3, rpc, bucket, key, slots = victim(cluster, "hinted")
    down = [slots[0], slots[1]]
    try:
        kill_and_wait_down(cluster, down)
        value = f"{key}.inline"
        body = make_body(value, 20_000)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        status = node_status(cluster)
        substitutes = sorted(n for n, s in status.items() if s.get("hints"))
        print(f"key {key}: holders by slot {slots}; {down} down at the write, "
              f"hints on {substitutes}")
        assert len(substitutes) == 2 and not set(substitutes) & set(slots.values())
        third = slots[2]
        kill_and_wait_down(cluster, [third])
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert parse_body(got) == value and got == body
    finally:
        restore(cluster, [])


def test_region_partitions_keep_each_region_consistent_and_converge(tmp_path_factory):
    """Issue 16's checker with region partitions: two regions (`tessera dev --regions 2`), their
    link cut and restored by a seeded nemesis while clients in both work; no region may read a
    key of its own wrongly, nor one of the other's as anything its home never wrote, and both
    must end up reading the same (see regions_checker.py)."""
    cluster = start_regions(tmp_path_factory.mktemp("geo-check"))
    try:
        result = run_region_checker(cluster, GEO_CHECK_SECS, pick_seed())
    finally:
        cluster.stop()
    print(result.summary)
    print(f"{result.cuts} partitions, holding back up to {result.held_back} changes; "
          f"{result.converged_keys} keys read the same in both regions")
    assert result.cuts >= 1 and result.held_back > 0 and result.converged_keys > 0
    assert not result.violations, "\n" + result.summary


@pytest.mark.stale_read
def test_a_read_counts_inline_fragments_kept_as_hints_for_holders_that_are_up(cluster_3x3):
    """As above, but the two holders that missed the write are back: they answer lookups without
    it while their hints wait (their disks look full to them, so they refuse the handed-back
    commits). With a third holder down, the read must count the fragments kept for them."""
    cluster = cluster_3x3
    s3, _, bucket, key, slots = victim(cluster, "hinted-up")
    behind = [slots[0], slots[1]]
    configs = {n: cluster.config_path(n).read_text() for n in behind}
    try:
        kill_and_wait_down(cluster, behind)
        value = f"{key}.inline"
        body = make_body(value, 20_000)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        for node in behind:
            full = re.sub(r"(?m)^min_free_bytes = \d+$", f"min_free_bytes = {1 << 60}",
                          configs[node])
            cluster.config_path(node).write_text(full)
            cluster.start_node(node)

        def behind_and_up():
            status = node_status(cluster)
            return all(status[n]["up"] and status[n]["behind"] for n in behind)

        wait_for(behind_and_up, 15, f"{behind} up and behind")
        time.sleep(2)  # a handoff round has tried (and failed) to hand the hints back
        assert behind_and_up()
        kill_and_wait_down(cluster, [slots[2]])
        got = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert parse_body(got) == value and got == body
    finally:
        for node, config in configs.items():
            cluster.config_path(node).write_text(config)
            if not process_gone(cluster.node_pid(node)):
                kill9(cluster, node)
        restore(cluster, [])
