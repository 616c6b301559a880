"""The consistency checker (consistency.py) across two regions, with the link between them cut
and restored by a nemesis (issue 16's region partitions).

Replication between regions is asynchronous, so a region may read a key written in the other
one late, but never wrongly. Each key has a home region, the only one that writes it (regions
resolve concurrent writes by last-writer-wins, which a register model cannot judge). Clients in
both regions write their own keys and read every key. The checker then holds:
- **in its home region, a key is a register**: the history of its writes and of the reads made
  there is checked with consistency.py's model (no stale, lost, reverted or corrupt read);
- **in the other region, a read returns something its home wrote**: NotFound or the value of a
  PUT of that key invoked before the read completed, with an intact body, partition or not;
- **the regions converge**: once the link is back and both replication backlogs are empty,
  every key reads the same in both regions as the home's final read.

The nemesis cuts both directions of the link (relays in front of each region's S3 endpoint, which
the other region's gateway is pointed at) for a few seconds at a time, from `random.Random(seed)`.

Run standalone (starts its own two regions):  python regions_checker.py --secs 600 [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from consistency import (
    NOT_FOUND, Clients, History, Op, Violation, admin_get, check, kill9, pick_seed, read_key,
    s3_client, summarize,
)


class Relay:
    """A TCP relay from a local port to `upstream`: the link from one region to another. Cut, it
    closes every connection through it and refuses new ones, as a network partition does."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.is_cut = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                cut = self.is_cut
            try:
                if cut:
                    raise OSError("cut")
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                self.drop(s)

    def drop(self, s: socket.socket) -> None:
        with self.lock:
            self.open.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> None:
        with self.lock:
            self.is_cut = True
            held = list(self.open)
        for s in held:
            self.drop(s)

    def restore(self) -> None:
        with self.lock:
            self.is_cut = False

    def close(self) -> None:
        self.cut()
        self.server.close()


def region_view(cluster, region: str):
    """The cluster as one region of it: its data dir, endpoint and name (for `kill9`,
    `start_node`, `s3_client` and `admin_get`)."""
    return dataclasses.replace(cluster, data_dir=cluster.data_dir / region,
                               endpoint=cluster.endpoints()[region], region=region,
                               restarted={})


def through_relays(cluster, regions: list[str]) -> dict[str, Relay]:
    """Points each region's gateway at its peer through a relay (its config rewritten, the
    gateway restarted); returns the relays by the region whose gateway uses each."""
    relays = {}
    for region in regions:
        view = region_view(cluster, region)
        config = view.config_path("gateway")
        text = config.read_text()
        (peer,) = [r for r in regions if r != region]
        peer_port = int(cluster.endpoints()[peer].rsplit(":", 1)[1])
        relay = Relay(peer_port)
        text, n = re.subn(rf'(endpoint = "https?://127\.0\.0\.1:){peer_port}"',
                          rf'\g<1>{relay.port}"', text)
        assert n == 1, f"{config}: no endpoint of {peer}"
        config.write_text(text)
        kill9(view, "gateway")
        view.start_node("gateway")
        cluster.restarted[f"{region}/gateway"] = view.restarted["gateway"]
        relays[region] = relay
    return relays


class RegionClients(Clients):
    """Clients of one region: PUT, GET and DELETE on the keys this region is home to, GET on the
    other region's keys (recorded in `foreign`)."""

    def __init__(self, view, bucket: str, history: History, foreign: History, seed: int,
                 home: list[str], away: list[str], threads: int):
        super().__init__(view, bucket, history, seed, threads, keys=0)
        self.keys, self.away, self.foreign = home, away, foreign

    def run(self, index: int) -> None:
        rng = random.Random(f"{self.seed}-{self.cluster.region}-{index}")
        s3 = s3_client(self.cluster)
        name, counter = f"{self.cluster.region}.c{index}", 0
        while not self.stop.is_set():
            counter += 1
            roll = rng.random()
            if roll < 0.3:
                op = read_key(s3, self.bucket, rng.choice(self.away), self.foreign, name)
            elif roll < 0.65:
                op = self.put(s3, name, rng.choice(self.keys), f"{self.seed}.{name}.{counter}",
                              rng.randrange(100, 20_000))
            elif roll < 0.95:
                op = self.get(s3, name, rng.choice(self.keys))
            else:
                op = self.delete(s3, name, rng.choice(self.keys), f"{self.seed}.{name}.{counter}")
            if op.outcome != "ok":
                time.sleep(0.05)


def check_foreign(reads: History, homes: dict[str, History]) -> list[Violation]:
    """A read in the other region returns NotFound or a value its home's clients wrote to that
    key before the read completed, intact."""
    written = {(op.key, op.value): op for h in homes.values() for op in h.ops if op.kind == "put"}
    violations = []
    for op in reads.ops:
        if op.outcome == "corrupt":
            violations.append(Violation("corrupt body", op, op.error or "unreadable body"))
        elif op.outcome == "ok" and op.value is not NOT_FOUND:
            put = written.get((op.key, op.value))
            if put is None or put.invoke > op.complete:
                violations.append(Violation(
                    "corrupt body", op, f"{op.value} was never written to {op.key} before"))
    return violations


