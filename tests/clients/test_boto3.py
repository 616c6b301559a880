"""boto3 against a real `tessera dev` cluster, once over http and once over https."""

from __future__ import annotations

import datetime
import hashlib
import time
import urllib.parse
from unittest import mock

import botocore.httpchecksum
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HAS_CRT
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.handlers import set_list_objects_encoding_type_url

from conftest import empty_and_delete_bucket
from helpers import (KiB, MiB, checksum_b64, error_code, http_status, quoted_md5,
                     random_bytes, raw_request, unique_bucket, b64)

OBJECT_SIZES = [0, 1, 4 * KiB, 64 * KiB, 64 * KiB + 1, 5 * MiB + 123]


def assert_client_error(excinfo, codes, status):
    codes = (codes,) if isinstance(codes, str) else codes
    assert error_code(excinfo.value) in codes, excinfo.value.response
    assert http_status(excinfo.value) == status, excinfo.value.response


def assert_missing(s3, bucket, key):
    with pytest.raises(ClientError) as excinfo:
        s3.head_object(Bucket=bucket, Key=key)
    assert http_status(excinfo.value) == 404


def get_bytes(s3, bucket, key, **kwargs) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()


def list_all_keys(s3, bucket, **kwargs) -> list[str]:
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kwargs):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


# --------------------------------------------------------------------------- buckets


def test_bucket_lifecycle(s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    try:
        s3.head_bucket(Bucket=name)
        assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]

        with pytest.raises(ClientError) as excinfo:
            s3.create_bucket(Bucket=name)
        assert_client_error(excinfo, "BucketAlreadyOwnedByYou", 409)

        s3.put_object(Bucket=name, Key="k", Body=b"x")
        with pytest.raises(ClientError) as excinfo:
            s3.delete_bucket(Bucket=name)
        assert_client_error(excinfo, "BucketNotEmpty", 409)
        s3.head_bucket(Bucket=name)  # still there

        s3.delete_object(Bucket=name, Key="k")
        s3.delete_bucket(Bucket=name)
    finally:
        empty_and_delete_bucket(s3, name)

    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as excinfo:
        s3.head_bucket(Bucket=name)
    assert http_status(excinfo.value) == 404


@pytest.mark.parametrize("operation", ["list_objects_v2", "delete_bucket", "put_object", "get_object"])
def test_no_such_bucket(s3, operation):
    name = unique_bucket("missing")
    kwargs = {"Bucket": name}
    if operation in ("put_object", "get_object"):
        kwargs["Key"] = "k"
    if operation == "put_object":
        kwargs["Body"] = b"data"
    with pytest.raises(ClientError) as excinfo:
        getattr(s3, operation)(**kwargs)
    assert_client_error(excinfo, "NoSuchBucket", 404)


# --------------------------------------------------------------------------- objects


@pytest.mark.parametrize("size", OBJECT_SIZES)
def test_object_roundtrip(s3, bucket, size):
    data = random_bytes(size)
    key = f"obj-{size}"
    put = s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert put["ETag"] == quoted_md5(data)

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["ETag"] == quoted_md5(data)

    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["ContentLength"] == size
    assert got["ETag"] == quoted_md5(data)
    assert got["Body"].read() == data

    s3.delete_object(Bucket=bucket, Key=key)
    assert_missing(s3, bucket, key)


def test_overwrite_replaces_content(s3, bucket):
    first, second = random_bytes(70 * KiB), random_bytes(3 * KiB)
    s3.put_object(Bucket=bucket, Key="k", Body=first)
    s3.put_object(Bucket=bucket, Key="k", Body=second)
    assert get_bytes(s3, bucket, "k") == second


def test_no_such_key(s3, bucket):
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="does/not/exist")
    assert_client_error(excinfo, "NoSuchKey", 404)
    assert_missing(s3, bucket, "does/not/exist")


def expected_range(header: str, size: int) -> tuple[int, int]:
    """(first, last) byte offsets, inclusive, that `header` selects."""
    spec = header.removeprefix("bytes=")
    start, end = spec.split("-")
    if start == "":
        return max(size - int(end), 0), size - 1
    return int(start), min(int(end) if end else size - 1, size - 1)


RANGES = ["bytes=0-0", "bytes=1000-2999", "bytes=-100", "bytes=100-", "bytes=50-{past_end}"]


