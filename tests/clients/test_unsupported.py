"""Request headers and parameters Tessera does not implement are refused, never accepted and
ignored (gateway/src/api/unsupported.rs holds the table).

Each refused header is sent, raw, on the one operation under test (a botocore `before-sign`
hook adds it), and the test checks the answer and that the request changed nothing. The scenarios
of the S3-features issue are repeated with boto3's own parameters, and a last test checks the
table against botocore's service model, the list of headers AWS documents per operation."""

from __future__ import annotations

import datetime
import gzip
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import botocore
import pytest
from botocore.exceptions import ClientError

from helpers import error_code, http_status, unique_bucket

NOT_IMPLEMENTED = (501, "NotImplemented")
# Object Lock is implemented (test_object_lock.py) but for event holds.
LOCK_HEADERS = [
    ("x-amz-object-lock-event-hold", "ON"),
    ("x-amz-object-lock-event-hold-duration-days", "1"),
    ("x-amz-object-lock-event-hold-duration-years", "1"),
]
SSE_C_HEADERS = [
    ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
    ("x-amz-server-side-encryption-customer-key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
    ("x-amz-server-side-encryption-customer-key-MD5", "ZK3YF5XyKxYIWkHjdkWfmg=="),
]
COPY_SOURCE_SSE_C_HEADERS = [("x-amz-copy-source-" + name[6:], value)
                             for name, value in SSE_C_HEADERS]
# ACLs are implemented (test_acl.py) but for the grantees and canned ACLs of AWS's services.
ACL_HEADERS = [
    ("x-amz-acl", "aws-exec-read"),
    ("x-amz-acl", "log-delivery-write"),
    ("x-amz-grant-full-control", 'uri="http://acs.amazonaws.com/groups/s3/LogDelivery"'),
    ("x-amz-grant-read", 'emailAddress="someone@example.com"'),
    ("x-amz-grant-read-acp", 'emailAddress="someone@example.com"'),
    ("x-amz-grant-write-acp", 'emailAddress="someone@example.com"'),
]
WRITE_HEADERS = [
    *ACL_HEADERS,
    ("x-amz-server-side-encryption", "aws:kms"),
    ("x-amz-server-side-encryption-aws-kms-key-id", "key"),
    ("x-amz-server-side-encryption-context", "e30="),
    ("x-amz-server-side-encryption-bucket-key-enabled", "true"),
    ("x-amz-storage-class", "GLACIER"),
    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("x-amz-website-redirect-location", "/elsewhere"),
    *LOCK_HEADERS,
]
CHECKSUM_HEADERS = [
    ("x-amz-checksum-sha512", "AAAA"),
    ("x-amz-checksum-md5", "AAAA"),
    ("x-amz-checksum-xxhash64", "AAAA"),
    ("x-amz-checksum-xxhash3", "AAAA"),
    ("x-amz-checksum-xxhash128", "AAAA"),
]
OTHER_OWNER = ("x-amz-expected-bucket-owner", "123456789012")
ACCESS_DENIED = (403, "AccessDenied")
# SSE-C is implemented (test_sse.py), but as on S3 only over TLS: the key must not cross the
# network in the clear.
NOT_OVER_HTTP = (400, "InvalidRequest")
# On a bucket without Object Lock, what asks for a lock is AWS's InvalidRequest.
NO_LOCK_CONFIGURATION = [
    (h, v, 400, "InvalidRequest") for h, v in [
        ("x-amz-object-lock-mode", "COMPLIANCE"),
        ("x-amz-object-lock-retain-until-date", "2030-01-01T00:00:00Z"),
        ("x-amz-object-lock-legal-hold", "ON"),
        ("x-amz-object-lock-legal-hold", "OFF"),
    ]
]

# (operation, header, value, status, code): every refusal the table makes.
CASES = [
    *[("PutObject", h, v, *NOT_IMPLEMENTED) for h, v in WRITE_HEADERS],
    *[("PutObject", h, v, *NOT_IMPLEMENTED) for h, v in CHECKSUM_HEADERS],
    ("PutObject", "x-amz-write-offset-bytes", "0", *NOT_IMPLEMENTED),
    ("PutObject", "x-amz-sdk-checksum-algorithm", "SHA512", *NOT_IMPLEMENTED),
    ("PutObject", "x-amz-storage-class", "CHEAPEST", 400, "InvalidStorageClass"),
    ("PutObject", *OTHER_OWNER, *ACCESS_DENIED),
    *[("PutObject", *case) for case in NO_LOCK_CONFIGURATION],
    *[("CopyObject", *case) for case in NO_LOCK_CONFIGURATION],
    *[("CreateMultipartUpload", *case) for case in NO_LOCK_CONFIGURATION],
    *[("CopyObject", h, v, *NOT_IMPLEMENTED) for h, v in WRITE_HEADERS],
    *[("CopyObject", h, v, *NOT_OVER_HTTP)
      for h, v in SSE_C_HEADERS + COPY_SOURCE_SSE_C_HEADERS],
    ("CopyObject", "x-amz-checksum-algorithm", "CRC32", *NOT_IMPLEMENTED),
    ("CopyObject", "x-amz-object-annotation-directive", "EXCLUDE", *NOT_IMPLEMENTED),
    ("CopyObject", "If-Match", '"0"', *NOT_IMPLEMENTED),
    ("CopyObject", "If-None-Match", "*", *NOT_IMPLEMENTED),
    ("CopyObject", "x-amz-source-expected-bucket-owner", "123456789012", *ACCESS_DENIED),
    *[("CreateMultipartUpload", h, v, *NOT_IMPLEMENTED) for h, v in WRITE_HEADERS],
    ("CreateMultipartUpload", *OTHER_OWNER, *ACCESS_DENIED),
    *[("PutObject", h, v, *NOT_OVER_HTTP) for h, v in SSE_C_HEADERS],
    *[("CreateMultipartUpload", h, v, *NOT_OVER_HTTP) for h, v in SSE_C_HEADERS],
    *[("UploadPart", h, v, *NOT_IMPLEMENTED) for h, v in CHECKSUM_HEADERS],
    *[("UploadPart", h, v, *NOT_OVER_HTTP) for h, v in SSE_C_HEADERS],
    *[("UploadPartCopy", h, v, *NOT_OVER_HTTP)
      for h, v in SSE_C_HEADERS + COPY_SOURCE_SSE_C_HEADERS],
    ("UploadPartCopy", "x-amz-source-expected-bucket-owner", "123456789012", *ACCESS_DENIED),
    *[("CompleteMultipartUpload", h, v, *NOT_IMPLEMENTED) for h, v in CHECKSUM_HEADERS],
    *[("CompleteMultipartUpload", h, v, *NOT_OVER_HTTP) for h, v in SSE_C_HEADERS],
    ("CompleteMultipartUpload", "x-amz-mp-object-size", "1", *NOT_IMPLEMENTED),
    # The upload has no checksum: no type can be claimed for it.
    ("CompleteMultipartUpload", "x-amz-checksum-type", "FULL_OBJECT", 400, "BadDigest"),
    *[("GetObject", h, v, *NOT_OVER_HTTP) for h, v in SSE_C_HEADERS],
    ("GetObject", *OTHER_OWNER, *ACCESS_DENIED),
    *[("HeadObject", h, v, *NOT_OVER_HTTP) for h, v in SSE_C_HEADERS],
    *[("ListParts", h, v, *NOT_OVER_HTTP) for h, v in SSE_C_HEADERS],
    *[("GetObjectAttributes", h, v, *NOT_OVER_HTTP) for h, v in SSE_C_HEADERS],
    ("GetObjectAttributes", *OTHER_OWNER, *ACCESS_DENIED),
    ("DeleteObject", "x-amz-mfa", "serial 123456", *NOT_IMPLEMENTED),
    ("DeleteObject", "If-Match", '"0"', *NOT_IMPLEMENTED),
    ("DeleteObject", "x-amz-if-match-last-modified-time", "Wed, 01 Jan 2020 00:00:00 GMT",
     *NOT_IMPLEMENTED),
    ("DeleteObject", "x-amz-if-match-size", "1", *NOT_IMPLEMENTED),
    ("DeleteObject", *OTHER_OWNER, *ACCESS_DENIED),
    ("DeleteObjects", "x-amz-mfa", "serial 123456", *NOT_IMPLEMENTED),
    ("AbortMultipartUpload", "x-amz-if-match-initiated-time", "Wed, 01 Jan 2020 00:00:00 GMT",
     *NOT_IMPLEMENTED),
    *[("CreateBucket", h, v, *NOT_IMPLEMENTED) for h, v in ACL_HEADERS],
    ("CreateBucket", "x-amz-grant-write", 'emailAddress="someone@example.com"',
     *NOT_IMPLEMENTED),
    ("CreateBucket", "x-amz-grant-read", 'id="nosuchkey"', 400, "InvalidArgument"),
    ("CreateBucket", "x-amz-acl", "public", 400, "InvalidArgument"),
    ("CreateBucket", "x-amz-bucket-object-lock-enabled", "maybe", 400, "InvalidArgument"),
    ("PutObjectLockConfiguration", "x-amz-bucket-object-lock-token", "token", *NOT_IMPLEMENTED),
    ("CreateBucket", "x-amz-object-ownership", "Nobody", 400, "InvalidArgument"),
    ("CreateBucket", "x-amz-bucket-namespace", "account-regional", *NOT_IMPLEMENTED),
    ("PutBucketVersioning", "x-amz-mfa", "serial 123456", *NOT_IMPLEMENTED),
    ("PutBucketLifecycleConfiguration", "x-amz-transition-default-minimum-object-size",
     "1K", *NOT_IMPLEMENTED),
    ("ListObjectsV2", "x-amz-optional-object-attributes", "Owner", *NOT_IMPLEMENTED),
    ("ListObjectVersions", "x-amz-optional-object-attributes", "Owner", *NOT_IMPLEMENTED),
    ("ListObjectsV2", *OTHER_OWNER, *ACCESS_DENIED),
    ("ListObjectVersions", *OTHER_OWNER, *ACCESS_DENIED),
    ("HeadBucket", *OTHER_OWNER, *ACCESS_DENIED),
    ("PutBucketReplication", "x-amz-bucket-object-lock-token", "token", *NOT_IMPLEMENTED),
    ("PutBucketPolicy", "x-amz-confirm-remove-self-bucket-access", "true", *NOT_IMPLEMENTED),
    # Requester pays: only `requester` (acknowledging charges nobody makes here) is accepted.
    *[(operation, "x-amz-request-payer", "bucket-owner", *NOT_IMPLEMENTED)
      for operation in ("PutObject", "GetObject", "DeleteObjects", "ListObjectsV2")],
    # A body checksum with an algorithm Tessera does not implement.
    *[(operation, "x-amz-sdk-checksum-algorithm", "SHA512", *NOT_IMPLEMENTED)
      for operation in ("PutObjectTagging", "PutBucketLifecycleConfiguration", "DeleteObjects",
                        "PutBucketReplication", "PutBucketPolicy")],
]


@pytest.fixture(scope="module")
def s3(cluster_http):
    """Refusals do not depend on the transport: one cluster (plain HTTP) is enough. The client
    sends a checksum only where S3 requires one, so that botocore does not overwrite an
    `x-amz-sdk-checksum-algorithm` under test with its default after signing."""
    return cluster_http.client(request_checksum_calculation="when_required")


def add_headers(client, operation: str, headers: dict[str, str]):
    """Sets raw headers on every `operation` request the client signs from now on, in place of
    any botocore set (it sets `x-amz-sdk-checksum-algorithm` where S3 requires a checksum)."""
    def add(request, **_):
        for name, value in headers.items():
            del request.headers[name]
            request.headers[name] = value
    client.meta.events.register_first(f"before-sign.s3.{operation}", add)
    return lambda: client.meta.events.unregister(f"before-sign.s3.{operation}", add)


def refusal(call: Callable[[], object]) -> tuple[int, str]:
    with pytest.raises(ClientError) as excinfo:
        call()
    code = error_code(excinfo.value)
    status = http_status(excinfo.value)
    # A HEAD's answer has no body: botocore names the error by its status.
    return status, None if code == str(status) else code


def missing(call: Callable[[], object]) -> bool:
    try:
        call()
    except ClientError as e:
        return http_status(e) == 404
    return False


def new_upload(s3, bucket, key="up"):
    return s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]


