"""A randomized, Jepsen-style consistency checker for a running `tessera dev` cluster.

Client threads PUT, GET and DELETE a small set of keys while a nemesis thread kills, pauses and
restarts processes; afterwards every key's history is checked against a single register.

The model (per key, one register; the real-time order of operations decides):
- Every PUT writes a value that names itself: its body starts with a line
  `tessera-check <value-id> <size>` and the rest is derived from the id, so a body read back is
  either exactly what one PUT wrote or corrupt. A DELETE writes "NotFound", as does the key's
  initial state.
- Each operation has an invoke time and a complete time (time.monotonic, taken just before the
  request and just after the answer). A write answered with success is *acknowledged*: it took
  effect at some moment inside [invoke, complete]. A write that got no success answer (a timeout,
  a broken connection, a 5xx) is *maybe-applied*: it may take effect at any moment after its
  invoke, or never. A write whose connection was refused never reached the gateway and is
  ignored, as is a GET that failed: neither tells anything.
- Write A is *definitely before* write B when A completed (was acknowledged) before B was invoked.
  A maybe-applied write is definitely before nothing.

A GET that completed returned value x (a PUT's id, or NotFound). The writes that could have
produced x are its *candidates*: the one PUT that wrote x, or, for NotFound, the initial state and
every DELETE invoked before the GET completed. The checker reports:
- **stale read**: every candidate c of x is definitely before some acknowledged write w (of another
  value) that completed before the GET was invoked. Then, when the GET started, w had overwritten
  every write of x, so x cannot be current anywhere in [invoke, complete].
- **lost acknowledged write**: a stale read where the overwriting write w is *final*: every other
  write of the key (acknowledged or not) completed before w was invoked, so w must be what every
  later read sees, and this one did not.
- **reverted read**: some GET that completed before this GET was invoked returned v, and every
  candidate of x is definitely before the write of v. A read that saw v proves v took effect (even
  a maybe-applied v), so nothing written before v may come back afterwards (for any client).
- **corrupt body**: the body is not exactly what a PUT of this key wrote, or names a PUT that was
  invoked after the GET completed.

This is not a full linearizability search (a few anomalies among concurrent operations go
unseen), but each violation it reports is certain and has a short explanation, printed with the
operations around it.

The nemesis never takes down more than the redundancy allows (at most 2 of the 6 fragment holders
of any key, with 4+2 on three zones of three nodes): one node, two nodes of different zones, one
whole zone, or the gateway. Before each new node fault it waits for the cluster to be whole again
(every node up, no pending hints, no heal pending or running), since a hint not yet handed back is
a copy that exists only on its substitute. Its choices come from `random.Random(seed)`: the seed
(printed; set it with TESSERA_SEED) replays the same faults in the same order and timing. The
clients' timing varies from run to run, so a replay reproduces the faults, not every interleaving.

Run standalone (starts its own 3x3 cluster):  python consistency.py --secs 600 [--seed N]
"""

from __future__ import annotations

import argparse
import bisect
import collections
import hashlib
import hmac
import json
import os
import random
import signal
import ssl
import sys
import tempfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError

NOT_FOUND = None  # the value of a GET that found no object
BODY_MAGIC = b"tessera-check"


# --------------------------------------------------------------------------- bodies


def make_body(value_id: str, size: int) -> bytes:
    """A body that names its value and is fully derived from it, so any corruption shows."""
    head = b"%s %s %d\n" % (BODY_MAGIC, value_id.encode(), size)
    filler = random.Random(value_id).randbytes(max(0, size - len(head)))
    return head + filler


def parse_body(body: bytes) -> str | None:
    """The value id a body names, or None when it is not exactly a body `make_body` made."""
    line, _, _ = body.partition(b"\n")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != BODY_MAGIC:
        return None
    try:
        value_id, size = parts[1].decode(), int(parts[2])
    except (UnicodeDecodeError, ValueError):
        return None
    return value_id if make_body(value_id, size) == body else None