@pytest.mark.parametrize("size", [4 * KiB, 5 * MiB + 123], ids=["inline", "erasure-coded"])
@pytest.mark.parametrize("range_template", RANGES)
def test_byte_ranges(s3, bucket, size, range_template):
    data = random_bytes(size)
    s3.put_object(Bucket=bucket, Key="ranged", Body=data)
    header = range_template.format(past_end=size + 10_000)
    first, last = expected_range(header, size)

    resp = s3.get_object(Bucket=bucket, Key="ranged", Range=header)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert resp["ContentRange"] == f"bytes {first}-{last}/{size}"
    assert resp["ContentLength"] == last - first + 1
    assert resp["Body"].read() == data[first:last + 1]


def test_unsatisfiable_range(s3, bucket):
    s3.put_object(Bucket=bucket, Key="small", Body=random_bytes(100))
    with pytest.raises(ClientError) as excinfo:
        s3.get_object(Bucket=bucket, Key="small", Range="bytes=999999999-")
    assert_client_error(excinfo, "InvalidRange", 416)


# --------------------------------------------------------------------------- listing


def test_list_paging_exact_sequence(s3, bucket):
    keys = sorted({f"p{i % 7}/{i:04d}-{random_bytes(2).hex()}" for i in range(120)} | {"z", "a"})
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    seen, token, pages = [], None, 0
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket=bucket, MaxKeys=17, **kwargs)
        contents = [o["Key"] for o in page.get("Contents", [])]
        assert len(contents) <= 17
        assert page["KeyCount"] == len(contents)
        seen += contents
        pages += 1
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
        assert pages < 50, "paging does not terminate"
    assert seen == keys
    assert pages == -(-len(keys) // 17)

    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert sizes == {k: len(k.encode()) for k in keys}


def test_list_prefix_and_delimiter(s3, bucket):
    keys = ["a/1", "a/2", "a/sub/x", "a/sub/y", "b/deep/1", "c", "d.txt", "ab"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")

    def listing(**kwargs):
        resp = s3.list_objects_v2(Bucket=bucket, **kwargs)
        return ([o["Key"] for o in resp.get("Contents", [])],
                [p["Prefix"] for p in resp.get("CommonPrefixes", [])])

    assert listing(Delimiter="/") == (["ab", "c", "d.txt"], ["a/", "b/"])
    assert listing(Prefix="a/", Delimiter="/") == (["a/1", "a/2"], ["a/sub/"])
    assert listing(Prefix="a") == (["a/1", "a/2", "a/sub/x", "a/sub/y", "ab"], [])
    assert listing(Prefix="nothing") == ([], [])

    # Paging one entry at a time must give the same contents and prefixes.
    keys_paged, prefixes_paged = [], []
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 1}):
        keys_paged += [o["Key"] for o in page.get("Contents", [])]
        prefixes_paged += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    assert (keys_paged, prefixes_paged) == (["ab", "c", "d.txt"], ["a/", "b/"])