def backlog(view) -> int:
    """Changes a region has queued for the other, not yet delivered."""
    return sum(link["backlog_entries"]
               for link in admin_get(view, "replication", timeout=10)["links"])


def backlog_empty(view) -> bool:
    links = admin_get(view, "replication", timeout=10)["links"]
    return all(link["up"] and link["backlog_entries"] == 0 for link in links)


@dataclasses.dataclass
class RegionRun:
    violations: list[Violation]
    summary: str
    cuts: int
    # The most changes queued for the other region at the end of a partition: what a cut held.
    held_back: int
    converged_keys: int


def run_region_checker(cluster, seconds: float, seed: int, threads: int = 3,
                       keys: int = 6) -> RegionRun:
    """Clients in both regions and the partition nemesis for `seconds`; then the link restored,
    the backlogs drained, and every key read in both regions."""
    regions = sorted(cluster.endpoints())
    views = {r: region_view(cluster, r) for r in regions}
    relays = through_relays(cluster, regions)
    print(f"region checker: seed {seed}, {seconds:.0f}s, regions {regions}", flush=True)
    rng = random.Random(seed)
    t0 = time.monotonic()
    bucket = f"geo-check-{seed}-{random.SystemRandom().randrange(10**6)}"
    s3_client(views[regions[0]], timeout=30).create_bucket(Bucket=bucket)
    deadline = time.monotonic() + 30
    while True:
        try:
            s3_client(views[regions[1]]).head_bucket(Bucket=bucket)
            break
        except Exception:
            assert time.monotonic() < deadline, "the bucket never reached the other region"
            time.sleep(0.2)
    homes = {r: History() for r in regions}
    foreign = History()
    keys_of = {r: [f"{r}-key-{i}" for i in range(keys)] for r in regions}
    clients = [RegionClients(views[r], bucket, homes[r], foreign, seed, keys_of[r],
                             [k for o in regions if o != r for k in keys_of[o]], threads)
               for r in regions]
    for c in clients:
        c.start()
    partitions = History()
    held_back = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            time.sleep(rng.uniform(1, 4))
            hold = rng.uniform(2, 8)
            fault = partitions.fault("region partition", regions)
            for relay in relays.values():
                relay.cut()
            time.sleep(hold)
            # What the cut held back: changes queued for the other region.
            held_back = max(held_back, *(backlog(v) for v in views.values()))
            for relay in relays.values():
                relay.restore()
            fault.end = time.monotonic()
    finally:
        for relay in relays.values():
            relay.restore()
        for c in clients:
            c.join()
    deadline = time.monotonic() + 120
    while not all(backlog_empty(v) for v in views.values()):
        assert time.monotonic() < deadline, "the replication backlogs never emptied"
        time.sleep(0.5)
    finals = {}
    for r in regions:
        final = s3_client(views[r], timeout=30)
        for key in keys_of[r]:
            finals[key] = read_key(final, bucket, key, homes[r], "final")
    violations = [v for h in homes.values() for v in check(h)]
    violations += check_foreign(foreign, homes)
    converged = 0
    for r in regions:
        final = s3_client(views[r], timeout=30)
        for key in (k for o in regions if o != r for k in keys_of[o]):
            there = read_key(final, bucket, key, foreign, "final")
            home: Op = finals[key]
            if (there.outcome, there.value) != (home.outcome, home.value):
                violations.append(Violation(
                    "not converged", there,
                    f"{r} reads {there.value or there.error} where its home read {home.value}"))
            else:
                converged += 1
    for relay in relays.values():
        relay.close()
    merged = partitions
    for h in [*homes.values(), foreign]:
        merged.ops += h.ops
    summary = summarize(merged, violations, seed, t0)
    return RegionRun(violations, summary, len(partitions.faults), held_back, converged)


def start_regions(base: Path):
    """A fresh `tessera dev --regions 2` under `base`, once both endpoints are printed."""
    from conftest import Cluster, free_port  # the same cluster code as the tests

    cluster = Cluster(name="geo-check", data_dir=base / "data", log_path=base / "tessera-dev.log",
                      port=free_port(), console_port=free_port(), dev_args=("--regions", "2"))
    cluster.start()
    deadline = time.monotonic() + 60
    while len(cluster.endpoints()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    return cluster


def main() -> int:
    """Standalone run on a fresh pair of regions (`scripts/soak.sh --regions` uses this)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secs", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else pick_seed()
    base = Path(tempfile.mkdtemp(prefix="tessera-geo-soak-"))
    print(f"cluster data and logs: {base}", flush=True)
    cluster = start_regions(base)
    try:
        result = run_region_checker(cluster, args.secs, seed)
    finally:
        cluster.stop()
    print(result.summary, flush=True)
    print(f"{result.cuts} partitions, holding back up to {result.held_back} changes; "
          f"{result.converged_keys} keys read the same in both regions", flush=True)
    if not result.violations:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if result.violations else 0


if __name__ == "__main__":
    sys.exit(main())