def pick_size(rng: random.Random) -> int:
    """Mostly small objects (coded 2+4, <= 4 KiB), some inline ones coded 4+2."""
    if rng.random() < 0.15:
        return rng.randint(38_000, 42_000)
    return rng.randint(100, 3_000)


# --------------------------------------------------------------------------- history


@dataclass
class Op:
    """One client operation. For a PUT `value` is the id it wrote; for a DELETE its own id (it
    writes NotFound); for a GET the id it read, or NOT_FOUND."""
    index: int
    client: str
    kind: str  # "put" | "get" | "delete"
    key: str
    invoke: float
    complete: float = float("inf")
    # "ok"; a write: "maybe" (no success answer) or "fail" (never sent: connection refused);
    # a GET: "error" (no answer to judge) or "corrupt" (a body no PUT wrote).
    outcome: str = ""
    value: str | None = None
    size: int = 0
    error: str = ""

    @property
    def is_write(self) -> bool:
        return self.kind in ("put", "delete")

    @property
    def acknowledged(self) -> bool:
        return self.is_write and self.outcome == "ok"

    @property
    def done_by(self) -> float:
        """When the write certainly took effect, if it did: its completion when acknowledged."""
        return self.complete if self.acknowledged else float("inf")

    def describe(self, t0: float) -> str:
        end = "     -  " if self.complete == float("inf") else f"{self.complete - t0:8.3f}"
        shown = self.value
        if self.kind == "get":
            found = self.outcome == "ok" and self.value is NOT_FOUND
            shown = "NotFound" if found else self.value or ""
        if self.kind == "delete":
            shown = f"(delete {self.value})"
        extra = f" size={self.size}" if self.kind == "put" else ""
        err = f" [{self.error[:80]}]" if self.error else ""
        return (f"#{self.index:<6} {self.invoke - t0:8.3f} .. {end}  {self.client:<8} "
                f"{self.kind:<6} {self.outcome:<7} {shown}{extra}{err}")


@dataclass
class Fault:
    kind: str
    targets: list[str]
    start: float
    end: float = float("inf")
    note: str = ""

    def describe(self, t0: float) -> str:
        end = "   -   " if self.end == float("inf") else f"{self.end - t0:8.3f}"
        note = f"  ({self.note})" if self.note else ""
        return f"{self.start - t0:8.3f} .. {end}  {self.kind:<16} {','.join(self.targets)}{note}"