ODD_KEYS = [
    "with space",
    "unicodé/日本語/ключ",
    "emoji-😀",
    "plus+sign",
    "percent%20literal%",
    "question?mark",
    "hash#tag",
    "double//slash",
    "trailing space ",
    "amp&equals=semi;colon",
    "tilde~star*quote'",
    "brackets[](){}<>",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_key_roundtrip(s3, bucket, key):
    data = random_bytes(300)
    s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert get_bytes(s3, bucket, key) == data
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == 300
    assert list_all_keys(s3, bucket) == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert_missing(s3, bucket, key)


def test_odd_keys_list_back_exactly(cluster, s3, bucket):
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    # botocore asks for EncodingType=url and decodes the keys itself ...
    assert list_all_keys(s3, bucket) == sorted(ODD_KEYS)
    # ... and without that the keys come back as plain XML text.
    plain = cluster.client()
    plain.meta.events.unregister("before-parameter-build.s3.ListObjectsV2",
                                 set_list_objects_encoding_type_url)
    resp = plain.list_objects_v2(Bucket=bucket)
    assert "EncodingType" not in resp
    assert [o["Key"] for o in resp["Contents"]] == sorted(ODD_KEYS)


# --------------------------------------------------------------------------- metadata


def test_metadata_and_content_type(s3, bucket):
    metadata = {"color": "blue", "multi-word-key": "Mixed Case value"}
    s3.put_object(Bucket=bucket, Key="meta", Body=b"m", Metadata=metadata,
                  ContentType="application/x-tessera-test; charset=utf-8")
    for resp in (s3.head_object(Bucket=bucket, Key="meta"), s3.get_object(Bucket=bucket, Key="meta")):
        assert resp["Metadata"] == metadata
        assert resp["ContentType"] == "application/x-tessera-test; charset=utf-8"


# --------------------------------------------------------------------------- checksums


def capture_put_headers(s3):
    """Record the headers of each PutObject as actually sent."""
    sent = []

    def hook(request, **_):
        sent.append(dict(request.headers))

    s3.meta.events.register("before-send.s3.PutObject", hook)
    return sent, lambda: s3.meta.events.unregister("before-send.s3.PutObject", hook)


def header(headers: dict, name: str):
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value.decode() if isinstance(value, bytes) else value
    return None


@pytest.mark.parametrize("size", [10 * KiB, 200 * KiB])
def test_default_crc32_checksum(cluster, s3, bucket, size):
    data = random_bytes(size)
    sent, unregister = capture_put_headers(s3)
    try:
        s3.put_object(Bucket=bucket, Key="crc", Body=data)
    finally:
        unregister()
    assert sent, "PutObject was not sent"
    if cluster.scheme == "http":
        assert header(sent[-1], "x-amz-checksum-crc32") == checksum_b64("CRC32", data)
    else:
        assert header(sent[-1], "x-amz-trailer") == "x-amz-checksum-crc32"
        assert "aws-chunked" in (header(sent[-1], "content-encoding") or "")
    assert get_bytes(s3, bucket, "crc") == data


def botocore_can_compute(algorithm: str) -> bool:
    name = algorithm.lower()
    return name in botocore.httpchecksum._CHECKSUM_CLS or (
        HAS_CRT and name in getattr(botocore.httpchecksum, "_CRT_CHECKSUM_CLS", {}))


ALGORITHMS = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_algorithm_computed_by_botocore(s3, bucket, algorithm):
    if not botocore_can_compute(algorithm):
        pytest.skip(f"botocore here cannot compute {algorithm} (needs awscrt)")
    data = random_bytes(100 * KiB + 7)
    s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm=algorithm)
    assert get_bytes(s3, bucket, "k") == data


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_value_precomputed(s3, bucket, algorithm):
    """Explicit x-amz-checksum-* header (computed here, so no awscrt needed)."""
    data = random_bytes(20 * KiB + 3)
    s3.put_object(Bucket=bucket, Key="k", Body=data,
                  **{f"Checksum{algorithm}": checksum_b64(algorithm, data)})
    assert get_bytes(s3, bucket, "k") == data


def test_wrong_content_md5_rejected(s3, bucket):
    data = random_bytes(1000)
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="bad-md5", Body=data,
                      ContentMD5=b64(hashlib.md5(b"something else").digest()))
    assert_client_error(excinfo, "BadDigest", 400)
    assert_missing(s3, bucket, "bad-md5")


@pytest.mark.parametrize("algorithm,bad_value", [
    ("CRC32", "AAAAAA=="),
    ("SHA256", b64(hashlib.sha256(b"not the body").digest())),
])
@pytest.mark.parametrize("size", [1000, 100 * KiB])
def test_wrong_checksum_rejected(s3, bucket, algorithm, bad_value, size):
    data = random_bytes(size)
    with pytest.raises(ClientError) as excinfo:
        s3.put_object(Bucket=bucket, Key="bad-sum", Body=data, **{f"Checksum{algorithm}": bad_value})
    assert_client_error(excinfo, ("BadDigest", "InvalidRequest"), 400)
    assert_missing(s3, bucket, "bad-sum")


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize("credentials,code", [
    ("wrong-secret", "SignatureDoesNotMatch"),
    ("unknown-key", "InvalidAccessKeyId"),
])
def test_bad_credentials_rejected(cluster, bucket, credentials, code):
    if credentials == "wrong-secret":
        client = cluster.client(secret_key=cluster.secret_key + "x")
    else:
        client = cluster.client(access_key="AKIDUNKNOWN0000000000")
    for call in (lambda: client.list_buckets(),
                 lambda: client.put_object(Bucket=bucket, Key="intruder", Body=b"x")):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert_client_error(excinfo, code, 403)
    assert_missing(cluster.client(), bucket, "intruder")


