"""Presigned URLs made by the AWS SDK for JavaScript v3 (tests/clients/js), as a web app's server
makes them for a browser, and boto3's equivalents.

The JavaScript SDK moves `x-amz-*` headers into the query string when it presigns: its GET
carries `x-amz-checksum-mode=ENABLED`, its PUT `x-amz-sdk-checksum-algorithm=CRC32` and
`x-amz-checksum-crc32` (of the body given when presigning, or of an empty one). S3 reads them as
the headers they name; boto3 keeps them as signed headers that the request must carry."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from helpers import checksum_b64, error_code, random_bytes, raw_request, unique_bucket

JS_DIR = Path(__file__).resolve().parent / "js"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with the SDK installed from package-lock.json if it is not yet."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are not installed (scripts/install-deps.sh installs them)")
    if not (JS_DIR / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True,
                       capture_output=True, timeout=600)
    return node


@pytest.fixture(scope="module")
def s3(cluster_http):
    return cluster_http.client()


@pytest.fixture
def bucket(s3):
    name = unique_bucket("js")
    s3.create_bucket(Bucket=name)
    return name


def js_presign(node, cluster, command: str, checksum: str = "WHEN_SUPPORTED", **params) -> str:
    request = {"endpoint": cluster.endpoint, "region": cluster.region,
               "accessKey": cluster.access_key, "secretKey": cluster.secret_key,
               "command": command, "params": params, "checksum": checksum}
    done = subprocess.run([node, "presign.mjs", json.dumps(request)], cwd=JS_DIR, check=True,
                          capture_output=True, text=True, timeout=60)
    return done.stdout


def query_of(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def stored(s3, bucket: str, key: str) -> dict | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as e:
        assert error_code(e) == "404"
        return None


def test_js_presigned_get_with_checksum_mode(node, cluster_http, s3, bucket):
    data = random_bytes(3000)
    s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm="SHA1")
    url = js_presign(node, cluster_http, "GetObject", Bucket=bucket, Key="k",
                     ChecksumMode="ENABLED")
    assert query_of(url)["x-amz-checksum-mode"] == "ENABLED"
    resp = raw_request(url)
    assert resp.status == 200, resp.body
    assert resp.body == data
    assert resp.headers["x-amz-checksum-sha1"] == checksum_b64("sha1", data)


def test_js_presigned_put_with_the_bodys_checksum(node, cluster_http, s3, bucket):
    body = "uploaded from a browser"
    url = js_presign(node, cluster_http, "PutObject", Bucket=bucket, Key="k", Body=body)
    crc = checksum_b64("crc32", body.encode())
    assert query_of(url)["x-amz-checksum-crc32"] == crc
    assert query_of(url)["x-amz-sdk-checksum-algorithm"] == "CRC32"
    resp = raw_request(url, method="PUT", data=body.encode())
    assert resp.status == 200, resp.body
    assert resp.headers["x-amz-checksum-crc32"] == crc
    head = stored(s3, bucket, "k")
    assert head["ChecksumCRC32"] == crc
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == body.encode()


def test_js_presigned_put_without_checksum(node, cluster_http, s3, bucket):
    url = js_presign(node, cluster_http, "PutObject", checksum="WHEN_REQUIRED", Bucket=bucket,
                     Key="k")
    assert not any(name.startswith("x-amz-checksum") for name in query_of(url))
    data = random_bytes(70_000)
    resp = raw_request(url, method="PUT", data=data)
    assert resp.status == 200, resp.body
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data


@pytest.mark.parametrize("presigned_body", ["the body presigned", None],
                         ids=["another-body", "empty-body-presigned"])
def test_js_presigned_put_of_another_body_is_bad_digest(node, cluster_http, s3, bucket,
                                                        presigned_body):
    """Presigned without a body, the SDK signs the CRC32 of an empty one (`AAAAAA==`): S3 refuses
    any other body, and so does Tessera. (A body given is signed with its length: the other body
    has the same.)"""
    params = {} if presigned_body is None else {"Body": presigned_body}
    url = js_presign(node, cluster_http, "PutObject", Bucket=bucket, Key="k", **params)
    resp = raw_request(url, method="PUT", data=b"the body tampered!")
    assert resp.status == 400, resp.body
    assert resp.error_code == "BadDigest"
    assert stored(s3, bucket, "k") is None


def test_js_presigned_headers_are_read_as_headers(node, cluster_http, s3, bucket):
    url = js_presign(node, cluster_http, "PutObject", checksum="WHEN_REQUIRED", Bucket=bucket,
                     Key="k", Metadata={"origin": "browser"}, Tagging="app=web")
    assert {"x-amz-meta-origin", "x-amz-tagging"} <= set(query_of(url))
    assert raw_request(url, method="PUT", data=b"data").status == 200
    assert stored(s3, bucket, "k")["Metadata"] == {"origin": "browser"}
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "app", "Value": "web"}]


def test_js_presigned_header_tessera_lacks_is_refused(node, cluster_http, s3, bucket):
    url = js_presign(node, cluster_http, "PutObject", checksum="WHEN_REQUIRED", Bucket=bucket,
                     Key="k", ACL="aws-exec-read")
    assert query_of(url)["x-amz-acl"] == "aws-exec-read"
    resp = raw_request(url, method="PUT", data=b"data")
    assert (resp.status, resp.error_code) == (501, "NotImplemented")
    assert stored(s3, bucket, "k") is None


def test_an_amz_query_parameter_of_a_header_signed_request_is_refused(cluster_http, bucket):
    """Only a presigned URL's parameters stand for headers."""
    s3 = cluster_http.client()  # its own client: the hook below must not outlive the test
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")

    def add_parameter(request, **_):
        request.url += ("&" if "?" in request.url else "?") + "x-amz-checksum-mode=ENABLED"

    s3.meta.events.register_first("before-sign.s3.GetObject", add_parameter)
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(excinfo.value) == "NotImplemented"


