"""OpenTelemetry traces: a cluster started with `OTEL_EXPORTER_OTLP_ENDPOINT` sends its spans to
an OTLP/HTTP receiver (this test's, JSON encoding); one PUT is one trace across the gateway and
the nodes; JSON logs carry the trace id."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import Cluster, dev_node_ids, free_port
from helpers import unique_bucket


class Receiver:
    """Collects the spans POSTed to /v1/traces (OTLP/HTTP, JSON)."""

    def __init__(self):
        self.spans: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                ok = self.path == "/v1/traces" and \
                    self.headers.get("Content-Type", "").startswith("application/json")
                if ok:
                    receiver.take(json.loads(body))
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, export: dict) -> None:
        for resource in export.get("resourceSpans", []):
            attrs = {a["key"]: a["value"].get("stringValue")
                     for a in resource.get("resource", {}).get("attributes", [])}
            for scope in resource.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    span["service"] = attrs.get("service.name")
                    span["attrs"] = {a["key"]: next(iter(a["value"].values()), None)
                                     for a in span.get("attributes", [])}
                    with self.lock:
                        self.spans.append(span)

    def wait_for(self, check, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = check(list(self.spans))
            if found:
                return found
            time.sleep(0.5)
        with self.lock:
            names = sorted({(s["service"], s["name"]) for s in self.spans})
        pytest.fail(f"no such spans after {timeout}s; seen: {names}")


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    receiver = Receiver()
    base = tmp_path_factory.mktemp("traces")
    cluster = Cluster(name="traces", data_dir=base / "data", log_path=base / "tessera-dev.log",
                      port=free_port(), node_ids=dev_node_ids(3, 2),
                      dev_args=("--log-format", "json"),
                      extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
                                 "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    cluster.start()
    yield cluster, receiver
    cluster.stop()
    receiver.server.shutdown()


def test_one_put_is_one_trace_across_gateway_and_nodes(traced):
    cluster, receiver = traced
    s3 = cluster.client()
    bucket = unique_bucket("traced")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="traced-object", Body=b"t" * 300_000)

    def the_put(spans):
        return next((s for s in spans if s["service"] == "tessera-gateway"
                     and s["name"] == "PutObject"
                     and s["attrs"].get("url.path") == f"/{bucket}/traced-object"), None)

    put = receiver.wait_for(the_put)
    assert put["kind"] in (2, "SPAN_KIND_SERVER"), put
    assert put["attrs"].get("http.response.status_code") in (200, "200")
    trace_id = put["traceId"]

    def whole_trace(spans):
        mine = [s for s in spans if s["traceId"] == trace_id]
        calls = [s for s in mine if s["service"] == "tessera-gateway" and s is not put
                 and s.get("parentSpanId") == put["spanId"]]
        served = [s for s in mine if s["service"] == "tessera-node"]
        # Six fragment writes and at least the write quorum's commits, each served by a node.
        if len(served) >= 11 and len(calls) >= 11:
            return calls, served
        return None

    calls, served = receiver.wait_for(whole_trace)
    call_ids = {c["spanId"] for c in calls}
    assert all(s.get("parentSpanId") in call_ids for s in served), \
        "every node span is the child of a gateway's node call span"
    nodes = {s["attrs"].get("node") for s in served}
    assert len(nodes) == 6, nodes
    assert {s["name"] for s in served} >= {"PUT fragment_write", "POST commit"}


def test_json_logs_carry_the_trace_id(traced):
    cluster, receiver = traced
    s3 = cluster.client()
    bucket = unique_bucket("logged")
    s3.create_bucket(Bucket=bucket)
    # Two nodes down: a PUT cannot reach its write quorum of five, and the gateway logs why.
    down = list(cluster.node_ids[:2])
    for node in down:
        cluster.kill_node(node)
    try:
        with pytest.raises(ClientError):
            s3.put_object(Bucket=bucket, Key="failing", Body=b"f" * 300_000)
    finally:
        for node in down:
            cluster.start_node(node)
    log = Path(cluster.data_dir) / "logs" / "gateway.log"
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in log.read_text().splitlines()
                 if line.startswith("{") and "request failed" in line and bucket in line]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert lines, log.read_text()[-2000:]
    spans = lines[-1]["spans"]
    trace_id = next(s["trace_id"] for s in spans if s.get("name") == "s3 request")
    assert len(trace_id) == 32
    failed = receiver.wait_for(lambda spans: next(
        (s for s in spans if s["traceId"] == trace_id and s["service"] == "tessera-gateway"
         and s["name"] == "PutObject"), None))
    assert failed["attrs"].get("http.response.status_code") in (503, "503")