class History:
    """Thread-safe record of every operation and fault."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ops: list[Op] = []
        self.faults: list[Fault] = []
        self.events: list[tuple[float, str]] = []  # nemesis notes (waits, recovery)

    def begin(self, client: str, kind: str, key: str, **fields) -> Op:
        with self.lock:
            op = Op(len(self.ops), client, kind, key, time.monotonic(), **fields)
            self.ops.append(op)
        return op

    def fault(self, kind: str, targets: list[str], note: str = "") -> Fault:
        fault = Fault(kind, targets, time.monotonic(), note=note)
        with self.lock:
            self.faults.append(fault)
        return fault

    def note(self, text: str) -> None:
        with self.lock:
            self.events.append((time.monotonic(), text))


# --------------------------------------------------------------------------- the checker


@dataclass
class Violation:
    kind: str  # "stale read" | "lost acknowledged write" | "reverted read" | "corrupt body"
    read: Op
    explanation: str
    related: list[Op] = field(default_factory=list)


def check(history: History) -> list[Violation]:
    """Every violation of the register model (see the module docstring), key by key."""
    by_key: dict[str, list[Op]] = collections.defaultdict(list)
    for op in history.ops:
        by_key[op.key].append(op)
    violations = []
    for key, ops in sorted(by_key.items()):
        violations += check_key(ops)
    return violations


def check_key(ops: list[Op]) -> list[Violation]:
    writes = [op for op in ops if op.is_write and op.outcome != "fail"]
    puts = {op.value: op for op in writes if op.kind == "put"}
    deletes = [op for op in writes if op.kind == "delete"]
    reads = [op for op in ops if op.kind == "get" and op.outcome in ("ok", "corrupt")]

    # Acknowledged writes by completion, with the latest invoke among those completed so far:
    # "some acknowledged write completed before t and was invoked after u" is then one lookup.
    acked = sorted((w for w in writes if w.acknowledged), key=lambda w: w.complete)
    acked_completes = [w.complete for w in acked]
    acked_puts = [w for w in acked if w.kind == "put"]
    put_completes = [w.complete for w in acked_puts]

    def running_latest(chosen: list[Op], invoked=lambda op: op.invoke) -> list[Op]:
        """For each prefix of `chosen`, the op in it with the latest `invoked` time."""
        best, out = None, []
        for op in chosen:
            if best is None or invoked(op) > invoked(best):
                best = op
            out.append(best)
        return out

    def latest_before(prefix_best: list[Op], completes: list[float], before: float):
        n = bisect.bisect_left(completes, before)
        return prefix_best[n - 1] if n else None

    def final_write(w: Op) -> bool:
        return all(o is w or o.complete < w.invoke for o in writes)

    # Reads that returned a PUT's value, by completion: the base of "reverted read".
    seen = sorted((r for r in reads if r.outcome == "ok" and r.value in puts
                   and puts[r.value].invoke < r.complete), key=lambda r: r.complete)
    seen_completes = [r.complete for r in seen]
    seen_best = running_latest(seen, lambda r: puts[r.value].invoke)
    acked_best, put_best = running_latest(acked), running_latest(acked_puts)

    violations = []
    for read in reads:
        if read.outcome == "corrupt":
            violations.append(Violation("corrupt body", read, read.error))
            continue
        if read.value is NOT_FOUND:
            candidates = [d for d in deletes if d.invoke < read.complete]
            newest_done = max([d.done_by for d in candidates], default=float("-inf"))
            overwriters, completes = put_best, put_completes
            what = "NotFound"
        else:
            writer = puts.get(read.value)
            if writer is None or writer.invoke > read.complete:
                why = ("names a value no PUT of this key wrote" if writer is None
                       else f"names PUT #{writer.index}, invoked after the GET completed")
                violations.append(Violation("corrupt body", read, why, [writer] if writer else []))
                continue
            candidates = [writer]
            newest_done = writer.done_by
            overwriters, completes = acked_best, acked_completes
            what = f"{read.value} (PUT #{writer.index})"

        # Stale: an acknowledged write of another value, invoked after every candidate was
        # acknowledged, completed before this read began.
        w = latest_before(overwriters, completes, read.invoke)
        if w is not None and w.invoke > newest_done:
            kind = "lost acknowledged write" if final_write(w) else "stale read"
            newer = sum(1 for o in acked if newest_done < o.invoke and o.complete < read.invoke)
            violations.append(Violation(
                kind, read,
                f"returned {what}, but #{w.index} ({w.kind} {w.value}) was invoked after "
                f"the write(s) of that value were acknowledged, and was acknowledged before "
                f"this GET began: the value returned is {newer} acknowledged writes old",
                [*candidates[-3:], w]))
            continue

        # Reverted: a read that completed before this one began saw a value written after
        # every write of what this one returned.
        earlier = latest_before(seen_best, seen_completes, read.invoke)
        if earlier is not None and puts[earlier.value].invoke > newest_done:
            v = puts[earlier.value]
            violations.append(Violation(
                "reverted read", read,
                f"returned {what}, but GET #{earlier.index} ({earlier.client}) had already "
                f"returned {v.value} (PUT #{v.index}), which was invoked after the write(s) "
                f"of that value were acknowledged", [*candidates[-3:], v, earlier]))
    return violations


# --------------------------------------------------------------------------- reporting


def summarize(history: History, violations: list[Violation], seed: int, t0: float,
              max_shown: int = 10) -> str:
    lines = [f"=== consistency check, seed {seed} (replay: TESSERA_SEED={seed}) ==="]
    counts = collections.Counter((op.kind, op.outcome) for op in history.ops)
    for kind in ("put", "get", "delete"):
        parts = [f"{outcome} {n}" for (k, outcome), n in sorted(counts.items()) if k == kind]
        if kind == "get":
            not_found = sum(1 for op in history.ops
                            if op.kind == "get" and op.outcome == "ok" and op.value is NOT_FOUND)
            parts.append(f"(NotFound among ok: {not_found})")
        lines.append(f"ops {kind:<6}: {sum(n for (k, _), n in counts.items() if k == kind):6d}  "
                     + ", ".join(parts))
    fault_counts = collections.Counter(f.kind for f in history.faults)
    lines.append(f"faults: {len(history.faults)}  "
                 + ", ".join(f"{k} {n}" for k, n in sorted(fault_counts.items())))
    for fault in history.faults:
        lines.append("  " + fault.describe(t0))
    for at, text in history.events:
        lines.append(f"  note {at - t0:8.3f}  {text}")
    by_kind = collections.Counter(v.kind for v in violations)
    lines.append(f"violations: {len(violations)}  "
                 + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    for v in violations[:max_shown]:
        lines.append("")
        lines.append(f"--- {v.kind}: key {v.read.key}, GET #{v.read.index} by {v.read.client}")
        lines.append(f"    {v.explanation}")
        lines.append("    history of the key around it (invoke .. complete, seconds from start):")
        read = v.read
        related = {op.index for op in v.related}
        # Writes refused before they were sent are left out: they never happened.
        key_ops = [op for op in history.ops if op.key == read.key and op.outcome != "fail"]
        # The last acknowledged writes before the read (what it should have seen), the
        # operations concurrent with it, and the first ones after it.
        before = [op for op in key_ops if op.acknowledged and op.complete < read.invoke][-12:]
        start, end = before[0].invoke if before else read.invoke - 10, read.complete
        # (A write that never answered is concurrent with everything after it: only those
        # invoked in the window shown.)
        during = [op for op in key_ops if start <= op.invoke < read.complete
                  and op.complete > read.invoke][:12]
        after = [op for op in key_ops if op.invoke >= read.complete][:6]
        shown = sorted([*before, *during, *after, *v.related, read],
                       key=lambda op: (op.invoke, op.index))
        for op in {op.index: op for op in shown}.values():
            mark = ">>" if op is read else ("* " if op.index in related else "  ")
            lines.append(f"   {mark}{op.describe(t0)}")
        for fault in history.faults:
            if fault.start <= end and fault.end >= start - 30:
                lines.append(f"    fault {fault.describe(t0)}")
    if len(violations) > max_shown:
        lines.append(f"... and {len(violations) - max_shown} more violations")
    return "\n".join(lines)


# --------------------------------------------------------------------------- cluster access


def s3_client(cluster, timeout: float = 10):
    """A client without retries: each attempt is one recorded operation."""
    cfg = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                 retries={"total_max_attempts": 1}, connect_timeout=3, read_timeout=timeout,
                 max_pool_connections=4)
    # A session of its own: creating clients from boto3's default session is not thread-safe.
    return boto3.session.Session().client(
        "s3", endpoint_url=cluster.endpoint, region_name=cluster.region,
        aws_access_key_id=cluster.access_key, aws_secret_access_key=cluster.secret_key,
        config=cfg)


def admin_get(cluster, path: str, timeout: float = 5):
    """GET /_tessera/<path> (the admin API, signed like any S3 request), decoded JSON."""
    url = f"{cluster.endpoint}/_tessera/{path}"
    request = AWSRequest(method="GET", url=url)
    S3SigV4Auth(Credentials(cluster.access_key, cluster.secret_key), "s3",
                cluster.region).add_auth(request)
    req = urllib.request.Request(url, headers=dict(request.headers.items()))
    context = ssl.create_default_context(cafile=cluster.ca_bundle) if cluster.ca_bundle else None
    with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
        return json.loads(resp.read())


class NodeRpc:
    """Signed calls to the storage nodes' own protocol (`storage-node/src/protocol.rs`), to see
    which nodes hold which version of a key. Read-only."""

    def __init__(self, cluster):
        config = tomllib.loads((cluster.data_dir / "config" / "gateway.toml").read_text())
        self.secret = config["cluster"]["secret"].encode()
        self.addrs = {n["id"]: n["addr"] for n in config["cluster"]["nodes"]}
        self.zones = {n["id"]: n["zone"] for n in config["cluster"]["nodes"]}

    # The blake3 hash of an empty body: what a call without one signs for its body.
    EMPTY_BODY = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"

    def get(self, node_id: str, path: str, timeout: float = 3):
        """A GET signed as `node_rpc::auth` signs calls: method, path, date, nonce, body hash."""
        date = str(int(time.time()))
        nonce = os.urandom(16).hex()
        signed = f"GET\n{path}\n{date}\n{nonce}\n{self.EMPTY_BODY}"
        signature = hmac.new(self.secret, signed.encode(), hashlib.sha256).hexdigest()
        req = urllib.request.Request(f"http://{self.addrs[node_id]}{path}", headers={
            "x-tessera-date": date, "x-tessera-nonce": nonce, "x-tessera-body": self.EMPTY_BODY,
            "x-tessera-signature": signature})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise
        return json.loads(body) if body else None

    def bucket_id(self, bucket: str) -> str:
        for node_id in self.addrs:
            try:
                records = self.get(node_id, "/v1/buckets")
            except OSError:
                continue
            for record in records or []:
                if record["name"] == bucket and not record.get("deleted"):
                    return record["id"]
        raise LookupError(f"no node knows bucket {bucket}")

    def records(self, bucket: str, key: str) -> dict[str, dict | None]:
        """node id -> that node's current record of the key (None: none); unreachable nodes
        are left out."""
        path = f"/v1/object/{self.bucket_id(bucket)}/{key.encode().hex()}"
        found = {}
        for node_id in self.addrs:
            try:
                lookup = self.get(node_id, path)
            except OSError:
                continue
            found[node_id] = (lookup or {}).get("record")
        return found


def process_gone(pid: int) -> bool:
    """Dead or a zombie. Unlike conftest.pid_alive, a process reaped between the two looks
    counts as gone (that race once made a kill look like a survivor)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] in "ZX"
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def kill9(cluster, node_id: str, timeout: float = 60) -> None:
    """kill -9 a node (or "gateway") by its pid file and wait until it is gone."""
    pid = cluster.node_pid(node_id)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{node_id} (pid {pid}) survived SIGKILL for {timeout}s")
        time.sleep(0.05)


