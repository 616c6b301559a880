"""Server-side encryption as AWS S3 has it, through boto3 and the aws CLI: SSE-S3 (AES256), a
bucket's default encryption, SSE-C (over TLS only), multipart uploads and copies with either,
bytes that are really encrypted on disk, and encrypted objects read back through node loss.

SSE-C tests use the https cluster: S3 refuses customer keys sent in the clear."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from conftest import empty_and_delete_bucket, note_secret, start_cluster
from helpers import KiB, MiB, b64, error_code, http_status, quoted_md5, random_bytes, unique_bucket
from test_hardening import signed_request

KEY = secrets.token_bytes(32)
OTHER_KEY = secrets.token_bytes(32)
for _key in (KEY, OTHER_KEY):
    note_secret(b64(_key))
BLOCK = 256 * KiB  # the erasure block (4 make a stripe): ranges crossing blocks are the risky ones
SSE_S3 = {"ServerSideEncryption": "AES256"}
AES256_DEFAULT = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                             "BucketKeyEnabled": False}]}


def ssec(key: bytes = KEY) -> dict:
    """boto3's SSE-C parameters: it base64-encodes the key and adds its MD5 itself."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_source_ssec(key: bytes = KEY) -> dict:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def key_md5(key: bytes) -> str:
    return b64(hashlib.md5(key).digest())


def ssec_encoded(key: bytes = KEY) -> dict:
    """SSE-C parameters for the calls boto3 does not encode them for (GetObjectAttributes)."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": b64(key),
            "SSECustomerKeyMD5": key_md5(key)}


def refusal(call, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    return http_status(excinfo.value), error_code(excinfo.value)


def expected_slice(data: bytes, spec: str) -> bytes:
    """What `Range: bytes=<spec>` selects from data ("a-b", "a-" or "-n")."""
    first, last = spec.split("-")
    if not first:
        return data[-int(last):]
    return data[int(first): int(last) + 1 if last else None]


def assert_ranges(s3, bucket: str, key: str, data: bytes, specs: list[str], **params) -> None:
    wrong = []
    for spec in specs:
        got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={spec}", **params)
        if got["Body"].read() != expected_slice(data, spec):
            wrong.append(spec)
    assert wrong == [], f"ranges read back wrong: {wrong}"


@pytest.fixture
def tls_bucket(s3_https):
    """A bucket on the https cluster, for SSE-C."""
    name = unique_bucket("ssec")
    s3_https.create_bucket(Bucket=name)
    yield name
    empty_and_delete_bucket(s3_https, name)


@pytest.fixture
def http_bucket(s3_http):
    name = unique_bucket("ssec-http")
    s3_http.create_bucket(Bucket=name)
    yield name
    empty_and_delete_bucket(s3_http, name)


# --------------------------------------------------------------------------- SSE-S3


@pytest.mark.parametrize("size", [2 * KiB, 300 * KiB], ids=["inline", "fragments"])
def test_sse_s3_put_get_head(s3, bucket, size):
    """An SSE-S3 object says so on PUT, GET and HEAD, and keeps the plaintext's MD5 as ETag."""
    data = random_bytes(size)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=data, **SSE_S3)
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"] == quoted_md5(data)
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert got["ServerSideEncryption"] == "AES256"
    assert got["ETag"] == quoted_md5(data)
    head = s3.head_object(Bucket=bucket, Key="obj")
    assert (head["ServerSideEncryption"], head["ContentLength"]) == ("AES256", size)
    assert "SSECustomerAlgorithm" not in head


def test_plain_object_has_no_encryption_header(s3, bucket):
    """Without SSE asked for (and no bucket default), nothing claims encryption."""
    put = s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    assert "ServerSideEncryption" not in put
    assert "ServerSideEncryption" not in s3.head_object(Bucket=bucket, Key="plain")


def test_sse_s3_ranged_reads(s3, bucket):
    """Ranges of an SSE-S3 object decrypt to the plaintext's slices, across block boundaries."""
    data = random_bytes(1300 * KiB + 123)
    s3.put_object(Bucket=bucket, Key="big", Body=data, **SSE_S3)
    size = len(data)
    assert_ranges(s3, bucket, "big", data, [
        "0-0", "0-99", f"{BLOCK - 10}-{BLOCK + 10}", f"{BLOCK}-{2 * BLOCK - 1}",
        f"{64 * KiB - 3}-{64 * KiB + 3}", f"{3 * BLOCK + 5}-", f"{size - 1}-{size - 1}", "-1",
        "-1000", f"100-{size - 1}"])


