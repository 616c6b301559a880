"""Hostile input against real processes: each finding of the hardening issue, and a soak of idle
and slow connections held against the gateway and a node while a client keeps working.

Connection limits are tested on a cluster of their own whose gateway and one node are restarted
with short timeouts (and, for the flood, a descriptor limit of 256), so that the tests take
seconds rather than the default minute.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time
import tomllib
import urllib.parse
from pathlib import Path

import pytest

from conftest import (TESSERA_BIN, config_secrets, leaked_secrets, pid_alive, start_cluster,
                      wait_for_tcp, wait_port_free)
from consistency import admin_get
from helpers import raw_request, unique_bucket

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


# --------------------------------------------------------------------------- a SigV4 signer that
# signs exactly the headers it is told to, which botocore cannot be made to do.


def signed_request(cluster, method: str, path: str, signed: dict, unsigned: dict | None = None,
                   body: bytes = b"", query: str = "", sign_host: bool = True):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    host = urllib.parse.urlparse(cluster.endpoint).netloc
    headers = {"x-amz-date": amz_date, "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
               **{k.lower(): v for k, v in signed.items()}}
    to_sign = dict(headers)
    if sign_host:
        to_sign["host"] = host
    names = sorted(to_sign)
    canonical_query = "&".join(sorted(q for q in query.split("&") if q))
    canonical = "\n".join([method, path, canonical_query,
                           "".join(f"{n}:{to_sign[n].strip()}\n" for n in names),
                           ";".join(names), headers["x-amz-content-sha256"]])
    scope = f"{amz_date[:8]}/{cluster.region}/s3/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + cluster.secret_key).encode()
    for part in (amz_date[:8], cluster.region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={cluster.access_key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    headers.update(unsigned or {})
    url = cluster.endpoint + path + (f"?{query}" if query else "")
    return raw_request(url, method=method, data=body if method in ("PUT", "POST") else None,
                       headers=headers, ca_bundle=cluster.ca_bundle)


def gateway_alive(cluster) -> bool:
    pid = int((cluster.data_dir / "gateway" / "pid").read_text())
    return pid_alive(pid)


@pytest.fixture
def plain_bucket(s3_http):
    name = unique_bucket("hard")
    s3_http.create_bucket(Bucket=name)
    return name


# --------------------------------------------------------------------------- one request


def test_the_signer_here_is_accepted(cluster_http, plain_bucket):
    put = signed_request(cluster_http, "PUT", f"/{plain_bucket}/ok", {"x-amz-meta-a": "1"},
                         body=b"data")
    assert put.status == 200, put.body


@pytest.mark.parametrize("root,element", [("LifecycleConfiguration", "Rule"),
                                          ("Delete", "Object")])
def test_deeply_nested_bodies_are_malformed_xml_and_the_gateway_lives(cluster_http, plain_bucket,
                                                                       root, element):
    depth = 35_000
    body = f"<{root}>{f'<{element}>' * depth}{f'</{element}>' * depth}</{root}>".encode()
    query = "lifecycle=" if root.startswith("Lifecycle") else "delete="
    resp = signed_request(cluster_http, "PUT" if query == "lifecycle=" else "POST",
                          f"/{plain_bucket}", {"content-md5": _md5(body)}, body=body, query=query)
    assert (resp.status, resp.error_code) == (400, "MalformedXML"), resp.body[:300]
    assert gateway_alive(cluster_http)
    assert signed_request(cluster_http, "GET", f"/{plain_bucket}", {}).status == 200


def _md5(body: bytes) -> str:
    import base64
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def test_presigned_get_with_a_newline_in_an_override_is_refused(cluster_http, s3_http,
                                                                plain_bucket):
    s3_http.put_object(Bucket=plain_bucket, Key="k", Body=b"x")
    url = s3_http.generate_presigned_url(
        "get_object", Params={"Bucket": plain_bucket, "Key": "k",
                              "ResponseContentType": "a\nb"})
    resp = raw_request(url, timeout=10)
    assert resp.status == 400, resp.body
    assert gateway_alive(cluster_http)


def test_x_amz_headers_added_after_signing_are_refused(cluster_http, plain_bucket):
    for extra in ({"x-amz-meta-added": "later"}, {"x-amz-tagging": "a=b"}):
        resp = signed_request(cluster_http, "PUT", f"/{plain_bucket}/unsigned", {}, extra,
                              body=b"data")
        assert (resp.status, resp.error_code) == (403, "AccessDenied"), (extra, resp.body)
    assert signed_request(cluster_http, "HEAD", f"/{plain_bucket}/unsigned", {}).status == 404


def test_a_request_that_does_not_sign_host_is_refused(cluster_http, plain_bucket):
    resp = signed_request(cluster_http, "GET", f"/{plain_bucket}", {}, sign_host=False)
    assert (resp.status, resp.error_code) == (403, "AccessDenied"), resp.body


def test_user_metadata_over_2_kb_is_metadata_too_large(cluster_http, s3_http, plain_bucket):
    s3_http.put_object(Bucket=plain_bucket, Key="fits", Body=b"x", Metadata={"m": "v" * 2000})
    for metadata in ({"x-amz-meta-m": "v" * 2100},
                     {f"x-amz-meta-m{i}": "v" * 1000 for i in range(3)}):
        resp = signed_request(cluster_http, "PUT", f"/{plain_bucket}/big", metadata, body=b"x")
        assert (resp.status, resp.error_code) == (400, "MetadataTooLarge"), resp.body
    resp = signed_request(cluster_http, "PUT", f"/{plain_bucket}/big",
                          {"x-amz-meta-m": "v" * 2100}, body=b"x")
    assert (resp.status, resp.error_code) == (400, "MetadataTooLarge"), resp.body
    assert signed_request(cluster_http, "HEAD", f"/{plain_bucket}/big", {}).status == 404


@pytest.mark.parametrize("size", [8 * 1024, 100 * 1024])
def test_request_headers_over_8_kib_are_refused(cluster_http, plain_bucket, size):
    resp = signed_request(cluster_http, "GET", f"/{plain_bucket}", {"x-filler": "f" * size})
    assert (resp.status, resp.error_code) == (400, "RequestHeaderSectionTooLarge"), resp.body


@pytest.mark.parametrize("name", ["xn--bcher-kva", "sthree-tessera", "abc-s3alias", "_tessera"])
def test_reserved_bucket_names_are_invalid(cluster_http, name):
    resp = signed_request(cluster_http, "PUT", f"/{name}", {})
    assert (resp.status, resp.error_code) == (400, "InvalidBucketName"), resp.body


def test_presigned_urls_valid_over_a_week_are_a_query_parameters_error(s3_http, plain_bucket):
    url = s3_http.generate_presigned_url("get_object", Params={"Bucket": plain_bucket,
                                                               "Key": "k"}, ExpiresIn=604801)
    resp = raw_request(url, timeout=10)
    assert (resp.status, resp.error_code) == (403, "AuthorizationQueryParametersError") or \
        (resp.status, resp.error_code) == (400, "AuthorizationQueryParametersError"), resp.body


def test_config_files_with_secrets_are_private(cluster_http):
    configs = list((cluster_http.data_dir / "config").glob("*.toml"))
    assert configs
    for path in configs:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"


def test_no_secret_in_any_log(cluster_http, s3_http, plain_bucket):
    # Some traffic first, failures included, so that error paths log too.
    s3_http.put_object(Bucket=plain_bucket, Key="logged", Body=b"x")
    signed_request(cluster_http, "PUT", f"/{plain_bucket}/bad", {}, {"x-amz-meta-x": "y"})
    assert len(list((cluster_http.data_dir / "logs").glob("*.log"))) >= 7
    assert len(config_secrets(cluster_http)) >= 3
    # The same search runs over every cluster's logs when the session ends.
    assert leaked_secrets(cluster_http) == []


# --------------------------------------------------------------------------- connections


SHORT_LIMITS = {"header_timeout_secs": 2, "idle_timeout_secs": 3, "stall_timeout_secs": 3,
                "max_connections_per_address": 64}


def with_short_limits(text: str) -> str:
    """The config with its `connections` limits (written out in full by `tessera dev`) shortened."""
    for name, value in SHORT_LIMITS.items():
        text, n = re.subn(rf"(?m)^{name} = \d+$", f"{name} = {value}", text)
        assert n == 1, name
    return text


def listen_port(config: Path, process_id: str) -> int:
    parsed = tomllib.loads(config.read_text())
    if process_id == "gateway":
        addr = parsed["gateway"]["listen"]
    else:
        addr = next(n["addr"] for n in parsed["cluster"]["nodes"] if n["id"] == process_id)
    return int(addr.rsplit(":", 1)[1])


class Restarted:
    """A gateway or node of a cluster, restarted with short connection limits and, optionally, a
    lowered descriptor limit (soft and hard, so that the process cannot raise it back)."""

    def __init__(self, cluster, process_id: str, nofile: int | None = None):
        config = cluster.config_path(process_id)
        config.write_text(with_short_limits(config.read_text()))
        cluster.kill_node(process_id)
        self.port = listen_port(config, process_id)
        assert wait_port_free(self.port, 60), f"{process_id}'s port {self.port} stayed taken"

        def limit():
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        log = open(cluster.data_dir / f"{process_id}-hardening.log", "ab")
        self.proc = subprocess.Popen([str(TESSERA_BIN), "server", "--config", str(config)],
                                     stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=limit,
                                     start_new_session=True)
        cluster.restarted[process_id] = self.proc
        (cluster.data_dir / process_id / "pid").write_text(f"{self.proc.pid}\n")
        assert wait_for_tcp("127.0.0.1", self.port, 30)

    def alive(self) -> bool:
        return self.proc.poll() is None


def connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_by_peer(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "limited", tls=False)
    try:
        gateway = Restarted(cluster, "gateway", nofile=256)
        node = Restarted(cluster, "z1-n1")
        # The other nodes too, for the slow upload (whose write quorum is five of six).
        others = [Restarted(cluster, n) for n in cluster.node_ids if n != "z1-n1"]
    except BaseException:
        cluster.stop()  # no teardown follows a failed setup
        raise
    time.sleep(2)  # the gateway's probe sees the restarted nodes
    yield cluster, gateway, node
    assert all(n.alive() for n in others)
    cluster.stop()


def test_idle_and_slow_connections_are_closed(limited):
    cluster, gateway, node = limited
    for port in (gateway.port, node.port):
        idle = connect_from("127.0.0.2", port)
        started = time.monotonic()
        assert closed_by_peer(idle, 10), f"idle connection to {port} never closed"
        assert 2.5 < time.monotonic() - started < 8
        slow = connect_from("127.0.0.2", port)
        started = time.monotonic()
        closed = False
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\n":
            try:
                slow.send(bytes([byte]))
            except OSError:
                closed = True
                break
            if closed_by_peer(slow, 0.5):
                closed = True
                break
        assert closed, f"a head sent a byte every half second to {port} was never cut"
        assert time.monotonic() - started < 6


def test_a_connection_flood_beyond_the_descriptor_limit_leaves_the_processes_serving(limited):
    cluster, gateway, node = limited
    s3 = cluster.client()
    bucket = unique_bucket("flood")
    s3.create_bucket(Bucket=bucket)
    flood = []
    try:
        # 1,200 connections to each: the gateway has 256 descriptors. One address, so that the
        # cap per address (64 here) leaves room for the client's own connections.
        for _ in range(1200):
            for port in (gateway.port, node.port):
                try:
                    flood.append(connect_from("127.0.0.2", port))
                except OSError:
                    pass
        for i in range(10):
            body = os.urandom(100_000 + i)
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=body)
            assert s3.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() == body
        assert gateway.alive() and node.alive()
    finally:
        for s in flood:
            s.close()
    time.sleep(1)
    s3.put_object(Bucket=bucket, Key="after", Body=b"after")
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"after"
    assert gateway.alive() and node.alive()


def test_an_upload_slower_than_the_header_timeout_is_stored(limited):
    """A single PUT whose body takes longer to arrive than the nodes' header timeout (2 s here,
    20 s by default): the fragment streams the nodes take over after answering 101 are not slow
    heads. They were cut as such, and every upload taking over 20 s failed with 503."""
    cluster, gateway, node = limited
    s3 = cluster.client()
    bucket = unique_bucket("slow")
    s3.create_bucket(Bucket=bucket)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "big"})
    parsed = urllib.parse.urlsplit(url)
    body = os.urandom(24 << 20)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    connection.putrequest("PUT", f"{parsed.path}?{parsed.query}", skip_accept_encoding=True)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    started = time.monotonic()
    for at in range(0, len(body), 1 << 20):  # 1 MiB every 0.2 s: about 5 s in all
        connection.send(body[at:at + (1 << 20)])
        time.sleep(0.2)
    answer = connection.getresponse()
    took = time.monotonic() - started
    assert answer.status == 200, answer.read()[:300]
    assert took > 4, took
    got = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
    assert hashlib.md5(got).digest() == hashlib.md5(body).digest()
    assert gateway.alive() and node.alive()


def test_soak_idle_and_slow_connections_while_a_client_works(cluster_http, s3_http):
    """2,000 idle and 200 slow connections against the gateway and as many against a node
    (default limits), held (reconnected when closed) while a client's PUTs and GETs go on. They
    come from other loopback addresses than the client's, two for the idle ones, so that the cap
    per address (1,024) does not refuse them."""
    seconds = float(os.environ.get("TESSERA_CONN_SOAK_SECS", "20"))
    gateway_port = cluster_http.port
    node_port = listen_port(cluster_http.config_path("z2-n1"), "z2-n1")
    bucket = unique_bucket("soak")
    s3_http.create_bucket(Bucket=bucket)
    node_pid = cluster_http.node_pid("z2-n1")
    stop = threading.Event()
    # The most connections each holder held at once, by (port, kind).
    held: dict[tuple[int, str], int] = {}

    def hold(port: int, sources: list[str], count: int, kind: str) -> None:
        conns: list[socket.socket] = []
        while not stop.is_set():
            conns = [c for c in conns if c.fileno() != -1]
            while len(conns) < count and not stop.is_set():
                try:
                    c = connect_from(sources[len(conns) % len(sources)], port)
                    c.setblocking(False)
                    conns.append(c)
                except OSError:
                    time.sleep(0.05)
                    break
            held[port, kind] = max(held.get((port, kind), 0), len(conns))
            for c in conns:
                try:
                    if kind == "slow":
                        c.send(b"G")
                    elif c.recv(1) == b"":
                        c.close()
                except BlockingIOError:
                    pass
                except OSError:
                    c.close()
            time.sleep(1)
        for c in conns:
            c.close()

    threads = [
        threading.Thread(target=hold, args=(gateway_port, ["127.0.0.2", "127.0.0.3"], 2000, "idle")),
        threading.Thread(target=hold, args=(gateway_port, ["127.0.0.4"], 200, "slow")),
        threading.Thread(target=hold, args=(node_port, ["127.0.0.5", "127.0.0.6"], 2000, "idle")),
        threading.Thread(target=hold, args=(node_port, ["127.0.0.7"], 200, "slow")),
    ]
    for t in threads:
        t.start()
    ops = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            body = os.urandom(4096 + ops % 300_000)
            s3_http.put_object(Bucket=bucket, Key=f"k{ops % 50}", Body=body)
            assert s3_http.get_object(Bucket=bucket, Key=f"k{ops % 50}")["Body"].read() == body
            ops += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    print(f"connection soak: {ops} PUT+GET pairs in {seconds:.0f}s; held at most "
          + ", ".join(f"{n} {kind} to {port}" for (port, kind), n in sorted(held.items())))
    assert ops > 0
    for port in (gateway_port, node_port):
        assert held.get((port, "idle"), 0) >= 1900 and held.get((port, "slow"), 0) >= 190, held
    assert gateway_alive(cluster_http)
    assert pid_alive(node_pid), "the node held the connections and died"
    # And it still serves: its health answers through the gateway's view of the cluster.
    status = admin_get(cluster_http, "status")
    node = next(n for n in status["nodes"] if n["id"] == "z2-n1")
    assert node["up"], node