@pytest.mark.parametrize("method,path_template", [
    ("GET", "/"),
    ("GET", "/{bucket}"),
    ("GET", "/{bucket}/existing"),
    ("PUT", "/{bucket}/unsigned-put"),
    ("DELETE", "/{bucket}/existing"),
])
def test_unsigned_request_denied(cluster, s3, bucket, method, path_template):
    s3.put_object(Bucket=bucket, Key="existing", Body=b"secret")
    url = cluster.endpoint + path_template.format(bucket=bucket)
    resp = raw_request(url, method=method, data=b"x" if method == "PUT" else None,
                       ca_bundle=cluster.ca_bundle)
    assert resp.status == 403
    assert resp.error_code == "AccessDenied"
    assert b"secret" not in resp.body
    assert get_bytes(s3, bucket, "existing") == b"secret"
    assert_missing(s3, bucket, "unsigned-put")


def presign(s3, method, bucket, key, expires=300):
    return s3.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key},
                                     ExpiresIn=expires)


def test_presigned_get(cluster, s3, bucket):
    data = random_bytes(100 * KiB)
    s3.put_object(Bucket=bucket, Key="dir/pre signed+get", Body=data)
    resp = raw_request(presign(s3, "get_object", bucket, "dir/pre signed+get"),
                       ca_bundle=cluster.ca_bundle)
    assert resp.status == 200
    assert resp.body == data


RESPONSE_OVERRIDES = {
    "ResponseCacheControl": ("Cache-Control", "no-store"),
    "ResponseContentDisposition": ("Content-Disposition", 'attachment; filename="r\u00e9sum\u00e9.pdf"'),
    "ResponseContentEncoding": ("Content-Encoding", "identity"),
    "ResponseContentLanguage": ("Content-Language", "fr-CA"),
    "ResponseContentType": ("Content-Type", "text/plain; charset=utf-8"),
    "ResponseExpires": ("Expires", "Thu, 01 Dec 1994 16:00:00 GMT"),
}


def test_all_six_response_overrides(s3, bucket):
    """GetObject's response-* parameters replace the stored headers, as S3 does (minio-py's
    functional tests use all six)."""
    s3.put_object(Bucket=bucket, Key="o", Body=b"body", ContentType="application/x-stored",
                  CacheControl="max-age=60")
    params = {name: value for name, (_, value) in RESPONSE_OVERRIDES.items()}
    for call in (s3.get_object, s3.head_object):
        headers = call(Bucket=bucket, Key="o", **params)["ResponseMetadata"]["HTTPHeaders"]
        for header, value in RESPONSE_OVERRIDES.values():
            got = headers.get(header.lower())
            # Non-ASCII goes out as the UTF-8 bytes it came in; http.client reads them as Latin-1.
            assert got is not None and got.encode("latin-1").decode("utf-8") == value, (header, got)


@pytest.mark.parametrize("value", ["a%0Ab", "a%0D%0AX-Injected:%201", "a%00b"])
def test_control_characters_in_a_response_override_are_refused(cluster, s3, bucket, value):
    """A presigned GET whose response-content-type holds a control character gets a 400, and the
    gateway goes on serving (it used to panic a worker thread and leave the client waiting)."""
    s3.put_object(Bucket=bucket, Key="o", Body=b"body")
    # The bad value is signed: a URL edited after signing would fail the signature first.
    bad = urllib.parse.unquote(value)
    url = s3.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": "o", "ResponseContentType": bad}, ExpiresIn=300)
    resp = raw_request(url, ca_bundle=cluster.ca_bundle, timeout=10)
    assert resp.status == 400, (resp.status, resp.body)
    assert resp.error_code == "InvalidArgument"
    assert "Injected" not in str(resp.headers)
    assert get_bytes(s3, bucket, "o") == b"body"


def test_presigned_put(cluster, s3, bucket):
    data = random_bytes(70 * KiB)
    resp = raw_request(presign(s3, "put_object", bucket, "uploaded via url"), method="PUT",
                       data=data, ca_bundle=cluster.ca_bundle)
    assert resp.status == 200, resp.body
    assert get_bytes(s3, bucket, "uploaded via url") == data


def tamper_signature(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query)
    query = [(k, (v[:-1] + ("0" if v[-1] != "0" else "1")) if k == "X-Amz-Signature" else v)
             for k, v in query]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def tamper_key(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=parts.path + "-other"))


def tamper_expiry(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, "604800" if k == "X-Amz-Expires" else v)
             for k, v in urllib.parse.parse_qsl(parts.query)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@pytest.mark.parametrize("tamper", [tamper_signature, tamper_key, tamper_expiry])
