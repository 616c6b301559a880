"""Fixtures that run real `tessera dev` clusters and real S3 clients against them.

Environment knobs:
  TESSERA_BIN             tessera binary (default <repo>/target/release/tessera)
  TESSERA_AWS_V2          Debian's aws CLI v2 (default /usr/bin/aws)
  TESSERA_AWS_V1          pip's aws CLI v1 (default: `aws` next to sys.executable)
  TESSERA_THROUGHPUT_LOG  file the large test appends THROUGHPUT lines to
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from helpers import unique_bucket

REPO = Path(__file__).resolve().parents[2]
TESSERA_BIN = Path(os.environ.get("TESSERA_BIN", REPO / "target" / "release" / "tessera"))
REGION = "us-east-1"
NODE_IDS = ["z1-n1", "z1-n2", "z2-n1", "z2-n2", "z3-n1", "z3-n2"]
STARTUP_TIMEOUT = 120
STOP_GRACE = 10
# `S3 endpoint: URL`, or with several regions `S3 endpoint (REGION): URL`, one per region.
ENDPOINT_RE = re.compile(r"S3 endpoint(?: \(([^)]+)\))?: (https?://[^\s]+)")

# Fixed random credentials for the whole session.
ACCESS_KEY = "TSR" + secrets.token_hex(8).upper()
SECRET_KEY = secrets.token_urlsafe(30)

AWS_CLIS = {
    "v1": Path(os.environ.get("TESSERA_AWS_V1", Path(sys.executable).parent / "aws")),
    "v2": Path(os.environ.get("TESSERA_AWS_V2", "/usr/bin/aws")),
}

_RUNNING_CLUSTERS: list["Cluster"] = []
# Every cluster the session started, and every secret a test used (keys made through the admin
# API, SSE-C keys): at the end of the session no process's log may hold any of them.
_STARTED_CLUSTERS: list["Cluster"] = []
_USED_SECRETS: set[str] = set()


def note_secret(secret: str) -> None:
    """Adds a secret a test uses to those the logs are searched for at the end of the session."""
    _USED_SECRETS.add(secret)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A free port below the kernel's ephemeral range, as `tessera dev` picks its nodes' ports. A
    port from that range can be taken as the local end of an outgoing connection while the
    process that listened on it is down, and a restarted gateway then fails with "Address already
    in use" (seen in the consistency tests)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    rng = secrets.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(20000, max(ephemeral_low, 21000))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_for_tcp(host: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def wait_port_free(port: int, timeout: float) -> bool:
    """Waits until a listener could bind 127.0.0.1:`port` (with SO_REUSEADDR, as tokio does)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.05)


def port_holders(port: int) -> str:
    """Who holds 127.0.0.1:`port`, for a failure message: each socket's state and the processes
    (pid, state, command) that have it open, read from /proc."""
    states = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port:
                sockets[inode] = (f"{states.get(state, state)} to port "
                                  f"{int(remote.rsplit(':', 1)[1], 16)}")
    if not sockets:
        return "no socket on it in /proc/net/tcp"
    found, held = [], set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            links = set()
            for fd in fd_dir.iterdir():
                try:
                    links.add(os.readlink(fd))
                except OSError:  # closed meanwhile
                    pass
            stat = (fd_dir.parent / "stat").read_text()
            cmd = (fd_dir.parent / "cmdline").read_bytes().replace(b"\0", b" ")[:120]
        except OSError:
            continue
        for inode, what in sockets.items():
            if f"socket:[{inode}]" in links:
                held.add(inode)
                found.append(f"{what}: pid {fd_dir.parent.name} state "
                             f"{stat.rsplit(') ', 1)[1][0]} {cmd.decode(errors='replace')}")
    return "; ".join(found + [f"{what}: no process" for inode, what in sockets.items()
                              if inode not in held])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as dead. So is a process that `kill` still finds
    # but that has no /proc entry any more: it is at the end of its exit (one stayed so for 60 s
    # under a loaded suite run, 2026-12-05, after its listening socket was gone).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        return True