def uploads(s3, bucket):
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


@dataclass
class Scenario:
    """How to ask for one operation (after any setup it needs), and how to check that the
    refused request changed nothing."""
    request: Callable
    unchanged: Callable


def put_source(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    return {"Bucket": bucket, "Key": "src"}


def copy_object(s3, bucket):
    source = put_source(s3, bucket)
    return lambda: s3.copy_object(Bucket=bucket, Key="obj", CopySource=source)


def list_parts(s3, bucket):
    upload = new_upload(s3, bucket)
    return lambda: s3.list_parts(Bucket=bucket, Key="up", UploadId=upload)


def abort(s3, bucket):
    upload = new_upload(s3, bucket)
    return lambda: s3.abort_multipart_upload(Bucket=bucket, Key="up", UploadId=upload)


def create_bucket(s3):
    name = unique_bucket()
    return Scenario(lambda: s3.create_bucket(Bucket=name),
                    lambda: missing(lambda: s3.head_bucket(Bucket=name)))


def upload_part_copy(s3, bucket):
    source = put_source(s3, bucket)
    upload = new_upload(s3, bucket)
    return lambda: s3.upload_part_copy(Bucket=bucket, Key="up", UploadId=upload, PartNumber=1,
                                       CopySource=source)


def upload_part(s3, bucket):
    upload = new_upload(s3, bucket)
    return lambda: s3.upload_part(Bucket=bucket, Key="up", UploadId=upload, PartNumber=1,
                                  Body=b"part")


def complete(s3, bucket):
    upload = new_upload(s3, bucket)
    etag = s3.upload_part(Bucket=bucket, Key="up", UploadId=upload, PartNumber=1,
                          Body=b"part")["ETag"]
    return lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key="up", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})