@pytest.mark.parametrize("algorithm", ["aws:kms", "aws:kms:dsse"])
def test_kms_is_not_implemented(s3, bucket, algorithm):
    """KMS-managed keys are not offered: S3's NotImplemented, not a silent plaintext write."""
    assert refusal(s3.put_object, Bucket=bucket, Key="kms", Body=b"x",
                   ServerSideEncryption=algorithm) == (501, "NotImplemented")
    assert refusal(s3.head_object, Bucket=bucket, Key="kms")[0] == 404


def test_unknown_sse_value_is_invalid_argument(s3, bucket):
    assert refusal(s3.put_object, Bucket=bucket, Key="junk", Body=b"x",
                   ServerSideEncryption="rot13") == (400, "InvalidArgument")


def test_sse_s3_multipart(s3, bucket):
    """An SSE-S3 upload answers ServerSideEncryption on create, every part and complete."""
    parts = [random_bytes(5 * MiB), random_bytes(1000)]
    create = s3.create_multipart_upload(Bucket=bucket, Key="mp", **SSE_S3)
    assert create["ServerSideEncryption"] == "AES256"
    upload = create["UploadId"]
    etags = []
    for n, body in enumerate(parts, 1):
        part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n, Body=body)
        assert part["ServerSideEncryption"] == "AES256"
        assert part["ETag"] == quoted_md5(body)
        etags.append(part["ETag"])
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]})
    assert done["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert (got["ServerSideEncryption"], got["Body"].read()) == ("AES256", b"".join(parts))
    assert s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)["Body"].read() == parts[1]
    assert_ranges(s3, bucket, "mp", b"".join(parts), [f"{5 * MiB - 50}-{5 * MiB + 50}"])


# --------------------------------------------------------------------------- bucket default