def process_state(pid: int) -> str:
    """A process's state and what its threads wait in (D: uninterruptible, as in disk I/O), for a
    failure message."""
    try:
        threads = []
        for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
            state = (task / "stat").read_text().split(") ")[1][0]
            wchan = (task / "wchan").read_text() or "-"
            threads.append(f"{task.name}:{state}:{wchan}")
        return "threads " + " ".join(threads)
    except OSError as err:
        return f"no state ({err})"


def is_tessera_pid(pid: int) -> bool:
    try:
        return b"tessera" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_process(proc: subprocess.Popen, grace: float = STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL the process group after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def tail(path: Path, lines: int = 200) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"<cannot read {path}: {err}>"


def make_tls_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA plus a server cert for 127.0.0.1/localhost signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.pem"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    openssl = ["openssl"]
    commands = [
        [*openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3",
         "-keyout", ca_key, "-out", ca_crt, "-subj", "/CN=Tessera test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [*openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        [*openssl, "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "3", "-extfile", ext, "-out", crt],
    ]
    for cmd in commands:
        res = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"openssl failed: {' '.join(map(str, cmd))}\n{res.stderr}")
    return ca_crt, crt, key


# --------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    name: str
    data_dir: Path
    log_path: Path
    port: int
    tls: tuple[Path, Path] | None = None  # (cert, key)
    ca_bundle: str | None = None
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    endpoint: str = ""
    proc: subprocess.Popen | None = None
    restarted: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Extra `tessera dev` flags (e.g. a 3x3 topology) and the node ids they give.
    dev_args: tuple[str, ...] = ()
    node_ids: tuple[str, ...] = tuple(NODE_IDS)
    # The operator's port (`/metrics`).
    console_port: int = field(default_factory=free_port)
    # More environment for `tessera dev` and every process it starts (e.g. the OTLP endpoint).
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def env(self) -> dict:
        env = dict(os.environ)
        env["TESSERA_ACCESS_KEY_ID"] = self.access_key
        env["TESSERA_SECRET_ACCESS_KEY"] = self.secret_key
        env.update(self.extra_env)
        return env

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if not TESSERA_BIN.is_file():
            pytest.fail(f"tessera binary not found at {TESSERA_BIN} (set TESSERA_BIN)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(TESSERA_BIN), "dev", "--data-dir", str(self.data_dir),
               "--s3-port", str(self.port), "--console-port", str(self.console_port),
               *self.dev_args]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env(),
                                         start_new_session=True)
        _RUNNING_CLUSTERS.append(self)
        _STARTED_CLUSTERS.append(self)
        try:
            self.endpoint = self._wait_for_endpoint()
            if not wait_for_tcp("127.0.0.1", self.port, 30):
                raise RuntimeError(f"endpoint printed but port {self.port} does not accept")
        except Exception as err:
            self.stop()
            pytest.fail(f"{self.name}: tessera dev did not start: {err}\n"
                        f"--- output ({self.log_path}) ---\n{tail(self.log_path)}")

    def _wait_for_endpoint(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            match = ENDPOINT_RE.search(self.log_path.read_text(errors="replace"))
            if match:
                endpoint = match.group(2).rstrip("/")
                if not endpoint.startswith(self.scheme + "://"):
                    raise RuntimeError(f"expected a {self.scheme} endpoint, got {endpoint}")
                return endpoint
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with status {self.proc.returncode}")
            time.sleep(0.2)
        raise RuntimeError(f"no 'S3 endpoint:' line within {STARTUP_TIMEOUT}s")

    def stop(self) -> None:
        for proc in self.restarted.values():
            stop_process(proc)
        if self.proc is not None:
            stop_process(self.proc)
            rc = self.proc.returncode
            if rc not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
                print(f"\n{self.name}: tessera dev exited with {rc}\n{tail(self.log_path)}")
        # Anything dev failed to reap is still ours to clean up.
        for node_id in [*self.node_ids, "gateway"]:
            pid = self._read_pid(node_id)
            if pid and pid_alive(pid) and is_tessera_pid(pid):
                os.kill(pid, signal.SIGKILL)
        if self in _RUNNING_CLUSTERS:
            _RUNNING_CLUSTERS.remove(self)

    # -- nodes ---------------------------------------------------------------

    def node_dir(self, node_id: str) -> Path:
        return self.data_dir / node_id

    def fragments_dir(self, node_id: str) -> Path:
        return self.node_dir(node_id) / "fragments"

    def config_path(self, node_id: str) -> Path:
        return self.data_dir / "config" / f"{node_id}.toml"

    def _pid_file(self, node_id: str) -> Path:
        return self.data_dir / node_id / "pid"

    def _read_pid(self, node_id: str) -> int | None:
        try:
            return int(self._pid_file(node_id).read_text().strip())
        except (OSError, ValueError):
            return None

    def node_pid(self, node_id: str) -> int:
        pid = self._read_pid(node_id)
        assert pid, f"no pid in {self._pid_file(node_id)}"
        return pid

    def node_alive(self, node_id: str) -> bool:
        pid = self._read_pid(node_id)
        return bool(pid) and pid_alive(pid)

    def kill_node(self, node_id: str) -> None:
        pid = self.node_pid(node_id)
        os.kill(pid, signal.SIGKILL)
        # A killed process lives on until the disk I/O it is blocked in completes: once, late in
        # a suite run, a node took over 10 s to die here.
        # Twice it took 60 s (2026-12-05 and 2026-12-07), and was gone by the time the failure was
        # written: what its threads waited in is taken after 5 s, while they still wait.
        begun = time.monotonic()
        early = None
        while pid_alive(pid) and time.monotonic() < begun + 60:
            if early is None and time.monotonic() > begun + 5:
                early = process_state(pid)
            time.sleep(0.05)
        assert not pid_alive(pid), (
            f"{node_id} (pid {pid}) survived SIGKILL: after 5 s {early}; now {process_state(pid)}"
        )

    def start_node(self, node_id: str, timeout: float = 60) -> None:
        config = self.config_path(node_id)
        assert config.is_file(), f"missing node config {config}"
        # A process killed with SIGKILL can look dead (its main thread a zombie) while its other
        # threads still hold its descriptors, listening socket included: starting it again then
        # fails with "Address already in use" (seen once in CI). Wait for the port itself.
        for port in self.own_ports(node_id):
            if not wait_port_free(port, timeout):
                pytest.fail(f"port {port} of {node_id} still taken after {timeout}s: "
                            f"{port_holders(port)}")
        log = open(self.node_dir(node_id) / "restart.log", "ab")
        proc = subprocess.Popen([str(TESSERA_BIN), "server", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=self.env(), start_new_session=True)
        log.close()
        self.restarted[node_id] = proc
        # The pid file names the live process from now on, so that kill_node (and a retried
        # start_node, which checks the old pid is gone) never act on a pid that no longer runs.
        self._pid_file(node_id).write_text(f"{proc.pid}\n")
        ports = _listen_ports(config)
        deadline = time.monotonic() + timeout
        failure = None
        for port in ports:
            if not wait_for_tcp("127.0.0.1", port, max(1.0, deadline - time.monotonic())):
                failure = f"restarted {node_id} not listening on {port} after {timeout}s"
                break
        if not ports:
            time.sleep(2)
        if failure is None and proc.poll() is not None:
            failure = f"restarted {node_id} exited with {proc.returncode}"
        if failure is not None:
            # A process left running here would hold the node's port, and every later start
            # would fail on it rather than on what went wrong now (seen once in CI).
            stop_process(proc, grace=0)
            pytest.fail(f"{failure}\n{tail(self.node_dir(node_id) / 'restart.log')}")

    def own_ports(self, node_id: str) -> list[int]:
        """The ports `node_id` (or "gateway") listens on."""
        config = tomllib.loads(self.config_path(node_id).read_text())
        if node_id == "gateway":
            gateway = config["gateway"]
            return [int(gateway[k].rsplit(":", 1)[1]) for k in ("listen", "console_listen")
                    if k in gateway]
        return [int(n["addr"].rsplit(":", 1)[1]) for n in config["cluster"]["nodes"]
                if n["id"] == node_id]

    # -- clients -------------------------------------------------------------

    def endpoints(self) -> dict[str, str]:
        """Every region's S3 endpoint, by name (one region: `REGION`)."""
        found = ENDPOINT_RE.findall(self.log_path.read_text(errors="replace"))
        return {(name or REGION): url.rstrip("/") for name, url in found}

    def client(self, access_key: str | None = None, secret_key: str | None = None, **config):
        # s3v4 explicitly: otherwise botocore presigns with SigV2 query auth.
        if secret_key:
            note_secret(secret_key)
        cfg = Config(signature_version="s3v4", s3={"addressing_style": "path"},
                     retries={"max_attempts": 3},
                     connect_timeout=10, read_timeout=120, **config)
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            verify=self.ca_bundle if self.tls else None, config=cfg,
        )


def _listen_ports(config_path: Path) -> list[int]:
    """Best effort: ports of `*listen*`/`*bind*` addresses in a node config."""
    try:
        config = tomllib.loads(config_path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return []
    ports = []

    def walk(obj):
        if isinstance(obj, dict):
            for key, value in obj.items():
                if isinstance(value, str) and re.search(r"listen|bind", key):
                    m = re.search(r":(\d+)$", value)
                    if m:
                        ports.append(int(m.group(1)))
                walk(value)

    walk(config)
    return ports


def dev_node_ids(zones: int, nodes_per_zone: int) -> tuple[str, ...]:
    """The node ids `tessera dev --zones Z --nodes-per-zone N` gives its nodes."""
    return tuple(f"z{z}-n{n}" for z in range(1, zones + 1) for n in range(1, nodes_per_zone + 1))


def start_cluster(tmp_path_factory, name: str, tls: bool, zones: int = 3,
                  nodes_per_zone: int = 2) -> Cluster:
    base = tmp_path_factory.mktemp(name)
    cluster = Cluster(name=name, data_dir=base / "data", log_path=base / "tessera-dev.log",
                      port=free_port(), node_ids=dev_node_ids(zones, nodes_per_zone))
    if (zones, nodes_per_zone) != (3, 2):
        cluster.dev_args = ("--zones", str(zones), "--nodes-per-zone", str(nodes_per_zone))
    if tls:
        ca, cert, key = make_tls_cert(base / "tls")
        cluster.tls = (cert, key)
        cluster.ca_bundle = str(ca)
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def cluster_http(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "http", tls=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def cluster_https(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "https", tls=True)
    yield cluster
    cluster.stop()


@pytest.fixture(params=["http", "https"])
def cluster(request) -> Cluster:
    """Either transport; tests using it run once per transport."""
    return request.getfixturevalue(f"cluster_{request.param}")


@pytest.fixture(scope="session")
def s3_http(cluster_http):
    return cluster_http.client()


@pytest.fixture(scope="session")
def s3_https(cluster_https):
    return cluster_https.client()


@pytest.fixture
def s3(cluster, request):
    return request.getfixturevalue(f"s3_{cluster.scheme}")


def empty_and_delete_bucket(client, bucket: str) -> None:
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
        client.delete_bucket(Bucket=bucket)
    except Exception:  # best effort cleanup; the test result is what matters
        pass


@pytest.fixture
def bucket(s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete_bucket(s3, name)


# --------------------------------------------------------------------------- aws CLI


@dataclass
class AwsCli:
    version: str
    binary: Path
    cluster: Cluster
    config_dir: Path
    # Attempts per call, when not the CLI's own (it tries a BadDigest five times, with backoff).
    max_attempts: int | None = None

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        config = self.config_dir / "config"
        attempts = f"max_attempts = {self.max_attempts}\n" if self.max_attempts else ""
        config.write_text(f"[default]\nregion = {REGION}\n{attempts}"
                          "s3 =\n  addressing_style = path\n")
        env.update(
            AWS_ACCESS_KEY_ID=self.cluster.access_key,
            AWS_SECRET_ACCESS_KEY=self.cluster.secret_key,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(config),
            AWS_SHARED_CREDENTIALS_FILE=str(self.config_dir / "credentials-unused"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_PAGER="",
        )
        if self.cluster.ca_bundle:
            env["AWS_CA_BUNDLE"] = self.cluster.ca_bundle
        return env

    def run(self, *args, check: bool = True, timeout: float = 600,
            stdin=None) -> subprocess.CompletedProcess:
        """Runs the CLI; `stdin` (an open file) feeds commands such as `s3 cp - s3://...`."""
        cmd = [str(self.binary), "--endpoint-url", self.cluster.endpoint, *map(str, args)]
        res = subprocess.run(cmd, env=self.env(), capture_output=True, text=True,
                             timeout=timeout, stdin=stdin)
        if check and res.returncode != 0:
            pytest.fail(f"aws {self.version} failed ({res.returncode}): {' '.join(cmd)}\n"
                        f"stdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}")
        return res


def aws_cli_or_skip(version: str) -> Path:
    binary = AWS_CLIS[version]
    env_name = f"TESSERA_AWS_{version.upper()}"
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        pytest.skip(f"aws CLI {version} not found at {binary} (set {env_name})")
    return binary


@pytest.fixture
def make_aws(request, tmp_path_factory):
    """make_aws(version, cluster) -> AwsCli, skipping if that CLI is missing."""

    def make(version: str, cluster: Cluster) -> AwsCli:
        binary = aws_cli_or_skip(version)
        return AwsCli(version, binary, cluster, tmp_path_factory.mktemp(f"aws-{version}"))

    return make


# --------------------------------------------------------------------------- secrets in logs


def config_secrets(cluster: "Cluster") -> set[str]:
    """The secrets in a cluster's config files: the cluster and replication secrets, the S3
    secret key, the SSE master key."""
    found: set[str] = set()

    def walk(value, name=""):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, name)
        elif isinstance(value, str) and ("secret" in name or name.endswith("master_key")):
            found.add(value)

    for path in cluster.data_dir.rglob("config/*.toml"):
        walk(tomllib.loads(path.read_text()))
    return found


def leaked_secrets(cluster: "Cluster", extra: set[str] = frozenset()) -> list[str]:
    """Where a log of the cluster's processes holds one of its secrets or `extra`: one line per
    file and secret (the secret's first 4 characters only). `tessera dev`'s own output prints
    the S3 credentials, on purpose, and may hold that one secret alone."""
    secrets_ = {s for s in config_secrets(cluster) | {cluster.secret_key} | extra if len(s) >= 16}
    logs = [p for p in cluster.log_path.parent.rglob("*.log") if p.parent.name != "meta"]
    leaks = []
    for path in logs:
        text = path.read_text(errors="replace")
        allowed = {cluster.secret_key} if path == cluster.log_path else set()
        leaks += [f"{path}: {s[:4]}..." for s in secrets_ - allowed if s in text]
    return leaks


def pytest_sessionfinish(session, exitstatus):
    """Fails the run when any process of any cluster of the session logged a secret (after
    every cluster has stopped, so that their logs are complete)."""
    leaks = [leak for c in _STARTED_CLUSTERS for leak in leaked_secrets(c, _USED_SECRETS)]
    searched = len(_STARTED_CLUSTERS)
    print(f"\nsecrets in logs: {len(_USED_SECRETS)} used secrets and each cluster's own, "
          f"searched in the logs of {searched} clusters: {len(leaks)} found")
    if leaks:
        print("\n".join(leaks))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --------------------------------------------------------------------------- pytest hooks


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of each running cluster's output to failing tests."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for cluster in list(_RUNNING_CLUSTERS):
            report.sections.append(
                (f"tessera dev [{cluster.name}] output (tail)", tail(cluster.log_path, 80)))