def zone_of(node_id: str) -> str:
    return node_id.split("-")[0]


def cluster_whole(cluster) -> tuple[bool, str]:
    """Every node up, no hint waiting, no heal pending or running (per the admin API)."""
    try:
        status = admin_get(cluster, "status")["nodes"]
        heal = admin_get(cluster, "heal")
    except (OSError, ValueError) as err:
        return False, f"admin API: {err}"
    down = [n["id"] for n in status if not n["up"]]
    hints = {n["id"]: n["hints"] for n in status if n.get("hints")}
    needs_heal = [n["id"] for n in status if n.get("needs_heal")]
    heals = heal if isinstance(heal, list) else [heal]
    running = [h.get("node") for h in heals if isinstance(h, dict) and h.get("running")]
    if down or hints or needs_heal or running:
        return False, f"down={down} hints={hints} needs_heal={needs_heal} healing={running}"
    return True, "whole"


# --------------------------------------------------------------------------- clients


class Clients:
    """N threads doing random PUT/GET/DELETE on a few keys until told to stop."""

    def __init__(self, cluster, bucket: str, history: History, seed: int, threads: int = 8,
                 keys: int = 20):
        self.cluster, self.bucket, self.history = cluster, bucket, history
        self.keys = [f"key-{i:02d}" for i in range(keys)]
        self.seed, self.stop = seed, threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), name=f"client-{i}",
                                         daemon=True) for i in range(threads)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def run(self, index: int) -> None:
        rng = random.Random(f"{self.seed}-client-{index}")
        s3 = s3_client(self.cluster)
        name, counter = f"c{index}", 0
        while not self.stop.is_set():
            counter += 1
            key, roll = rng.choice(self.keys), rng.random()
            if roll < 0.45:
                op = self.put(s3, name, key, f"{self.seed}.{name}.{counter}", pick_size(rng))
            elif roll < 0.95:
                op = self.get(s3, name, key)
            else:
                op = self.delete(s3, name, key, f"{self.seed}.{name}.{counter}")
            if op.outcome == "fail":
                time.sleep(0.2)  # the gateway is down: do not spin
            elif op.outcome in ("maybe", "error"):
                time.sleep(0.05)

    def put(self, s3, client: str, key: str, value_id: str, size: int) -> Op:
        body = make_body(value_id, size)
        op = self.history.begin(client, "put", key, value=value_id, size=size)
        try:
            s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            op.outcome = "ok"
        except Exception as err:
            op.outcome, op.error = write_failure(err)
        if op.outcome == "ok":
            op.complete = time.monotonic()
        return op

    def delete(self, s3, client: str, key: str, delete_id: str) -> Op:
        op = self.history.begin(client, "delete", key, value=delete_id)
        try:
            s3.delete_object(Bucket=self.bucket, Key=key)
            op.outcome = "ok"
            op.complete = time.monotonic()
        except Exception as err:
            op.outcome, op.error = write_failure(err)
        return op

    def get(self, s3, client: str, key: str) -> Op:
        return read_key(s3, self.bucket, key, self.history, client)