def test_tampered_presigned_url_denied(cluster, s3, bucket, tamper):
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    s3.put_object(Bucket=bucket, Key="k-other", Body=b"other private")
    resp = raw_request(tamper(presign(s3, "get_object", bucket, "k")), ca_bundle=cluster.ca_bundle)
    assert resp.status == 403
    assert b"private" not in resp.body


def test_expired_presigned_url_denied(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    url = presign(s3, "get_object", bucket, "k", expires=1)
    time.sleep(2.5)
    resp = raw_request(url, ca_bundle=cluster.ca_bundle)
    # S3's answer, as for SigV2 URLs (test_sigv2.py).
    assert (resp.status, resp.error_code) == (403, "AccessDenied")
    assert b"Request has expired" in resp.body
    assert b"private" not in resp.body


def sigv4_headers(cluster, method: str, url: str, secret: str,
                  when: datetime.datetime) -> dict:
    """The headers botocore's S3 signer gives a request (SigV4 in the Authorization header),
    signed with `secret` at `when` (naive UTC) as a client whose clock says `when` signs it."""
    request = AWSRequest(method=method, url=url)
    signer = S3SigV4Auth(Credentials(cluster.access_key, secret), "s3", cluster.region)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        signer.add_auth(request)
    return dict(request.headers.items())


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@pytest.mark.parametrize("minutes", [-20, 20])
def test_sigv4_clock_skew_beyond_15_minutes_is_refused(cluster, s3, bucket, minutes):
    """A correctly signed request whose x-amz-date is 20 minutes off: 403 RequestTimeTooSkewed,
    as S3 answers; 10 minutes off is within S3's 15 and is served."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    url = f"{cluster.endpoint}/{bucket}/k"
    skewed = sigv4_headers(cluster, "GET", url, cluster.secret_key,
                           utc_now() + datetime.timedelta(minutes=minutes))
    resp = raw_request(url, headers=skewed, ca_bundle=cluster.ca_bundle)
    assert (resp.status, resp.error_code) == (403, "RequestTimeTooSkewed"), resp.body
    assert b"private" not in resp.body
    within = sigv4_headers(cluster, "GET", url, cluster.secret_key,
                           utc_now() + datetime.timedelta(minutes=minutes / 2))
    resp = raw_request(url, headers=within, ca_bundle=cluster.ca_bundle)
    assert (resp.status, resp.body) == (200, b"private")


def test_sigv4_signature_mismatch_does_not_reveal_the_expected_signature(cluster, s3, bucket):
    """SignatureDoesNotMatch, in the header and in a presigned URL, says nothing of the
    signature the gateway expected (as the SigV2 test asserts, test_sigv2.py)."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"private")
    url = f"{cluster.endpoint}/{bucket}/k"
    when = utc_now()
    right = sigv4_headers(cluster, "GET", url, cluster.secret_key, when)
    wrong = sigv4_headers(cluster, "GET", url, cluster.secret_key + "x", when)
    expected = right["Authorization"].rsplit("Signature=", 1)[1]
    assert expected != wrong["Authorization"].rsplit("Signature=", 1)[1]
    resp = raw_request(url, headers=wrong, ca_bundle=cluster.ca_bundle)
    assert (resp.status, resp.error_code) == (403, "SignatureDoesNotMatch")
    assert expected.encode() not in resp.body
    assert b"<StringToSign" not in resp.body and b"SignatureProvided" not in resp.body
    # The signature computed with the right secret is the one the gateway wanted.
    resp = raw_request(url, headers=right, ca_bundle=cluster.ca_bundle)
    assert (resp.status, resp.body) == (200, b"private")

    presigned = presign(s3, "get_object", bucket, "k")
    expected = urllib.parse.parse_qs(urllib.parse.urlsplit(presigned).query)["X-Amz-Signature"][0]
    resp = raw_request(tamper_signature(presigned), ca_bundle=cluster.ca_bundle)
    assert (resp.status, resp.error_code) == (403, "SignatureDoesNotMatch")
    assert expected.encode() not in resp.body
    assert b"<StringToSign" not in resp.body and b"SignatureProvided" not in resp.body


def test_tampered_presigned_put_denied(cluster, s3, bucket):
    url = tamper_signature(presign(s3, "put_object", bucket, "k"))
    resp = raw_request(url, method="PUT", data=b"forged", ca_bundle=cluster.ca_bundle)
    assert resp.status == 403
    assert_missing(s3, bucket, "k")