def test_bucket_encryption_put_get_delete(s3, bucket):
    """PutBucketEncryption is returned as set by Get, and Delete makes Get 404 again."""
    missing = (404, "ServerSideEncryptionConfigurationNotFoundError")
    assert refusal(s3.get_bucket_encryption, Bucket=bucket) == missing
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES256_DEFAULT)
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert len(rules) == 1
    assert rules[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert rules[0].get("BucketKeyEnabled", False) is False

    with_bucket_key = {"Rules": [{**AES256_DEFAULT["Rules"][0], "BucketKeyEnabled": True}]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=with_bucket_key)
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["BucketKeyEnabled"] is True

    s3.delete_bucket_encryption(Bucket=bucket)
    assert refusal(s3.get_bucket_encryption, Bucket=bucket) == missing
    assert refusal(s3.get_bucket_encryption, Bucket=unique_bucket("none"))[0] == 404


def test_bucket_default_encrypts_plain_writes(s3, bucket):
    """With the default set, a PUT asking nothing is SSE-S3; objects keep it after Delete."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=AES256_DEFAULT)
    data = random_bytes(200 * KiB)
    put = s3.put_object(Bucket=bucket, Key="by-default", Body=data)
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"] == quoted_md5(data)
    assert s3.head_object(Bucket=bucket, Key="by-default")["ServerSideEncryption"] == "AES256"
    create = s3.create_multipart_upload(Bucket=bucket, Key="mp-by-default")
    assert create["ServerSideEncryption"] == "AES256"
    s3.abort_multipart_upload(Bucket=bucket, Key="mp-by-default", UploadId=create["UploadId"])

    s3.delete_bucket_encryption(Bucket=bucket)
    assert "ServerSideEncryption" not in s3.put_object(Bucket=bucket, Key="after", Body=b"a")
    got = s3.get_object(Bucket=bucket, Key="by-default")
    assert (got["ServerSideEncryption"], got["Body"].read()) == ("AES256", data)


def test_bucket_default_kms_is_not_implemented(s3, bucket):
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}
    assert refusal(s3.put_bucket_encryption, Bucket=bucket,
                   ServerSideEncryptionConfiguration=config) == (501, "NotImplemented")
    assert refusal(s3.get_bucket_encryption, Bucket=bucket)[0] == 404


def test_bucket_encryption_malformed_xml(cluster, s3, bucket):
    body = b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>"
    resp = signed_request(cluster, "PUT", f"/{bucket}",
                          {"content-md5": b64(hashlib.md5(body).digest())},
                          body=body, query="encryption=")
    assert (resp.status, resp.error_code) == (400, "MalformedXML")
    assert refusal(s3.get_bucket_encryption, Bucket=bucket)[0] == 404


# --------------------------------------------------------------------------- SSE-C


def test_ssec_refused_over_plain_http(s3_http, http_bucket):
    """S3 never takes a customer key sent in the clear."""
    assert refusal(s3_http.put_object, Bucket=http_bucket, Key="k", Body=b"x",
                   **ssec()) == (400, "InvalidRequest")
    assert refusal(s3_http.head_object, Bucket=http_bucket, Key="k")[0] == 404


@pytest.mark.parametrize("size", [2 * KiB, 300 * KiB], ids=["inline", "fragments"])
def test_ssec_put_get_head(s3_https, tls_bucket, size):
    """The key's MD5 comes back on every answer, and the ETag is not the plaintext's MD5."""
    s3, data = s3_https, random_bytes(size)
    put = s3.put_object(Bucket=tls_bucket, Key="obj", Body=data, **ssec())
    assert put["SSECustomerAlgorithm"] == "AES256"
    assert put["SSECustomerKeyMD5"] == key_md5(KEY)
    assert put["ETag"] != quoted_md5(data)
    got = s3.get_object(Bucket=tls_bucket, Key="obj", **ssec())
    assert got["Body"].read() == data
    assert (got["SSECustomerAlgorithm"], got["SSECustomerKeyMD5"]) == ("AES256", key_md5(KEY))
    assert got["ETag"] == put["ETag"]
    head = s3.head_object(Bucket=tls_bucket, Key="obj", **ssec())
    assert (head["ContentLength"], head["SSECustomerKeyMD5"]) == (size, key_md5(KEY))
    assert head["ETag"] == put["ETag"]
    whole = s3.get_object(Bucket=tls_bucket, Key="obj", PartNumber=1, **ssec())
    assert whole["Body"].read() == data


def test_ssec_read_without_key_is_invalid_request(s3_https, tls_bucket):
    s3_https.put_object(Bucket=tls_bucket, Key="obj", Body=b"secret", **ssec())
    assert refusal(s3_https.get_object, Bucket=tls_bucket, Key="obj") == (400, "InvalidRequest")
    assert refusal(s3_https.head_object, Bucket=tls_bucket, Key="obj")[0] == 400


def test_ssec_read_with_wrong_key_is_access_denied(s3_https, tls_bucket):
    s3_https.put_object(Bucket=tls_bucket, Key="obj", Body=b"secret", **ssec())
    assert refusal(s3_https.get_object, Bucket=tls_bucket, Key="obj",
                   **ssec(OTHER_KEY)) == (403, "AccessDenied")
    assert refusal(s3_https.head_object, Bucket=tls_bucket, Key="obj", **ssec(OTHER_KEY))[0] == 403
    assert refusal(s3_https.get_object, Bucket=tls_bucket, Key="obj", Range="bytes=0-1",
                   **ssec(OTHER_KEY)) == (403, "AccessDenied")


def test_ssec_object_attributes_need_the_key(s3_https, tls_bucket):
    """GetObjectAttributes tells the plaintext's checksum and ETag: only with the key, as HEAD."""
    s3_https.put_object(Bucket=tls_bucket, Key="obj", Body=b"secret", ChecksumAlgorithm="CRC32",
                        **ssec())
    asked = {"Bucket": tls_bucket, "Key": "obj", "ObjectAttributes": ["Checksum", "ObjectSize"]}
    assert refusal(s3_https.get_object_attributes, **asked) == (400, "InvalidRequest")
    assert refusal(s3_https.get_object_attributes, **asked, **ssec_encoded(OTHER_KEY)) == (
        403, "AccessDenied")
    got = s3_https.get_object_attributes(**asked, **ssec_encoded())
    assert got["ObjectSize"] == 6 and "ChecksumCRC32" in got["Checksum"]
    s3_https.put_object(Bucket=tls_bucket, Key="plain", Body=b"plain")
    asked["Key"] = "plain"
    assert refusal(s3_https.get_object_attributes, **asked, **ssec_encoded()) == (
        400, "InvalidRequest")
    assert s3_https.get_object_attributes(**asked)["ObjectSize"] == 5


@pytest.mark.parametrize("stored_as", ["plain", "sse-s3"])
def test_ssec_headers_on_object_without_customer_key(s3_https, tls_bucket, stored_as):
    """A customer key does not apply to an object not encrypted with one: InvalidRequest."""
    params = SSE_S3 if stored_as == "sse-s3" else {}
    s3_https.put_object(Bucket=tls_bucket, Key="obj", Body=b"not ssec", **params)
    assert refusal(s3_https.get_object, Bucket=tls_bucket, Key="obj",
                   **ssec()) == (400, "InvalidRequest")
    assert refusal(s3_https.head_object, Bucket=tls_bucket, Key="obj", **ssec())[0] == 400


def test_ssec_short_key_is_invalid_argument(s3_https, tls_bucket):
    assert refusal(s3_https.put_object, Bucket=tls_bucket, Key="k", Body=b"x",
                   **ssec(KEY[:16])) == (400, "InvalidArgument")


def test_ssec_key_md5_mismatch_is_invalid_argument(s3_https, tls_bucket):
    """Given explicitly, boto3 sends the MD5 as is (and the key must then be base64 already)."""
    assert refusal(s3_https.put_object, Bucket=tls_bucket, Key="k", Body=b"x",
                   SSECustomerAlgorithm="AES256", SSECustomerKey=b64(KEY),
                   SSECustomerKeyMD5=key_md5(OTHER_KEY)) == (400, "InvalidArgument")
    # The same call with the right MD5 is accepted, so it is the MD5 that was refused.
    put = s3_https.put_object(Bucket=tls_bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES256",
                              SSECustomerKey=b64(KEY), SSECustomerKeyMD5=key_md5(KEY))
    assert put["SSECustomerKeyMD5"] == key_md5(KEY)


def test_ssec_other_algorithm_is_refused(s3_https, tls_bucket):
    status, code = refusal(s3_https.put_object, Bucket=tls_bucket, Key="k", Body=b"x",
                           SSECustomerAlgorithm="AES128", SSECustomerKey=KEY)
    assert status == 400
    assert code in ("InvalidEncryptionAlgorithmError", "InvalidArgument")


@pytest.mark.parametrize("size", [10_000, 1300 * KiB + 123], ids=["10KB", "1.3MiB"])
def test_ssec_ranged_reads(s3_https, tls_bucket, size):
    """Ranges decrypt to the plaintext's slices, including across 64 KiB and 256 KiB blocks."""
    data = random_bytes(size)
    s3_https.put_object(Bucket=tls_bucket, Key="r", Body=data, **ssec())
    specs = ["0-0", "0-99", f"{size // 2}-{size // 2 + 17}", f"{size - 1}-{size - 1}", "-1",
             "-500", f"{size - 700}-", f"1-{size - 2}"]
    if size > 4 * BLOCK:
        specs += [f"{64 * KiB - 3}-{64 * KiB + 3}", f"{BLOCK - 10}-{BLOCK + 10}",
                  f"{BLOCK}-{2 * BLOCK - 1}", f"{BLOCK - 1}-{3 * BLOCK}",
                  f"{4 * BLOCK - 1}-{4 * BLOCK}", f"{3 * BLOCK + 5}-"]
    assert_ranges(s3_https, tls_bucket, "r", data, specs, **ssec())


def test_ssec_overrides_the_bucket_default(s3_https, tls_bucket):
    """An explicit customer key wins over the bucket's SSE-S3 default, as in S3."""
    s3_https.put_bucket_encryption(Bucket=tls_bucket,
                                   ServerSideEncryptionConfiguration=AES256_DEFAULT)
    put = s3_https.put_object(Bucket=tls_bucket, Key="obj", Body=b"mine", **ssec())
    assert put["SSECustomerKeyMD5"] == key_md5(KEY)
    assert refusal(s3_https.get_object, Bucket=tls_bucket, Key="obj") == (400, "InvalidRequest")
    assert s3_https.get_object(Bucket=tls_bucket, Key="obj", **ssec())["Body"].read() == b"mine"


# --------------------------------------------------------------------------- SSE-C multipart


def test_ssec_multipart(s3_https, tls_bucket):
    """Every part must carry the upload's key; the completed object reads back with it."""
    s3, key = s3_https, "mp"
    parts = [random_bytes(5 * MiB), random_bytes(5 * MiB), random_bytes(1000)]
    create = s3.create_multipart_upload(Bucket=tls_bucket, Key=key, **ssec())
    assert (create["SSECustomerAlgorithm"], create["SSECustomerKeyMD5"]) == ("AES256",
                                                                             key_md5(KEY))
    upload = create["UploadId"]
    try:
        def part(n: int, **params):
            return s3.upload_part(Bucket=tls_bucket, Key=key, UploadId=upload, PartNumber=n,
                                  Body=parts[n - 1], **params)

        assert refusal(part, n=1) == (400, "InvalidRequest")
        assert refusal(part, n=1, **ssec(OTHER_KEY))[0] in (400, 403)
        answers = [part(n, **ssec()) for n in (1, 2, 3)]
        assert all(a["SSECustomerKeyMD5"] == key_md5(KEY) for a in answers)
        # The parts' ETags and checksums are listed only with the upload's key.
        listing = {"Bucket": tls_bucket, "Key": key, "UploadId": upload}
        assert refusal(s3.list_parts, **listing) == (400, "InvalidRequest")
        assert refusal(s3.list_parts, **listing, **ssec_encoded(OTHER_KEY)) == (
            403, "AccessDenied")
        listed = s3.list_parts(**listing, **ssec_encoded())["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in listed] == [
            (n, a["ETag"]) for n, a in enumerate(answers, 1)]
        s3.complete_multipart_upload(Bucket=tls_bucket, Key=key, UploadId=upload,
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": n, "ETag": a["ETag"]}
                                         for n, a in enumerate(answers, 1)]})
    except BaseException:
        s3.abort_multipart_upload(Bucket=tls_bucket, Key=key, UploadId=upload)
        raise

    data = b"".join(parts)
    got = s3.get_object(Bucket=tls_bucket, Key=key, **ssec())
    assert got["Body"].read() == data
    assert got["ETag"].endswith('-3"')
    assert got["SSECustomerKeyMD5"] == key_md5(KEY)
    assert refusal(s3.get_object, Bucket=tls_bucket, Key=key) == (400, "InvalidRequest")
    assert_ranges(s3, tls_bucket, key, data, [
        f"{5 * MiB - 100}-{5 * MiB + 100}", f"{10 * MiB - 1}-{10 * MiB}",
        f"{5 * MiB - 1}-{10 * MiB + 10}", f"{len(data) - 1}-", "0-0"], **ssec())
    for n in (1, 2, 3):
        got = s3.get_object(Bucket=tls_bucket, Key=key, PartNumber=n, **ssec())
        assert got["Body"].read() == parts[n - 1], f"part {n}"