def no_parts(s3, bucket):
    return all(s3.list_parts(Bucket=bucket, Key="up", UploadId=u["UploadId"]).get("Parts") is None
               for u in uploads(s3, bucket))


def stored(s3, bucket, key):
    return not missing(lambda: s3.head_object(Bucket=bucket, Key=key))


def get_then(s3, bucket, call):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"data")
    return call


SCENARIOS: dict[str, Callable] = {
    "PutObject": lambda s3, b: Scenario(
        lambda: s3.put_object(Bucket=b, Key="obj", Body=b"data"),
        lambda: not stored(s3, b, "obj")),
    "CopyObject": lambda s3, b: Scenario(copy_object(s3, b), lambda: not stored(s3, b, "obj")),
    "CreateMultipartUpload": lambda s3, b: Scenario(
        lambda: s3.create_multipart_upload(Bucket=b, Key="obj"),
        lambda: uploads(s3, b) == []),
    "UploadPart": lambda s3, b: Scenario(upload_part(s3, b), lambda: no_parts(s3, b)),
    "UploadPartCopy": lambda s3, b: Scenario(upload_part_copy(s3, b), lambda: no_parts(s3, b)),
    "CompleteMultipartUpload": lambda s3, b: Scenario(
        complete(s3, b), lambda: not stored(s3, b, "up") and len(uploads(s3, b)) == 1),
    "GetObject": lambda s3, b: Scenario(
        get_then(s3, b, lambda: s3.get_object(Bucket=b, Key="obj")), lambda: True),
    "HeadObject": lambda s3, b: Scenario(
        get_then(s3, b, lambda: s3.head_object(Bucket=b, Key="obj")), lambda: True),
    "ListParts": lambda s3, b: Scenario(list_parts(s3, b), lambda: True),
    "GetObjectAttributes": lambda s3, b: Scenario(
        get_then(s3, b, lambda: s3.get_object_attributes(Bucket=b, Key="obj",
                                                         ObjectAttributes=["ETag"])),
        lambda: True),
    "DeleteObject": lambda s3, b: Scenario(
        get_then(s3, b, lambda: s3.delete_object(Bucket=b, Key="obj")),
        lambda: stored(s3, b, "obj")),
    "DeleteObjects": lambda s3, b: Scenario(
        get_then(s3, b, lambda: s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "obj"}]})),
        lambda: stored(s3, b, "obj")),
    "AbortMultipartUpload": lambda s3, b: Scenario(abort(s3, b), lambda: len(uploads(s3, b)) == 1),
    "CreateBucket": lambda s3, b: create_bucket(s3),
    "PutBucketVersioning": lambda s3, b: Scenario(
        lambda: s3.put_bucket_versioning(
            Bucket=b, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Disabled"}),
        lambda: "Status" not in s3.get_bucket_versioning(Bucket=b)),
    "PutBucketLifecycleConfiguration": lambda s3, b: Scenario(
        lambda: s3.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={
            "Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""},
                       "Expiration": {"Days": 1}}]}),
        lambda: missing_lifecycle(s3, b)),
    "ListObjectsV2": lambda s3, b: Scenario(lambda: s3.list_objects_v2(Bucket=b), lambda: True),
    "ListObjectVersions": lambda s3, b: Scenario(
        lambda: s3.list_object_versions(Bucket=b), lambda: True),
    "HeadBucket": lambda s3, b: Scenario(lambda: s3.head_bucket(Bucket=b), lambda: True),
    "PutObjectLockConfiguration": lambda s3, b: Scenario(
        lambda: s3.put_object_lock_configuration(
            Bucket=b, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}),
        lambda: missing(lambda: s3.get_object_lock_configuration(Bucket=b))),
    "PutObjectTagging": lambda s3, b: Scenario(
        get_then(s3, b, lambda: s3.put_object_tagging(
            Bucket=b, Key="obj", Tagging={"TagSet": [{"Key": "t", "Value": "v"}]})),
        lambda: s3.get_object_tagging(Bucket=b, Key="obj")["TagSet"] == []),
    "PutBucketReplication": lambda s3, b: Scenario(
        lambda: s3.put_bucket_replication(Bucket=b, ReplicationConfiguration=REPLICATION),
        lambda: bucket_error(lambda: s3.get_bucket_replication(Bucket=b))
        == "ReplicationConfigurationNotFoundError"),
    "PutBucketPolicy": lambda s3, b: Scenario(
        lambda: s3.put_bucket_policy(Bucket=b, Policy=public_read(b)),
        lambda: bucket_error(lambda: s3.get_bucket_policy(Bucket=b)) == "NoSuchBucketPolicy"),
}