# --------------------------------------------------------------------------- boto3's equivalents


def test_boto3_presigned_get_with_checksum_mode(cluster_http, s3, bucket):
    data = random_bytes(3000)
    s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm="SHA256")
    url = s3.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": "k", "ChecksumMode": "ENABLED"}, ExpiresIn=300)
    resp = raw_request(url, headers={"x-amz-checksum-mode": "ENABLED"})
    assert resp.status == 200, resp.body
    assert resp.headers["x-amz-checksum-sha256"] == checksum_b64("sha256", data)


@pytest.mark.parametrize("body,status", [(b"the body presigned", 200), (b"another body", 400)])
def test_boto3_presigned_put_with_checksum(cluster_http, s3, bucket, body, status):
    crc = checksum_b64("crc32", b"the body presigned")
    url = s3.generate_presigned_url("put_object", Params={
        "Bucket": bucket, "Key": "k", "ChecksumAlgorithm": "CRC32", "ChecksumCRC32": crc},
        ExpiresIn=300)
    resp = raw_request(url, method="PUT", data=body, headers={
        "x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-crc32": crc})
    assert resp.status == status, resp.body
    if status == 200:
        assert stored(s3, bucket, "k")["ChecksumCRC32"] == crc
    else:
        assert resp.error_code == "BadDigest"
        assert stored(s3, bucket, "k") is None


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aws_cli_presigned_get(make_aws, cluster_http, s3, bucket, version):
    """`aws s3 presign` makes a GET URL that a plain HTTP client (urllib) fetches; another key
    under the same signature is refused."""
    aws = make_aws(version, cluster_http)
    data = random_bytes(1000)
    s3.put_object(Bucket=bucket, Key="dir/shared file", Body=data)
    url = aws.run("s3", "presign", f"s3://{bucket}/dir/shared file",
                  "--expires-in", "300").stdout.strip()
    res = raw_request(url)
    assert (res.status, res.body) == (200, data), res.body
    tampered = raw_request(url.replace("shared%20file", "other%20file"))
    assert (tampered.status, tampered.error_code) == (403, "SignatureDoesNotMatch")