def read_key(s3, bucket: str, key: str, history: History, client: str) -> Op:
    """One recorded GET: ok (a value or NotFound), corrupt, or error."""
    op = history.begin(client, "get", key)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            op.complete, op.outcome, op.value = time.monotonic(), "ok", NOT_FOUND
        else:
            op.complete, op.outcome, op.error = time.monotonic(), "error", short_error(err)
        return op
    except Exception as err:
        op.complete, op.outcome, op.error = time.monotonic(), "error", short_error(err)
        return op
    op.complete = time.monotonic()
    value_id = parse_body(body)
    if value_id is None:
        op.outcome = "corrupt"
        op.error = f"{len(body)} bytes, starting {body[:60]!r}"
    else:
        op.outcome, op.value, op.size = "ok", value_id, len(body)
    return op


def write_failure(err: Exception) -> tuple[str, str]:
    """("fail", why) when the request certainly never reached the gateway (connection
    refused: it is down), else ("maybe", why): no success answer, so it may take effect."""
    if isinstance(err, EndpointConnectionError):
        return "fail", short_error(err)
    return "maybe", short_error(err)


def short_error(err: Exception) -> str:
    if isinstance(err, ClientError):
        meta = err.response.get("ResponseMetadata", {})
        return f"{meta.get('HTTPStatusCode')} {err.response.get('Error', {}).get('Code')}"
    return f"{type(err).__name__}: {err}"[:120]


