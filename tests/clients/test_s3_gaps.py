"""The smaller S3 gaps of issue 21, each as AWS documents it, through boto3 and the aws CLI."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import time

import pytest
from botocore.exceptions import ClientError

from conftest import empty_and_delete_bucket
from helpers import b64, error_code, http_status, random_bytes, unique_bucket
from test_hardening import signed_request

MiB = 1024 * 1024


def refusal(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as excinfo:
        call()
    return http_status(excinfo.value), error_code(excinfo.value)


# --------------------------------------------------------------------------- GET ?partNumber=N


def test_part_number_beyond_the_parts_is_invalid_part(s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    parts = [random_bytes(5 * MiB), random_bytes(1000)]
    etags = [s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=n + 1,
                            Body=body)["ETag"] for n, body in enumerate(parts)]
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    assert s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)["Body"].read() == parts[1]
    assert refusal(lambda: s3.get_object(Bucket=bucket, Key="mp", PartNumber=3)) == (
        400, "InvalidPart")
    assert refusal(lambda: s3.get_object(Bucket=bucket, Key="mp", PartNumber=10001)) == (
        400, "InvalidArgument")
    # An object not uploaded in parts is its own part 1.
    s3.put_object(Bucket=bucket, Key="simple", Body=b"whole")
    whole = s3.get_object(Bucket=bucket, Key="simple", PartNumber=1)
    assert (whole["ResponseMetadata"]["HTTPStatusCode"], whole["Body"].read()) == (200, b"whole")
    assert refusal(lambda: s3.get_object(Bucket=bucket, Key="simple", PartNumber=2)) == (
        400, "InvalidPart")


# --------------------------------------------------------------------------- ListBuckets paging


def test_list_buckets_pages_by_prefix(s3):
    prefix = unique_bucket("lb") + "-"
    names = [f"{prefix}{i}" for i in range(3)]
    for name in names:
        s3.create_bucket(Bucket=name)
    try:
        first = s3.list_buckets(Prefix=prefix, MaxBuckets=2)
        assert [b["Name"] for b in first["Buckets"]] == names[:2]
        assert first["Prefix"] == prefix
        token = first["ContinuationToken"]
        rest = s3.list_buckets(Prefix=prefix, MaxBuckets=2, ContinuationToken=token)
        assert [b["Name"] for b in rest["Buckets"]] == names[2:]
        assert "ContinuationToken" not in rest
        every = s3.list_buckets(Prefix=prefix)
        assert [b["Name"] for b in every["Buckets"]] == names
        paged = [b["Name"] for page in s3.get_paginator("list_buckets").paginate(
            Prefix=prefix, PaginationConfig={"PageSize": 1}) for b in page["Buckets"]]
        assert paged == names
    finally:
        for name in names:
            s3.delete_bucket(Bucket=name)


# --------------------------------------------------------------------------- Content-Encoding


def test_aws_chunked_is_not_stored_as_content_encoding(s3, bucket):
    body = gzip.compress(b"compressed " * 1000)
    s3.put_object(Bucket=bucket, Key="gz", Body=body, ContentEncoding="gzip, aws-chunked")
    assert s3.head_object(Bucket=bucket, Key="gz")["ContentEncoding"] == "gzip"
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x" * 100, ContentEncoding="aws-chunked")
    assert "ContentEncoding" not in s3.head_object(Bucket=bucket, Key="plain")


def test_streamed_checksum_upload_keeps_only_the_object_encoding(s3, bucket):
    """boto3 sends a trailing checksum (aws-chunked, `Content-Encoding: aws-chunked` added to
    the object's own encoding) when asked for one on a streamed body."""
    body = gzip.compress(random_bytes(200_000))
    s3.upload_fileobj(io.BytesIO(body), bucket, "streamed",
                      ExtraArgs={"ContentEncoding": "gzip", "ChecksumAlgorithm": "CRC32"})
    head = s3.head_object(Bucket=bucket, Key="streamed")
    assert head["ContentEncoding"] == "gzip"
    assert s3.get_object(Bucket=bucket, Key="streamed")["Body"].read() == body


# --------------------------------------------------------------------------- checksums


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_a_wrong_checksum_is_bad_digest(s3, bucket, algorithm):
    other = {"CRC32": "AAAAAA==", "CRC32C": "AAAAAA==", "CRC64NVME": "AAAAAAAAAAA=",
             "SHA1": b64(hashlib.sha1(b"not the body").digest()),
             "SHA256": b64(hashlib.sha256(b"not the body").digest())}[algorithm]
    put = lambda: s3.put_object(Bucket=bucket, Key="sum", Body=b"the body",  # noqa: E731
                                **{f"Checksum{algorithm}": other})
    assert refusal(put) == (400, "BadDigest")
    # A value that is no checksum of this algorithm at all (not its length) is the form AWS
    # checks first.
    malformed = lambda: s3.put_object(Bucket=bucket, Key="sum", Body=b"the body",  # noqa: E731
                                      **{f"Checksum{algorithm}": "bm90IGEgc3Vt"})
    assert refusal(malformed) == (400, "InvalidRequest")
    assert refusal(lambda: s3.head_object(Bucket=bucket, Key="sum"))[0] == 404


# --------------------------------------------------------------------------- owner and keys


def test_expected_bucket_owner_is_checked(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"owned")
    owner = s3.list_buckets()["Owner"]["ID"]
    assert s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner=owner)["Body"].read() == b"owned"
    for call in (lambda o: s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner=o),
                 lambda o: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ExpectedBucketOwner=o),
                 lambda o: s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner=o)):
        assert refusal(lambda: call("111122223333")) == (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"owned"


def test_a_key_that_is_not_utf8_is_bad_request(cluster_http, s3_http):
    name = unique_bucket()
    s3_http.create_bucket(Bucket=name)
    try:
        answer = signed_request(cluster_http, "GET", f"/{name}/bad%FFkey", {})
        # S3's answer to a path it cannot decode: 400 InvalidURI, "Couldn't parse the
        # specified URI."
        assert (answer.status, answer.error_code) == (400, "InvalidURI"), answer.body
    finally:
        s3_http.delete_bucket(Bucket=name)


# --------------------------------------------------------------------------- repeated Complete


def complete_upload(s3, bucket: str, key: str, parts: list[bytes]) -> tuple[str, list[dict]]:
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    listed = [{"PartNumber": n + 1,
               "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n + 1,
                                      Body=body)["ETag"]}
              for n, body in enumerate(parts)]
    return upload, listed


