"""The aws CLI (pip's v1 and Debian's v2) against real `tessera dev` clusters."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time

import pytest

from helpers import (MiB, make_small_file_tree, quoted_md5, random_bytes, sha256_file,
                     tree_files, unique_bucket)

SYNC_FILE_COUNT = 1000


@pytest.fixture(params=["v1", "v2"])
def aws(request, cluster, make_aws):
    """One aws CLI on one transport (cluster is itself parametrized http/https)."""
    return make_aws(request.param, cluster)


@pytest.fixture
def cli_bucket(aws):
    name = unique_bucket("cli")
    aws.run("s3", "mb", f"s3://{name}")
    yield name
    aws.run("s3", "rb", f"s3://{name}", "--force", check=False)


def ls_recursive(aws, bucket: str) -> dict[str, int]:
    """key -> size from `aws s3 ls --recursive` (keys may contain spaces)."""
    out = aws.run("s3", "ls", "--recursive", f"s3://{bucket}/").stdout
    listing = {}
    for line in out.splitlines():
        if not line.strip():
            continue
        _date, _time, size, key = line.split(None, 3)
        listing[key] = int(size)
    return listing


def test_mb_ls_cp_rb(aws, tmp_path):
    bucket = unique_bucket("cli")
    aws.run("s3", "mb", f"s3://{bucket}")
    assert bucket in aws.run("s3", "ls").stdout.split()

    data = random_bytes(300_000)
    src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
    src.write_bytes(data)
    aws.run("s3", "cp", src, f"s3://{bucket}/some dir/up.bin")
    assert ls_recursive(aws, bucket) == {"some dir/up.bin": len(data)}
    assert "PRE some dir/" in aws.run("s3", "ls", f"s3://{bucket}/").stdout

    aws.run("s3", "cp", f"s3://{bucket}/some dir/up.bin", dst)
    assert dst.read_bytes() == data

    # rb refuses a non-empty bucket; after rm it succeeds and the bucket is gone.
    assert aws.run("s3", "rb", f"s3://{bucket}", check=False).returncode != 0
    aws.run("s3", "rm", f"s3://{bucket}/some dir/up.bin")
    aws.run("s3", "rb", f"s3://{bucket}")
    assert bucket not in aws.run("s3", "ls").stdout.split()


def test_s3api_put_head_list(aws, cli_bucket, tmp_path):
    data = random_bytes(123_457)
    body = tmp_path / "body.bin"
    body.write_bytes(data)
    put = json.loads(aws.run("s3api", "put-object", "--bucket", cli_bucket, "--key", "api/obj",
                             "--body", body, "--content-type", "text/x-tessera",
                             "--metadata", "origin=awscli,answer=42").stdout)
    assert put["ETag"] == quoted_md5(data)

    head = json.loads(aws.run("s3api", "head-object", "--bucket", cli_bucket,
                              "--key", "api/obj").stdout)
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == quoted_md5(data)
    assert head["ContentType"] == "text/x-tessera"
    assert head["Metadata"] == {"origin": "awscli", "answer": "42"}

    for key in ["api/other", "top"]:
        aws.run("s3api", "put-object", "--bucket", cli_bucket, "--key", key, "--body", body)
    listing = json.loads(aws.run("s3api", "list-objects-v2", "--bucket", cli_bucket,
                                 "--prefix", "api/").stdout)
    assert [o["Key"] for o in listing["Contents"]] == ["api/obj", "api/other"]
    assert all(o["Size"] == len(data) for o in listing["Contents"])

    missing = aws.run("s3api", "head-object", "--bucket", cli_bucket, "--key", "nope", check=False)
    assert missing.returncode != 0 and "404" in missing.stderr


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("sync-src")
    return root, make_small_file_tree(root, SYNC_FILE_COUNT, 3000, seed=20240601)


def test_sync_1000_files(aws, cli_bucket, small_tree, tmp_path):
    src, tree = small_tree
    aws.run("s3", "sync", src, f"s3://{cli_bucket}/")
    assert ls_recursive(aws, cli_bucket) == {rel: len(data) for rel, data in tree.items()}

    # A second sync has nothing to do.
    assert aws.run("s3", "sync", src, f"s3://{cli_bucket}/").stdout.strip() == ""

    dst = tmp_path / "down"
    dst.mkdir()
    aws.run("s3", "sync", f"s3://{cli_bucket}/", dst)
    downloaded = tree_files(dst)
    assert sorted(downloaded) == sorted(tree)
    mismatched = [rel for rel, data in tree.items() if downloaded[rel] != data]
    assert mismatched == []


# --------------------------------------------------------------------------- 1 GiB

LARGE_SIZE = 1024 * MiB
CHUNK = 8 * MiB


@pytest.fixture(scope="module")
def large_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("large") / "one-gib.bin"
    rng = random.Random(0x7E55E7A)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(LARGE_SIZE // CHUNK):
            block = rng.randbytes(CHUNK)
            digest.update(block)
            f.write(block)
    yield path, digest.hexdigest()
    path.unlink(missing_ok=True)


def report_throughput(label: str, size: int, seconds: float) -> None:
    line = f"THROUGHPUT {label} {size / MiB / seconds:.1f} MiB/s ({size} bytes in {seconds:.2f}s)"
    print(f"\n{line}", flush=True)
    log = os.environ.get("TESSERA_THROUGHPUT_LOG")
    if log:
        with open(log, "a") as f:
            f.write(line + "\n")


def timed(fn) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


@pytest.mark.large
@pytest.mark.parametrize("version,transport", [("v1", "https"), ("v2", "http")])
def test_one_gib_cp(request, make_aws, large_file, version, transport, tmp_path):
    cluster = request.getfixturevalue(f"cluster_{transport}")
    aws = make_aws(version, cluster)
    path, digest = large_file
    bucket = unique_bucket("large")
    aws.run("s3", "mb", f"s3://{bucket}")
    down = tmp_path / "down.bin"
    try:
        up_s = timed(lambda: aws.run("s3", "cp", path, f"s3://{bucket}/big.bin", timeout=3600))
        report_throughput(f"aws-{version} {transport} upload", LARGE_SIZE, up_s)
        assert ls_recursive(aws, bucket) == {"big.bin": LARGE_SIZE}

        down_s = timed(lambda: aws.run("s3", "cp", f"s3://{bucket}/big.bin", down, timeout=3600))
        report_throughput(f"aws-{version} {transport} download", LARGE_SIZE, down_s)
        assert down.stat().st_size == LARGE_SIZE
        assert sha256_file(down) == digest
    finally:
        down.unlink(missing_ok=True)
        aws.run("s3", "rb", f"s3://{bucket}", "--force", check=False, timeout=600)


# --------------------------------------------------------------------------- streams and GiBs


def write_random_file(path, size: int, seed: int) -> str:
    """Writes `size` pseudo-random bytes; returns their MD5 (hex)."""
    rng = random.Random(seed)
    digest = hashlib.md5()
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(CHUNK, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def md5_file(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


STREAM_SIZE = 300 * MiB


@pytest.mark.parametrize("version,transport", [("v1", "https"), ("v2", "http")])
def test_cp_from_stdin(request, make_aws, version, transport, tmp_path):
    """`aws s3 cp - s3://...` streams standard input (size unknown: multipart upload)."""
    aws = make_aws(version, request.getfixturevalue(f"cluster_{transport}"))
    src, down = tmp_path / "stream.bin", tmp_path / "down.bin"
    digest = write_random_file(src, STREAM_SIZE, seed=7)
    bucket = unique_bucket("stdin")
    aws.run("s3", "mb", f"s3://{bucket}")
    try:
        with open(src, "rb") as stdin:
            aws.run("s3", "cp", "-", f"s3://{bucket}/stream.bin", stdin=stdin, timeout=600)
        assert ls_recursive(aws, bucket) == {"stream.bin": STREAM_SIZE}
        aws.run("s3", "cp", f"s3://{bucket}/stream.bin", down, timeout=600)
        assert md5_file(down) == digest
    finally:
        aws.run("s3", "rb", f"s3://{bucket}", "--force", check=False, timeout=600)


MULTI_GIB = 3 * 1024 * MiB


@pytest.mark.large
def test_three_gib_multipart_cp(cluster_http, make_aws, tmp_path):
    """A multipart upload of several GiB (3 GiB in 8 MiB parts, the CLI's default) and back."""
    aws = make_aws("v2", cluster_http)
    src, down = tmp_path / "three-gib.bin", tmp_path / "down.bin"
    digest = write_random_file(src, MULTI_GIB, seed=3)
    bucket = unique_bucket("gib")
    aws.run("s3", "mb", f"s3://{bucket}")
    try:
        up_s = timed(lambda: aws.run("s3", "cp", src, f"s3://{bucket}/big.bin", timeout=3600))
        report_throughput("aws-v2 http 3 GiB multipart upload", MULTI_GIB, up_s)
        src.unlink()
        head = json.loads(aws.run("s3api", "head-object", "--bucket", bucket,
                                  "--key", "big.bin").stdout)
        assert head["ContentLength"] == MULTI_GIB
        assert head["ETag"].endswith(f'-{MULTI_GIB // (8 * MiB)}"'), head["ETag"]
        down_s = timed(lambda: aws.run("s3", "cp", f"s3://{bucket}/big.bin", down, timeout=3600))
        report_throughput("aws-v2 http 3 GiB download", MULTI_GIB, down_s)
        assert md5_file(down) == digest
    finally:
        src.unlink(missing_ok=True)
        down.unlink(missing_ok=True)
        aws.run("s3", "rb", f"s3://{bucket}", "--force", check=False, timeout=600)
