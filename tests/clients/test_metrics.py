"""Prometheus metrics: `/metrics` on the gateway's console port and on every node, behind the
metrics token, scraped by a real Prometheus (Debian's package) with the config `tessera dev`
writes, and queried over Prometheus's HTTP API as a dashboard would."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import free_port, start_cluster, stop_process, tail, wait_for_tcp
from consistency import admin_get
from helpers import dashboard_metrics, unique_bucket
from test_access import admin_cli

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "metrics", tls=False)
    yield cluster
    cluster.stop()


def scrape(url: str, token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def sample(text: str, series: str) -> float:
    """The value of one series (`name{labels}` exactly as exposed) in exposition text."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {series} in:\n{text[:3000]}")


def served_families(texts) -> set[str]:
    """The metric names that expositions declare (`# TYPE`), with a histogram's series."""
    names = set()
    for text in texts:
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                names.add(name)
                if kind == "histogram":
                    names.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


def node_addrs(cluster) -> list[str]:
    config = tomllib.loads((cluster.data_dir / "config" / "gateway.toml").read_text())
    return [n["addr"] for n in config["cluster"]["nodes"]]


def workload(cluster, bucket: str, objects: int) -> None:
    """`objects` PUTs and GETs of 200 KiB (erasure-coded, so fragments are written and read),
    and one GET of a missing key."""
    s3 = cluster.client()
    body = bytes(range(256)) * 800
    for i in range(objects):
        s3.put_object(Bucket=bucket, Key=f"o{i}", Body=body)
    for i in range(objects):
        assert s3.get_object(Bucket=bucket, Key=f"o{i}")["Body"].read() == body
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="missing")


def test_metrics_need_the_token_and_count_requests(cluster):
    token = admin_get(cluster, "metrics-token")["token"]
    console = f"http://127.0.0.1:{cluster.console_port}/metrics"
    assert scrape(console, None)[0] == 401
    assert scrape(console, "0" * len(token))[0] == 401
    assert scrape(console, token[:-1])[0] == 401
    for addr in node_addrs(cluster):
        assert scrape(f"http://{addr}/metrics", None)[0] == 401
        assert scrape(f"http://{addr}/metrics", token[::-1])[0] == 401

    status, before = scrape(console, token)
    assert status == 200
    puts = 'tessera_s3_requests_total{operation="PutObject",status="200"}'
    count = lambda text, series: sample(text, series) if series + " " in text else 0.0
    bucket = unique_bucket("metrics")
    cluster.client().create_bucket(Bucket=bucket)
    workload(cluster, bucket, 5)
    _, after = scrape(console, token)
    assert count(after, puts) - count(before, puts) == 5
    missing = 'tessera_s3_requests_total{operation="GetObject",status="404"}'
    assert count(after, missing) - count(before, missing) == 1
    latency = 'tessera_s3_request_duration_seconds_count{operation="PutObject"}'
    assert count(after, latency) - count(before, latency) == 5
    received = "tessera_s3_received_bytes_total"
    assert count(after, received) - count(before, received) >= 5 * 204_800
    sent = "tessera_s3_sent_bytes_total"
    assert count(after, sent) - count(before, sent) >= 5 * 204_800
    for node in cluster.node_ids:
        assert sample(after, f'tessera_node_up{{node="{node}",zone="{node[:2]}"}}') == 1

    written = 0.0
    for addr in node_addrs(cluster):
        status, text = scrape(f"http://{addr}/metrics", token)
        assert status == 200
        node = next(line.split('node="')[1].split('"')[0] for line in text.splitlines()
                    if line.startswith("tessera_fragments_written_total"))
        written += sample(text, f'tessera_fragment_written_bytes_total{{node="{node}"}}')
        assert sample(text, f'tessera_disk_size_bytes{{node="{node}"}}') > 0
        assert f'tessera_scrub_running{{node="{node}"}}' in text
    # Six fragments of a quarter of each object, at least, were written for the five PUTs.
    assert written >= 5 * 6 * 204_800 / 4


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed "
                    "(scripts/install-deps.sh installs Debian's package)")
def test_prometheus_scrapes_the_cluster(cluster, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={cluster.data_dir / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list:
        url = f"{api}/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            answer = json.loads(resp.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def wait_for(expr: str, check, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while True:
            result = query(expr)
            if result and check(float(result[0]["value"][1])):
                return float(result[0]["value"][1])
            if time.monotonic() > deadline:
                pytest.fail(f"{expr} = {result} after {timeout}s\n"
                            f"{tail(tmp_path / 'prometheus.log')}")
            time.sleep(1)

    try:
        assert wait_for_tcp("127.0.0.1", port, 30), tail(tmp_path / "prometheus.log")
        # Every target of the written config is up: the gateway and the six nodes.
        wait_for('count(up{job="tessera-node"} == 1)', lambda v: v == 6)
        wait_for('count(up{job="tessera-gateway"} == 1)', lambda v: v == 1)
        bucket = unique_bucket("prom")
        cluster.client().create_bucket(Bucket=bucket)
        base = query('sum(tessera_s3_requests_total{operation="PutObject",status="200"})')
        base = float(base[0]["value"][1]) if base else 0.0
        workload(cluster, bucket, 8)
        puts = wait_for('sum(tessera_s3_requests_total{operation="PutObject",status="200"})',
                        lambda v: v >= base + 8)
        assert puts == base + 8
        # The latency histogram: its buckets add up, and a quantile computed from them by
        # Prometheus lies within the buckets' bounds.
        wait_for('sum(tessera_s3_request_duration_seconds_count{operation="PutObject"})',
                 lambda v: v == puts)
        p99 = wait_for('histogram_quantile(0.99, sum by (le) '
                       '(tessera_s3_request_duration_seconds_bucket{operation="PutObject"}))',
                       lambda v: v == v)  # not NaN
        assert 0 < p99 <= 60
        wait_for('sum(tessera_s3_request_duration_seconds_bucket'
                 '{operation="PutObject",le="+Inf"})', lambda v: v == puts)
        # Node-side series reach Prometheus too.
        wait_for('sum(tessera_fragments_written_total)', lambda v: v >= 8 * 6)
        wait_for('count(tessera_disk_free_bytes)', lambda v: v == 6)
        # Every family the Grafana dashboard queries is served (those of regions:
        # test_regions.py), once each node has finished a scrub pass.
        for node in cluster.node_ids:
            assert admin_cli(cluster, "scrub", "start", node)
        token = admin_get(cluster, "metrics-token")["token"]
        urls = [f"http://127.0.0.1:{cluster.console_port}/metrics"]
        urls += [f"http://{addr}/metrics" for addr in node_addrs(cluster)]
        wanted = {m for m in dashboard_metrics() if not m.startswith("tessera_replication_")}
        deadline = time.monotonic() + 60
        while True:
            missing = wanted - served_families(scrape(url, token)[1] for url in urls)
            if not missing:
                break
            assert time.monotonic() < deadline, f"the dashboard queries unknown series: {missing}"
            time.sleep(1)
    finally:
        stop_process(proc)