def test_a_repeated_complete_gets_the_same_answer(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    upload, listed = complete_upload(s3, bucket, "mp", [random_bytes(5 * MiB), b"tail"])
    complete = lambda parts: s3.complete_multipart_upload(  # noqa: E731
        Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": parts})
    first = complete(listed)
    again = complete(listed)
    assert (again["ETag"], again["VersionId"]) == (first["ETag"], first["VersionId"])
    assert refusal(lambda: complete(listed[:1])) == (400, "InvalidPart")
    assert refusal(lambda: complete([listed[0], {**listed[1], "PartNumber": 3}])) == (
        400, "InvalidPart")
    versions = s3.list_object_versions(Bucket=bucket, Prefix="mp")["Versions"]
    assert [v["VersionId"] for v in versions] == [first["VersionId"]]
    # Once the key has a newer version, the upload is no longer what the key holds.
    s3.put_object(Bucket=bucket, Key="mp", Body=b"newer")
    assert refusal(lambda: complete(listed)) == (404, "NoSuchUpload")
    assert refusal(lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId="not-an-upload",
        MultipartUpload={"Parts": listed})) == (404, "NoSuchUpload")


# --------------------------------------------------------------------------- overlapping PUTs


def start_slow_put(cluster, bucket: str, key: str, head: bytes, rest: bytes):
    """Sends a PUT's head and first bytes, and returns a function that sends the rest and
    returns the status."""
    import http.client
    import ssl
    import urllib.parse

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{cluster.endpoint}/{bucket}/{key}"
    request = AWSRequest(method="PUT", url=url, data=head + rest)
    S3SigV4Auth(Credentials(cluster.access_key, cluster.secret_key), "s3",
                cluster.region).add_auth(request)
    parsed = urllib.parse.urlparse(url)
    if cluster.tls:
        connection = http.client.HTTPSConnection(
            parsed.hostname, parsed.port, context=ssl.create_default_context(cafile=cluster.ca_bundle))
    else:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port)
    connection.putrequest("PUT", parsed.path, skip_accept_encoding=True)
    for name, value in request.headers.items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(head) + len(rest)))
    connection.endheaders()
    connection.send(head)

    def finish() -> int:
        connection.send(rest)
        response = connection.getresponse()
        answer = (response.status, response.read())
        connection.close()
        return answer

    return finish