# --------------------------------------------------------------------------- nemesis


class Nemesis:
    """Injects faults from a seeded schedule, never more than the redundancy covers, and waits
    for the cluster to be whole again between node faults."""

    # Fault kinds and their weights. kill+gateway: nodes are killed and restarted, and the
    # gateway is killed and restarted right after, while hints are being handed back.
    KINDS = [("kill", 3), ("pause", 2), ("zone", 1), ("gateway", 1), ("kill+gateway", 3)]

    def __init__(self, cluster, history: History, seed: int, recover_timeout: float = 60):
        self.cluster, self.history = cluster, history
        self.rng = random.Random(seed)
        self.recover_timeout = recover_timeout
        self.stop = threading.Event()
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        self.thread = threading.Thread(target=self.run, name="nemesis", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.stop.set()
        self.thread.join(timeout=300)
        try:
            self.heal_all()
        except BaseException as err:
            # The first failure says what went wrong; later ones are usually its consequence.
            raise RuntimeError(f"nemesis could not heal the cluster: {err!r}; its first "
                               f"failure: {self.error!r}") from err

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.wait_whole()
                if self.stop.wait(self.rng.uniform(0.5, 2)):
                    break
                kinds, weights = zip(*self.KINDS)
                self.inject(self.rng.choices(kinds, weights)[0])
        except BaseException as err:  # reported by the caller; never leave nodes down
            self.failed(err)
        finally:
            try:
                self.heal_all()
            except BaseException as err:
                self.failed(err)

    def failed(self, err: BaseException) -> None:
        """Keeps the first failure for the caller and notes every one in the history."""
        if self.error is None:
            self.error = err
        self.history.note(f"nemesis failed: {err!r}")

    def nodes_for(self, kind: str) -> list[str]:
        """A set of nodes whose loss costs any key at most two of its six holders."""
        nodes = list(self.cluster.node_ids)
        # Issue 16 needs two holders of a key back at once, so kill+gateway always takes two.
        whole_zone = kind == "zone" or (kind == "kill+gateway" and self.rng.random() < 0.5)
        if whole_zone:
            zone = self.rng.choice(sorted({zone_of(n) for n in nodes}))
            return [n for n in nodes if zone_of(n) == zone]
        first = self.rng.choice(nodes)
        if kind != "kill+gateway" and self.rng.random() < 0.5:
            return [first]
        return [first, self.rng.choice([n for n in nodes if zone_of(n) != zone_of(first)])]

    def inject(self, kind: str) -> None:
        # kill+gateway holds longer: more hints pile up, so handing them back takes longer.
        hold = self.rng.uniform(4, 10) if kind == "kill+gateway" else self.rng.uniform(2, 5)
        if kind == "gateway":
            fault = self.history.fault("gateway kill", ["gateway"])
            self.restart_gateway()
            fault.end = time.monotonic()
            return
        nodes = self.nodes_for(kind)
        pause = kind == "pause"
        fault = self.history.fault({"kill": "kill", "pause": "pause", "zone": "zone kill",
                                    "kill+gateway": "kill+gateway"}[kind], nodes)
        for node in nodes:
            if pause:
                os.kill(self.cluster.node_pid(node), signal.SIGSTOP)
                self.paused.add(node)
            else:
                self.killed.add(node)
                kill9(self.cluster, node)
        self.stop.wait(hold)
        if kind == "kill+gateway":
            # The gateway dies just before the nodes return and comes back right after them:
            # its first reads meet holders still being handed their hints back (issue 16).
            self.killed.add("gateway")
            kill9(self.cluster, "gateway")
        self.heal_all()
        fault.end = time.monotonic()

    def restart_gateway(self) -> None:
        self.killed.add("gateway")
        kill9(self.cluster, "gateway")
        self.cluster.start_node("gateway")
        self.killed.discard("gateway")

    def heal_all(self) -> None:
        """SIGCONT what is paused, restart what is killed (the gateway last)."""
        for node in sorted(self.paused):
            try:
                os.kill(self.cluster.node_pid(node), signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.paused.discard(node)
        for node in sorted(self.killed, key=lambda n: n == "gateway"):
            if process_gone(self.cluster.node_pid(node)):
                self.cluster.start_node(node)
            self.killed.discard(node)

    def wait_whole(self) -> None:
        """Until every node is up with no hint or heal left (or the timeout, noted)."""
        started = waiting = time.monotonic()
        whole, why = cluster_whole(self.cluster)
        first_why = why
        while not whole and not self.stop.is_set():
            if time.monotonic() - waiting > self.recover_timeout:
                self.history.note(f"not whole after {self.recover_timeout:.0f}s: {why}; "
                                  f"waiting on")
                waiting = time.monotonic()
            self.stop.wait(0.5)
            whole, why = cluster_whole(self.cluster)
        if whole and time.monotonic() - started > 1:
            self.history.note(f"whole again after {time.monotonic() - started:.1f}s "
                              f"(at first: {first_why})")


# --------------------------------------------------------------------------- a whole run


@dataclass
class RunResult:
    seed: int
    history: History
    violations: list[Violation]
    summary: str
    nemesis_error: BaseException | None


def pick_seed() -> int:
    return int(os.environ.get("TESSERA_SEED") or random.SystemRandom().randrange(1, 10**9))


def run_checker(cluster, seconds: float, seed: int, threads: int = 8, keys: int = 20,
                settle: float = 5) -> RunResult:
    """Clients and nemesis for `seconds`, then: heal, wait until whole, read every key twice
    (these final reads catch lost writes), and check the history."""
    print(f"consistency checker: seed {seed}, {seconds:.0f}s, {threads} clients, {keys} keys",
          flush=True)
    history = History()
    t0 = time.monotonic()
    bucket = f"check-{seed}-{random.SystemRandom().randrange(10**6)}"
    s3_client(cluster, timeout=30).create_bucket(Bucket=bucket)
    clients = Clients(cluster, bucket, history, seed, threads, keys)
    nemesis = Nemesis(cluster, history, seed)
    clients.start()
    nemesis.start()
    time.sleep(max(0.0, seconds))
    nemesis.join()
    clients.join()
    history.note("run over: faults healed, clients stopped")
    deadline = time.monotonic() + 30
    while not cluster_whole(cluster)[0] and time.monotonic() < deadline:
        time.sleep(0.5)
    history.note(f"final reads ({cluster_whole(cluster)[1]})")
    time.sleep(settle)
    final = s3_client(cluster, timeout=30)
    for _ in range(2):
        for key in clients.keys:
            read_key(final, bucket, key, history, "final")
    violations = check(history)
    summary = summarize(history, violations, seed, t0)
    return RunResult(seed, history, violations, summary, nemesis.error)


def main() -> int:
    """Standalone run on a fresh 3x3 cluster (scripts/soak.sh uses this)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secs", type=float, default=1800)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the cluster's data dir")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else pick_seed()

    from conftest import Cluster, dev_node_ids, free_port  # the same cluster code as the tests

    base = Path(tempfile.mkdtemp(prefix="tessera-soak-"))
    cluster = Cluster(name="soak", data_dir=base / "data", log_path=base / "tessera-dev.log",
                      port=free_port(), node_ids=dev_node_ids(3, 3),
                      dev_args=("--zones", "3", "--nodes-per-zone", "3"))
    print(f"cluster data and logs: {base}", flush=True)
    cluster.start()
    try:
        result = run_checker(cluster, args.secs, seed, args.threads, args.keys)
    finally:
        cluster.stop()
    print(result.summary, flush=True)
    if result.nemesis_error:
        print(f"nemesis failed: {result.nemesis_error!r}")
    if not args.keep and not result.violations:
        import shutil
        shutil.rmtree(base, ignore_errors=True)
    return 1 if result.violations or result.nemesis_error else 0


if __name__ == "__main__":
    sys.exit(main())
