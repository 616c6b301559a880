"""Small shared helpers for the Tessera real-client tests (no fixtures here)."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import ssl
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

KiB = 1024
MiB = 1024 * KiB


# --------------------------------------------------------------------------- names / data


def unique_bucket(prefix: str = "t") -> str:
    """A DNS-compatible bucket name that is unique per call."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def quoted_md5(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------- checksums
# Pure-python CRC32C / CRC64NVME so explicit checksum values can be sent even when
# botocore has no CRT (which it needs to compute those two itself).


def _reflected_table(poly: int) -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _reflected_table(0x82F63B78)
_CRC64NVME_TABLE = _reflected_table(0x9A6C9329AC4BC9B5)


def _reflected_crc(data: bytes, table: list[int], bits: int) -> int:
    mask = (1 << bits) - 1
    crc = mask
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ mask


def checksum_b64(algorithm: str, data: bytes) -> str:
    """Base64 of the big-endian checksum, as in x-amz-checksum-<algorithm>."""
    algorithm = algorithm.upper()
    if algorithm == "CRC32":
        return b64((zlib.crc32(data) & 0xFFFFFFFF).to_bytes(4, "big"))
    if algorithm == "CRC32C":
        return b64(_reflected_crc(data, _CRC32C_TABLE, 32).to_bytes(4, "big"))
    if algorithm == "CRC64NVME":
        return b64(_reflected_crc(data, _CRC64NVME_TABLE, 64).to_bytes(8, "big"))
    if algorithm == "SHA1":
        return b64(hashlib.sha1(data).digest())
    if algorithm == "SHA256":
        return b64(hashlib.sha256(data).digest())
    raise ValueError(algorithm)


assert _reflected_crc(b"123456789", _CRC32C_TABLE, 32) == 0xE3069283
assert _reflected_crc(b"123456789", _CRC64NVME_TABLE, 64) == 0xAE8B14860A799888


# --------------------------------------------------------------------------- errors


def error_code(exc) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def http_status(exc) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


# --------------------------------------------------------------------------- raw HTTP


class RawResponse:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def error_code(self) -> str | None:
        """<Code> of an S3 XML error body, if any."""
        try:
            root = ET.fromstring(self.body)
        except ET.ParseError:
            return None
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "Code":
                return el.text
        return None


def raw_request(url: str, method: str = "GET", data: bytes | None = None,
                headers: dict | None = None, ca_bundle: str | None = None,
                timeout: float = 60) -> RawResponse:
    """A plain urllib request (no SigV4 unless the URL is presigned)."""
    headers = dict(headers or {})
    if data is not None:  # urllib would default to a form content type
        headers.setdefault("Content-Type", "application/octet-stream")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    context = ssl.create_default_context(cafile=ca_bundle) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return RawResponse(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        return RawResponse(err.code, err.headers, err.read())


# --------------------------------------------------------------------------- files


def sha256_file(path: Path, chunk: int = 8 * MiB) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tree_files(root: Path) -> dict[str, bytes]:
    """Relative posix path -> content for every regular file below root."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_small_file_tree(root: Path, count: int, max_size: int, seed: int) -> dict[str, bytes]:
    """count files of random sizes in [0, max_size], some nested; returns the tree."""
    rng = random.Random(seed)
    subdirs = ["", "", "", "a", "a/b", "a/b/c", "deep/er/and/deeper", "x y"]
    tree = {}
    for i in range(count):
        rel = "/".join(filter(None, [rng.choice(subdirs), f"file-{i:05d}.bin"]))
        data = rng.randbytes(rng.randint(0, max_size))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        tree[rel] = data
    return tree


def newest_fragment(fragments_dir: Path, since: float, min_size: int, timeout: float = 15) -> Path:
    """The largest file under fragments_dir modified at/after `since`."""
    deadline = time.monotonic() + timeout
    while True:
        candidates = [p for p in fragments_dir.rglob("*")
                      if p.is_file() and p.stat().st_mtime >= since]
        if candidates:
            best = max(candidates, key=lambda p: p.stat().st_size)
            if best.stat().st_size >= min_size:
                return best
        if time.monotonic() > deadline:
            sizes = {str(p): p.stat().st_size for p in candidates}
            pytest.fail(f"no fragment >= {min_size} bytes written after the put "
                        f"under {fragments_dir}; recent files: {sizes}")
        time.sleep(0.5)


def flip_middle_byte(path: Path) -> None:
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        before = os.pread(fd, 1, size // 2)
        os.pwrite(fd, bytes([before[0] ^ 0xFF]), size // 2)
        os.fsync(fd)
        assert os.pread(fd, 1, size // 2) != before
    finally:
        os.close(fd)


def dashboard_metrics() -> set[str]:
    """The metric names the Grafana dashboard (deploy/grafana/tessera.json) queries."""
    import json
    import re
    path = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tessera.json"
    exprs = [t["expr"] for p in json.loads(path.read_text())["panels"] for t in p.get("targets", [])]
    return {name for e in exprs for name in re.findall(r"\btessera_[a-z0-9_]+", e)}