def test_the_later_request_wins_when_the_earlier_finishes_last(cluster, s3, bucket):
    early = random_bytes(4 * MiB)
    finish = start_slow_put(cluster, bucket, "race", early[:MiB], early[MiB:])
    time.sleep(0.5)  # the early request has arrived and is streaming its body
    s3.put_object(Bucket=bucket, Key="race", Body=b"late")
    status, body = finish()
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="race")["Body"].read() == b"late"


# --------------------------------------------------------------------------- lifecycle rules


def test_lifecycle_filters_and_version_actions_round_trip(s3, bucket):
    """How the worker applies them is in tests/lifecycle.rs (a cluster whose day is 2 s)."""
    rules = [
        {"Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "tier", "Value": "cold"}],
                            "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}},
         "Status": "Enabled", "Expiration": {"Days": 30}},
        {"ID": "tagged", "Filter": {"Tag": {"Key": "tmp", "Value": "1"}}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 2, "NewerNoncurrentVersions": 3}},
        {"ID": "large", "Filter": {"ObjectSizeGreaterThan": 1 << 20}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got[0]["ID"]  # generated
    assert [{k: v for k, v in rule.items() if k != "ID"} for rule in got[:1]] == rules[:1]
    assert got[1:] == rules[1:]
    transition = {"ID": "t", "Filter": {"Prefix": ""}, "Status": "Enabled",
                  "NoncurrentVersionTransitions": [{"NoncurrentDays": 1, "StorageClass": "GLACIER"}]}
    assert refusal(lambda: s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [transition]})) == (501, "NotImplemented")
    both = {"ID": "b", "Filter": {"Prefix": ""}, "Status": "Enabled",
            "Expiration": {"Days": 1, "ExpiredObjectDeleteMarker": True}}
    assert refusal(lambda: s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [both]})) == (400, "InvalidArgument")
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == got


# --------------------------------------------------------------------------- through the aws CLI

CLIS = ["v1", "v2"]


@pytest.fixture
def cli_bucket(s3_http):
    """A bucket on the plain-HTTP cluster (the CLI tests need one transport only)."""
    name = unique_bucket("cli")
    s3_http.create_bucket(Bucket=name)
    yield name
    empty_and_delete_bucket(s3_http, name)


def cli_refusal(aws, *args) -> str:
    """The stderr of a CLI command that must fail."""
    res = aws.run(*args, check=False)
    assert res.returncode != 0, res.stdout
    return res.stderr


@pytest.mark.parametrize("version", CLIS)
def test_aws_cli_part_number_beyond_the_parts_is_invalid_part(make_aws, cluster_http, s3_http,
                                                              cli_bucket, version, tmp_path):
    aws = make_aws(version, cluster_http)
    s3_http.put_object(Bucket=cli_bucket, Key="simple", Body=b"whole")
    out = tmp_path / "part"
    got = json.loads(aws.run("s3api", "get-object", "--bucket", cli_bucket, "--key", "simple",
                             "--part-number", "1", out).stdout)
    assert (got["ContentLength"], out.read_bytes()) == (5, b"whole")
    stderr = cli_refusal(aws, "s3api", "get-object", "--bucket", cli_bucket, "--key", "simple",
                         "--part-number", "2", out)
    assert "(InvalidPart)" in stderr, stderr


