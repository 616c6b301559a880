"""rclone (Debian's package) against real `tessera dev` clusters, over http and https.

rclone is configured entirely from environment variables: an `s3` remote named `tess`, provider
`Other`, path-style addressing. Its multipart cutoff is lowered to 5 MiB so that a 12 MiB file goes
up in three parts, four at a time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from helpers import MiB, make_small_file_tree, random_bytes, tree_files

RCLONE = shutil.which("rclone")
MULTIPART = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--s3-upload-concurrency", "4"]

pytestmark = pytest.mark.skipif(RCLONE is None, reason="rclone not installed (apt install rclone)")


def rclone(cluster, tmp_path, *args, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
    env.update(
        RCLONE_CONFIG=str(tmp_path / "rclone.conf"),  # never the user's config
        RCLONE_CONFIG_TESS_TYPE="s3",
        RCLONE_CONFIG_TESS_PROVIDER="Other",
        RCLONE_CONFIG_TESS_ACCESS_KEY_ID=cluster.access_key,
        RCLONE_CONFIG_TESS_SECRET_ACCESS_KEY=cluster.secret_key,
        RCLONE_CONFIG_TESS_ENDPOINT=cluster.endpoint,
        RCLONE_CONFIG_TESS_REGION=cluster.region,
        RCLONE_CONFIG_TESS_FORCE_PATH_STYLE="true",
    )
    cmd = [RCLONE, *map(str, args), "--retries", "1", "--low-level-retries", "2"]
    if cluster.ca_bundle:
        cmd += ["--ca-cert", cluster.ca_bundle]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if check and res.returncode != 0:
        pytest.fail(f"rclone failed ({res.returncode}): {' '.join(cmd)}\n"
                    f"stdout:\n{res.stdout[-4000:]}\nstderr:\n{res.stderr[-4000:]}")
    return res


def lsf(cluster, tmp_path, remote: str) -> set[str]:
    out = rclone(cluster, tmp_path, "lsf", "-R", "--files-only", remote).stdout
    return {line for line in out.splitlines() if line}


def test_copy_sync_check_lsf(cluster, s3, bucket, tmp_path):
    src = tmp_path / "src"
    tree = make_small_file_tree(src, 40, 200_000, seed=7)
    big = random_bytes(12 * MiB + 12345)
    (src / "big.bin").write_bytes(big)
    tree["big.bin"] = big
    remote = f"tess:{bucket}/dir"

    rclone(cluster, tmp_path, "copy", src, remote, *MULTIPART)
    assert lsf(cluster, tmp_path, remote) == set(tree)
    rclone(cluster, tmp_path, "check", src, remote)
    head = s3.head_object(Bucket=bucket, Key="dir/big.bin")
    assert head["ETag"].endswith('-3"'), head["ETag"]  # 5 + 5 + 2 MiB parts
    body = s3.get_object(Bucket=bucket, Key="dir/big.bin")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(big).digest()

    # sync: a changed file, a new one, a deleted one.
    changed = sorted(k for k in tree if k != "big.bin")[0]
    (src / changed).write_bytes(b"changed contents")
    (src / "new file.txt").write_bytes(b"new")
    removed = sorted(k for k in tree if k != "big.bin")[-1]
    (src / removed).unlink()
    rclone(cluster, tmp_path, "sync", src, remote, *MULTIPART)
    expected = tree_files(src)
    assert lsf(cluster, tmp_path, remote) == set(expected)
    rclone(cluster, tmp_path, "check", src, remote)
    assert s3.get_object(Bucket=bucket, Key=f"dir/{changed}")["Body"].read() == b"changed contents"

    # A difference is caught by check.
    (src / "new file.txt").write_bytes(b"differs")
    assert rclone(cluster, tmp_path, "check", src, remote, check=False).returncode != 0

    # Down again, and a server-side copy (CopyObject) within the bucket.
    down = tmp_path / "down"
    rclone(cluster, tmp_path, "copy", remote, down)
    assert tree_files(down) == {**expected, "new file.txt": b"new"}
    rclone(cluster, tmp_path, "copyto", f"{remote}/big.bin", f"tess:{bucket}/copied/big.bin")
    copied = s3.get_object(Bucket=bucket, Key="copied/big.bin")["Body"].read()
    assert copied == big
    out = rclone(cluster, tmp_path, "md5sum", f"tess:{bucket}/copied").stdout
    assert out.split()[0] == hashlib.md5(big).hexdigest()