REPLICATION = {
    "Role": "arn:aws:iam::123456789012:role/replication",
    "Rules": [{"ID": "off", "Priority": 1, "Status": "Disabled", "Filter": {"Prefix": ""},
               "DeleteMarkerReplication": {"Status": "Enabled"},
               "Destination": {"Bucket": "arn:aws:s3:us-east-1::elsewhere"}}],
}


def public_read(bucket: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*"}]})


def bucket_error(call: Callable[[], object]) -> str | None:
    """The S3 error code of a bucket sub-resource GET, None if it answers."""
    try:
        call()
    except ClientError as e:
        return error_code(e)
    return None


def missing_lifecycle(s3, bucket) -> bool:
    try:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as e:
        return error_code(e) == "NoSuchLifecycleConfiguration"
    return False


@pytest.mark.parametrize("operation,header,value,status,code", CASES,
                         ids=[f"{c[0]}-{c[1]}={c[2]}" for c in CASES])
def test_refused(s3, bucket, operation, header, value, status, code):
    scenario = SCENARIOS[operation](s3, bucket)
    remove = add_headers(s3, operation, {header: value})
    try:
        answer = refusal(scenario.request)
    finally:
        remove()
    assert answer == (status, None if operation.startswith("Head") else code)
    assert scenario.unchanged()


def test_list_buckets_by_region_is_refused(s3):
    assert refusal(lambda: s3.list_buckets(BucketRegion="us-east-1")) == NOT_IMPLEMENTED


# --------------------------------------------------------------------------- the scenarios


def test_compliance_retention_needs_a_lock_bucket(s3, bucket):
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    put = lambda: s3.put_object(Bucket=bucket, Key="backup", Body=b"immutable?",  # noqa: E731
                                ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    assert refusal(put) == (400, "InvalidRequest")
    assert not stored(s3, bucket, "backup")


def test_sse_c_put_over_plain_http_is_refused(s3, bucket):
    put = lambda: s3.put_object(Bucket=bucket, Key="secret", Body=b"plaintext",  # noqa: E731
                                SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    assert refusal(put) == NOT_OVER_HTTP
    assert not stored(s3, bucket, "secret")


def test_sse_kms_put_is_refused(s3, bucket):
    put = lambda: s3.put_object(Bucket=bucket, Key="secret", Body=b"plaintext",  # noqa: E731
                                ServerSideEncryption="aws:kms")
    assert refusal(put) == NOT_IMPLEMENTED
    assert not stored(s3, bucket, "secret")


def test_values_that_mean_what_tessera_does_are_accepted(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"data", ACL="private",
                  StorageClass="STANDARD", ExpectedBucketOwner="tessera",
                  RequestPayer="requester")
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"data"
    name = unique_bucket()
    s3.create_bucket(Bucket=name, ACL="private", ObjectLockEnabledForBucket=False,
                     ObjectOwnership="BucketOwnerEnforced")
    s3.delete_bucket(Bucket=name, ExpectedBucketOwner="tessera")


# --------------------------------------------------------------------------- against AWS's list

# Headers and parameters the handlers implement (or that carry the request itself).
IMPLEMENTED = {
    "Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
    "Content-Length", "Content-MD5", "Content-Type", "Expires", "x-amz-meta-",
    "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "Range",
    "x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1", "x-amz-checksum-sha256", "x-amz-checksum-algorithm",
    "x-amz-checksum-type", "x-amz-checksum-mode", "x-amz-tagging", "x-amz-tagging-directive",
    "x-amz-metadata-directive", "x-amz-copy-source", "x-amz-copy-source-range",
    "x-amz-copy-source-if-match", "x-amz-copy-source-if-none-match",
    "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since",
    "versionId", "partNumber", "uploadId", "max-parts", "part-number-marker",
    "response-cache-control", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type", "response-expires",
    "prefix", "delimiter", "encoding-type", "marker", "max-keys", "continuation-token",
    "fetch-owner", "start-after", "key-marker", "version-id-marker", "max-uploads",
    "upload-id-marker", "max-buckets",
    "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold", "x-amz-bucket-object-lock-enabled",
    "x-amz-bypass-governance-retention",
    # Encryption at rest (test_sse.py): SSE-S3 and SSE-C, which the table refuses over HTTP.
    "x-amz-server-side-encryption",
    "x-amz-object-attributes", "x-amz-max-parts", "x-amz-part-number-marker",
    # Access control (test_access.py, test_acl.py).
    "x-amz-acl", "x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
    "x-amz-grant-write-acp", "x-amz-grant-full-control", "x-amz-object-ownership",
    "x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner",
}
# Accepted only with the values that ask for what Tessera does (checked by the unit tests).
ACCEPTED_VALUES = {
    "x-amz-request-payer", "x-amz-sdk-checksum-algorithm",
    "x-amz-optional-object-attributes",
}
SERVED = sorted({case[0] for case in CASES} | {
    "ListBuckets", "DeleteBucket", "GetBucketLocation", "PutBucketTagging", "GetBucketTagging",
    "DeleteBucketTagging", "PutObjectTagging", "GetObjectTagging", "DeleteObjectTagging",
    "PutBucketCors", "GetBucketCors", "DeleteBucketCors", "GetBucketVersioning",
    "GetBucketLifecycleConfiguration", "DeleteBucketLifecycle", "ListObjects",
    "ListMultipartUploads", "GetObjectLockConfiguration", "PutObjectRetention",
    "GetObjectRetention", "PutObjectLegalHold", "GetObjectLegalHold",
    "PutBucketEncryption", "GetBucketEncryption", "DeleteBucketEncryption",
    "GetBucketAcl", "PutBucketAcl", "GetObjectAcl", "PutObjectAcl",
    "GetBucketOwnershipControls", "PutBucketOwnershipControls", "DeleteBucketOwnershipControls",
    "PutBucketReplication", "GetBucketReplication", "DeleteBucketReplication",
    "PutBucketPolicy", "GetBucketPolicy", "DeleteBucketPolicy", "GetBucketPolicyStatus",
    "GetBucketNotificationConfiguration",
})


def documented(operation: str) -> list[str]:
    """The request headers and query parameters botocore's model gives `operation`."""
    directory = Path(botocore.__file__).parent / "data" / "s3" / "2006-03-01"
    path = directory / "service-2.json"
    model = json.loads(path.read_text() if path.exists()
                       else gzip.decompress((directory / "service-2.json.gz").read_bytes()))
    shape = model["operations"][operation].get("input", {}).get("shape")
    members = model["shapes"][shape]["members"].values() if shape else []
    return [m["locationName"] for m in members if m.get("location") in
            ("header", "headers", "querystring")]


UNSUPPORTED_RS = Path(__file__).resolve().parents[2] / "gateway" / "src" / "api" / "unsupported.rs"


def rules() -> dict[str, set[str]]:
    """The operations of each header and parameter in unsupported.rs's RULES (lower case)."""
    source = UNSUPPORTED_RS.read_text()
    lists = {name: set(re.findall(r"\w+", body)) for name, body in re.findall(
        r"const (\w+): &\[Operation\] = &\[(.*?)\];", source, re.S)}
    table = re.search(r"const RULES: &\[Rule\] = &\[(.*?)\n\];", source, re.S).group(1)
    headers = re.findall(  # one argument a line or all on one
        r'in_header\(\s*"([^"]+)",\s*"[^"]*",\s*[^\n]*?,\s*(&\[[^\]]*\]|[A-Z_]+),?\s*\)',
        table)
    queries = re.findall(r'in_query\("([^"]+)"', table)
    assert len(headers) + len(queries) == len(re.findall(r"\bin_(?:header|query)\(", table)), \
        "a rule of unsupported.rs that this parser does not read"
    found: dict[str, set[str]] = {}
    for name, operations in headers:
        ops = set(re.findall(r"\w+", operations)) if operations.startswith("&") \
            else lists[operations]
        found.setdefault(name.lower(), set()).update(ops)
    for name in queries:
        found.setdefault(name.lower(), set()).add("ListBuckets")
    return found


def test_the_rules_are_read_from_the_gateway():
    table = rules()
    assert table["x-amz-confirm-remove-self-bucket-access"] == {"PutBucketPolicy"}
    assert {"PutObject", "DeleteObjects", "PutBucketReplication"} <= \
        table["x-amz-sdk-checksum-algorithm"]
    assert table["bucket-region"] == {"ListBuckets"}


@pytest.mark.parametrize("operation", SERVED)
def test_every_documented_header_is_implemented_or_refused(operation):
    """Each header AWS documents for the operation is implemented, or refused (a case in CASES),
    or accepted only with some values: then unsupported.rs's RULES must judge it on this
    operation, or any value would be accepted and ignored."""
    refused = {case[1].lower() for case in CASES if case[0] == operation}
    list_buckets = {"bucket-region"}
    known = {name.lower() for name in IMPLEMENTED | ACCEPTED_VALUES}
    if operation == "ListBuckets":
        refused |= list_buckets
        known -= list_buckets
    unknown = [name for name in documented(operation)
               if name.lower() not in refused | known]
    assert unknown == []
    table = rules()
    unjudged = [name for name in documented(operation)
                if name.lower() in {n.lower() for n in ACCEPTED_VALUES}
                and operation not in table.get(name.lower(), set())]
    assert unjudged == []