@pytest.mark.parametrize("version", CLIS)
def test_aws_cli_wrong_checksum_is_bad_digest(make_aws, cluster_http, s3_http, cli_bucket,
                                              version, tmp_path):
    aws = dataclasses.replace(make_aws(version, cluster_http), max_attempts=1)
    body = tmp_path / "body"
    body.write_bytes(b"the body")
    wrong = b64(hashlib.sha256(b"not the body").digest())
    stderr = cli_refusal(aws, "s3api", "put-object", "--bucket", cli_bucket, "--key", "sum",
                         "--body", body, "--checksum-sha256", wrong)
    assert "(BadDigest)" in stderr, stderr
    assert refusal(lambda: s3_http.head_object(Bucket=cli_bucket, Key="sum"))[0] == 404
    right = b64(hashlib.sha256(b"the body").digest())
    put = json.loads(aws.run("s3api", "put-object", "--bucket", cli_bucket, "--key", "sum",
                             "--body", body, "--checksum-sha256", right).stdout)
    assert put["ChecksumSHA256"] == right


@pytest.mark.parametrize("version", CLIS)
def test_aws_cli_expected_bucket_owner_is_checked(make_aws, cluster_http, s3_http, cli_bucket,
                                                  version, tmp_path):
    aws = make_aws(version, cluster_http)
    owner = s3_http.list_buckets()["Owner"]["ID"]
    body = tmp_path / "body"
    body.write_bytes(b"owned")
    aws.run("s3api", "put-object", "--bucket", cli_bucket, "--key", "k", "--body", body,
            "--expected-bucket-owner", owner)
    for args in (["put-object", "--key", "k", "--body", body],
                 ["get-object", "--key", "k", tmp_path / "out"],
                 ["list-objects-v2"]):
        stderr = cli_refusal(aws, "s3api", *args, "--bucket", cli_bucket,
                             "--expected-bucket-owner", "111122223333")
        assert "(AccessDenied)" in stderr, stderr
    assert s3_http.get_object(Bucket=cli_bucket, Key="k")["Body"].read() == b"owned"


def test_aws_cli_list_buckets_pages_by_prefix(make_aws, cluster_http, s3_http):
    """The CLI v1 pages ListBuckets (`--page-size` is MaxBuckets, `--max-items` and
    `--starting-token` follow the ContinuationToken) and filters it with `--prefix`. The CLI
    v2 of this machine (2.9.19) predates ListBuckets paging: it has neither option."""
    aws = make_aws("v1", cluster_http)
    prefix = unique_bucket("cli-lb") + "-"
    names = [f"{prefix}{i}" for i in range(3)]
    for name in names:
        s3_http.create_bucket(Bucket=name)
    try:
        def listed(*args) -> dict:
            return json.loads(aws.run("s3api", "list-buckets", "--prefix", prefix,
                                      *args).stdout)
        assert [b["Name"] for b in listed("--page-size", "1")["Buckets"]] == names
        first = listed("--max-items", "2")
        assert [b["Name"] for b in first["Buckets"]] == names[:2]
        rest = listed("--starting-token", first["NextToken"])
        assert [b["Name"] for b in rest["Buckets"]] == names[2:] and "NextToken" not in rest
    finally:
        for name in names:
            s3_http.delete_bucket(Bucket=name)


@pytest.mark.parametrize("version", CLIS)
def test_aws_cli_lifecycle_rules_round_trip(make_aws, cluster_http, s3_http, cli_bucket,
                                            version):
    """Rules with a Filter, NoncurrentVersionExpiration and ExpiredObjectDeleteMarker and no ID
    are stored as sent, each with a generated ID."""
    aws = make_aws(version, cluster_http)
    rules = [
        {"Filter": {"And": {"Prefix": "logs/", "Tags": [{"Key": "tier", "Value": "cold"}]}},
         "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 2, "NewerNoncurrentVersions": 3}},
        {"Filter": {"ObjectSizeGreaterThan": 1024}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ]
    aws.run("s3api", "put-bucket-lifecycle-configuration", "--bucket", cli_bucket,
            "--lifecycle-configuration", json.dumps({"Rules": rules}))
    got = json.loads(aws.run("s3api", "get-bucket-lifecycle-configuration", "--bucket",
                             cli_bucket).stdout)["Rules"]
    ids = [rule.pop("ID", None) for rule in got]
    assert all(ids) and len(set(ids)) == 2, ids
    assert got == rules