# --------------------------------------------------------------------------- copies


def test_copy_from_ssec_source_needs_its_key(s3_https, tls_bucket):
    """The source's key is needed to read it; the copy may be stored as SSE-S3."""
    s3, data = s3_https, random_bytes(300 * KiB)
    s3.put_object(Bucket=tls_bucket, Key="src", Body=data, **ssec())
    source = {"Bucket": tls_bucket, "Key": "src"}
    assert refusal(s3.copy_object, Bucket=tls_bucket, Key="dst", CopySource=source,
                   **SSE_S3) == (400, "InvalidRequest")
    copied = s3.copy_object(Bucket=tls_bucket, Key="dst", CopySource=source,
                            **copy_source_ssec(), **SSE_S3)
    assert copied["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=tls_bucket, Key="dst")
    assert (got["ServerSideEncryption"], got["Body"].read()) == ("AES256", data)


def test_copy_from_sse_s3_to_ssec(s3_https, tls_bucket):
    s3, data = s3_https, random_bytes(300 * KiB)
    s3.put_object(Bucket=tls_bucket, Key="src", Body=data, **SSE_S3)
    copied = s3.copy_object(Bucket=tls_bucket, Key="dst",
                            CopySource={"Bucket": tls_bucket, "Key": "src"}, **ssec())
    assert copied["SSECustomerKeyMD5"] == key_md5(KEY)
    assert refusal(s3.get_object, Bucket=tls_bucket, Key="dst") == (400, "InvalidRequest")
    assert s3.get_object(Bucket=tls_bucket, Key="dst", **ssec())["Body"].read() == data


def test_copy_rotates_the_customer_key(s3_https, tls_bucket):
    """Copying an SSE-C object onto itself with a new key is how S3 users rotate keys."""
    s3, data = s3_https, random_bytes(300 * KiB)
    s3.put_object(Bucket=tls_bucket, Key="obj", Body=data, **ssec(KEY))
    s3.copy_object(Bucket=tls_bucket, Key="obj", CopySource={"Bucket": tls_bucket, "Key": "obj"},
                   **copy_source_ssec(KEY), **ssec(OTHER_KEY))
    assert s3.get_object(Bucket=tls_bucket, Key="obj", **ssec(OTHER_KEY))["Body"].read() == data
    assert refusal(s3.get_object, Bucket=tls_bucket, Key="obj", **ssec(KEY))[0] == 403


def test_upload_part_copy_between_ssec_objects(s3_https, tls_bucket):
    """A part copied from an SSE-C source (its key) into an SSE-C upload (another key)."""
    s3 = s3_https
    source = random_bytes(6 * MiB)
    tail = random_bytes(1000)
    s3.put_object(Bucket=tls_bucket, Key="src", Body=source, **ssec(KEY))
    upload = s3.create_multipart_upload(Bucket=tls_bucket, Key="dst", **ssec(OTHER_KEY))["UploadId"]
    try:
        def copy_part(**params):
            return s3.upload_part_copy(Bucket=tls_bucket, Key="dst", UploadId=upload,
                                       PartNumber=1, CopySource={"Bucket": tls_bucket, "Key": "src"},
                                       CopySourceRange=f"bytes=100-{5 * MiB + 99}", **params)

        assert refusal(copy_part, **ssec(OTHER_KEY)) == (400, "InvalidRequest")
        first = copy_part(**copy_source_ssec(KEY), **ssec(OTHER_KEY))["CopyPartResult"]["ETag"]
        second = s3.upload_part(Bucket=tls_bucket, Key="dst", UploadId=upload, PartNumber=2,
                                Body=tail, **ssec(OTHER_KEY))["ETag"]
        s3.complete_multipart_upload(Bucket=tls_bucket, Key="dst", UploadId=upload,
                                     MultipartUpload={"Parts": [
                                         {"PartNumber": 1, "ETag": first},
                                         {"PartNumber": 2, "ETag": second}]})
    except BaseException:
        s3.abort_multipart_upload(Bucket=tls_bucket, Key="dst", UploadId=upload)
        raise
    got = s3.get_object(Bucket=tls_bucket, Key="dst", **ssec(OTHER_KEY))["Body"].read()
    assert got == source[100: 5 * MiB + 100] + tail


# --------------------------------------------------------------------------- at rest


def files_containing(root: Path, needle: bytes) -> list[Path]:
    """Every file below root whose bytes contain needle (files vanishing meanwhile are skipped:
    RocksDB compacts as it likes)."""
    found = []
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            try:
                with open(path, "rb") as f:
                    carry = b""
                    while chunk := f.read(4 * MiB):
                        if needle in carry + chunk:
                            found.append(path)
                            break
                        carry = chunk[-(len(needle) - 1):]
            except OSError:
                continue
    return found


def test_encrypted_bytes_are_not_on_disk_in_the_clear(cluster_https, s3_https, tls_bucket):
    """Objects past the inline threshold land in fragment files: an encrypted one must not show
    its plaintext there, while a plain one does (the control that lets this test fail)."""
    s3, tag = s3_https, secrets.token_hex(6)
    markers = {kind: f"TESSERA-PLAINTEXT-MARKER-{kind}-{tag}|".encode()
               for kind in ("sse-s3", "sse-c", "plain")}
    bodies = {kind: marker * (480_000 // len(marker)) for kind, marker in markers.items()}
    s3.put_object(Bucket=tls_bucket, Key="sse-s3", Body=bodies["sse-s3"], **SSE_S3)
    s3.put_object(Bucket=tls_bucket, Key="sse-c", Body=bodies["sse-c"], **ssec())
    s3.put_object(Bucket=tls_bucket, Key="plain", Body=bodies["plain"])

    deadline = time.monotonic() + 30
    while not files_containing(cluster_https.data_dir, markers["plain"]):
        assert time.monotonic() < deadline, \
            f"control: the plain object's bytes were found nowhere under {cluster_https.data_dir}"
        time.sleep(1)
    for kind in ("sse-s3", "sse-c"):
        assert files_containing(cluster_https.data_dir, markers[kind]) == [], \
            f"{kind} object's plaintext found on disk"
    assert s3.get_object(Bucket=tls_bucket, Key="sse-s3")["Body"].read() == bodies["sse-s3"]
    assert s3.get_object(Bucket=tls_bucket, Key="sse-c", **ssec())["Body"].read() == bodies["sse-c"]


# --------------------------------------------------------------------------- node loss


KILLED_NODES = ["z1-n1", "z2-n2"]  # two zones: 4+2 erasure coding survives both


@pytest.fixture(scope="module")
def sse_fault_cluster(tmp_path_factory):
    """A TLS cluster of its own: its nodes are killed."""
    cluster = start_cluster(tmp_path_factory, "sse-faults", tls=True)
    yield cluster
    cluster.stop()


def test_encrypted_objects_survive_dead_nodes(sse_fault_cluster):
    """Encrypted objects decode from the surviving fragments and decrypt as before."""
    cluster = sse_fault_cluster
    s3 = cluster.client()
    encrypted = EncryptedObjects(s3, "sse-fault", {"sse-c": 1 * MiB + 17, "sse-c-small": 2 * KiB,
                                                   "sse-s3": 1 * MiB + 17})
    try:
        for node_id in KILLED_NODES:
            cluster.kill_node(node_id)
        assert encrypted.wrong() == [], f"read back wrong with {KILLED_NODES} dead"
        data = encrypted.objects["sse-c"]
        span = encrypted.read("sse-c", Range=f"bytes={BLOCK - 5}-{BLOCK + 5}")
        assert span == data[BLOCK - 5: BLOCK + 6]
    finally:
        for node_id in KILLED_NODES:
            if not cluster.node_alive(node_id):
                cluster.start_node(node_id)
    assert encrypted.wrong() == [], "read back wrong after the restart"


class EncryptedObjects:
    """Objects of random bytes in a new bucket: SSE-C for keys starting `sse-c`, else SSE-S3."""

    def __init__(self, s3, prefix: str, sizes: dict[str, int]):
        self.s3, self.bucket = s3, unique_bucket(prefix)
        s3.create_bucket(Bucket=self.bucket)
        self.objects = {key: random_bytes(size) for key, size in sizes.items()}
        for key, data in self.objects.items():
            s3.put_object(Bucket=self.bucket, Key=key, Body=data, **self.params(key))

    @staticmethod
    def params(key: str) -> dict:
        return ssec() if key.startswith("sse-c") else SSE_S3

    def read(self, key: str, **extra) -> bytes:
        key_params = ssec() if key.startswith("sse-c") else {}
        answer = self.s3.get_object(Bucket=self.bucket, Key=key, **key_params, **extra)
        return answer["Body"].read()

    def wrong(self) -> list[str]:
        """The keys that do not read back as written."""
        return [key for key, data in self.objects.items() if self.read(key) != data]


def test_encrypted_objects_heal_onto_a_replaced_node(sse_fault_cluster):
    """A node whose disk is replaced gets its fragments of encrypted objects back from a heal,
    which rebuilds ciphertext without any key; with it, any two other nodes may then fail."""
    cluster = sse_fault_cluster
    encrypted = EncryptedObjects(cluster.client(), "sse-heal", {
        "sse-c": 3 * MiB + 5, "sse-c-inline": 20 * KiB, "sse-s3": 3 * MiB + 5})
    replaced = "z3-n2"
    cluster.kill_node(replaced)
    shutil.rmtree(cluster.node_dir(replaced))
    cluster.node_dir(replaced).mkdir()  # the new, empty disk
    cluster.start_node(replaced)
    wait_for_heal(cluster, replaced)
    rebuilt = [f for f in cluster.fragments_dir(replaced).rglob("*") if f.is_file()]
    assert len(rebuilt) >= 2, "the heal rebuilt the two large objects' fragment files"

    others = ["z1-n1", "z2-n1"]
    try:
        for node_id in others:
            cluster.kill_node(node_id)
        assert encrypted.wrong() == [], "read back wrong from the healed node and three others"
    finally:
        for node_id in others:
            if not cluster.node_alive(node_id):
                cluster.start_node(node_id)


def wait_for_heal(cluster, node: str, timeout: float = 120) -> None:
    """Starts a heal of `node` (unless one runs) and waits until a heal of it has finished."""
    def admin(method: str) -> dict:
        query = f"node={node}" if method == "POST" else ""
        answer = signed_request(cluster, method, "/_tessera/heal", {}, query=query)
        assert answer.status in (200, 202, 400), answer.body
        return json.loads(answer.body) if answer.status != 400 else {}
    deadline = time.monotonic() + timeout
    started = False
    while time.monotonic() < deadline:
        progress = admin("GET") or {}
        if started and progress.get("node") == node and not progress.get("running"):
            return
        if not progress.get("running"):
            started = started or bool(admin("POST"))
        time.sleep(0.5)
    raise AssertionError(f"no heal of {node} finished within {timeout} s")


# --------------------------------------------------------------------------- aws CLI


@pytest.fixture(params=["v1", "v2"])
def aws_https(request, cluster_https, make_aws):
    return make_aws(request.param, cluster_https)


def test_awscli_sse_s3(aws_https, s3_https, tls_bucket, tmp_path):
    """`s3api put-object --server-side-encryption` and `s3 cp --sse` both store SSE-S3."""
    data = random_bytes(300 * KiB)
    src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
    src.write_bytes(data)
    put = json.loads(aws_https.run("s3api", "put-object", "--bucket", tls_bucket, "--key", "api",
                                   "--body", src, "--server-side-encryption",
                                   "AES256").stdout)
    assert put["ServerSideEncryption"] == "AES256"
    aws_https.run("s3", "cp", src, f"s3://{tls_bucket}/cp", "--sse", "AES256")
    for key in ("api", "cp"):
        assert s3_https.head_object(Bucket=tls_bucket, Key=key)["ServerSideEncryption"] == "AES256"
    aws_https.run("s3", "cp", f"s3://{tls_bucket}/cp", dst)
    assert dst.read_bytes() == data


def test_awscli_sse_c_round_trip(aws_https, s3_https, tls_bucket, tmp_path):
    """`s3 cp --sse-c` up (multipart: past the CLI's 8 MiB threshold) and down (ranged GETs)."""
    key = secrets.token_hex(16)  # 32 characters: the CLI sends them as the 32-byte key
    data = random_bytes(9 * MiB + 5)
    src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
    src.write_bytes(data)
    aws_https.run("s3", "cp", src, f"s3://{tls_bucket}/ssec", "--sse-c", "AES256",
                  "--sse-c-key", key)
    head = s3_https.head_object(Bucket=tls_bucket, Key="ssec", **ssec(key.encode()))
    assert head["ContentLength"] == len(data)
    assert head["SSECustomerKeyMD5"] == key_md5(key.encode())
    assert aws_https.run("s3", "cp", f"s3://{tls_bucket}/ssec", tmp_path / "nokey.bin",
                         check=False).returncode != 0
    aws_https.run("s3", "cp", f"s3://{tls_bucket}/ssec", dst, "--sse-c", "AES256",
                  "--sse-c-key", key)
    assert dst.read_bytes() == data


def test_awscli_bucket_encryption(aws_https, s3_https, tls_bucket, tmp_path):
    """put-bucket-encryption is read back by get-bucket-encryption, and an object uploaded by
    `s3 cp` without asking is then SSE-S3."""
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    aws_https.run("s3api", "put-bucket-encryption", "--bucket", tls_bucket,
                  "--server-side-encryption-configuration", json.dumps(config))
    got = json.loads(aws_https.run("s3api", "get-bucket-encryption", "--bucket",
                                   tls_bucket).stdout)
    rules = got["ServerSideEncryptionConfiguration"]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"] for r in rules] == [{"SSEAlgorithm": "AES256"}]
    data = random_bytes(100 * KiB)
    src, dst = tmp_path / "up.bin", tmp_path / "down.bin"
    src.write_bytes(data)
    aws_https.run("s3", "cp", src, f"s3://{tls_bucket}/by-default")
    head = json.loads(aws_https.run("s3api", "head-object", "--bucket", tls_bucket, "--key",
                                    "by-default").stdout)
    assert head["ServerSideEncryption"] == "AES256"
    aws_https.run("s3", "cp", f"s3://{tls_bucket}/by-default", dst)
    assert dst.read_bytes() == data
