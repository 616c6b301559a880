"""boto3 against bucket versioning, lifecycle configuration, multipart checksums, paged multipart
listings and conditional writes."""

from __future__ import annotations

import base64
import hashlib

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from helpers import MiB, checksum_b64, error_code, http_status, unique_bucket


def client_error(fn, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as excinfo:
        fn(**kwargs)
    return http_status(excinfo.value), error_code(excinfo.value)


def delete_every_version(s3, bucket: str) -> None:
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])
    s3.delete_bucket(Bucket=bucket)


@pytest.fixture
def versioned(s3):
    name = unique_bucket("ver")
    s3.create_bucket(Bucket=name)
    yield name
    delete_every_version(s3, name)


def test_versioning(s3, versioned):
    bucket = versioned
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"null version")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    v3 = s3.put_object(Bucket=bucket, Key="k", Body=b"three")["VersionId"]
    assert s3.get_object(Bucket=bucket, Key="k")["VersionId"] == v3
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v2)["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"null version"
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=v2)["ContentLength"] == 3

    marker = s3.delete_object(Bucket=bucket, Key="k")
    assert marker["DeleteMarker"] is True
    assert client_error(s3.get_object, Bucket=bucket, Key="k") == (404, "NoSuchKey")
    assert client_error(s3.get_object, Bucket=bucket, Key="k",
                        VersionId=marker["VersionId"]) == (405, "MethodNotAllowed")
    assert client_error(s3.get_object, Bucket=bucket, Key="k",
                        VersionId="0000000000000001000000ff") == (404, "NoSuchVersion")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)

    listing = s3.list_object_versions(Bucket=bucket)
    assert [(m["VersionId"], m["IsLatest"]) for m in listing["DeleteMarkers"]] == [
        (marker["VersionId"], True)]
    assert [(v["VersionId"], v["IsLatest"]) for v in listing["Versions"]] == [
        (v3, False), (v2, False), ("null", False)]
    paged = []
    for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 1}):
        paged += [v["VersionId"] for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    assert sorted(paged) == sorted([marker["VersionId"], v3, v2, "null"])

    # Restoring an old version by copying it over the key.
    copied = s3.copy_object(Bucket=bucket, Key="k",
                            CopySource={"Bucket": bucket, "Key": "k", "VersionId": v2})
    assert copied["CopySourceVersionId"] == v2
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"

    # Suspended: writes replace the null version.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"four").get("VersionId") == "null"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"four"

    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "k", "VersionId": v3}, {"Key": "k", "VersionId": "not-an-id"}]})
    assert [d["VersionId"] for d in deleted["Deleted"]] == [v3]
    assert deleted["Errors"][0]["Code"] == "InvalidArgument"
    assert client_error(s3.delete_bucket, Bucket=bucket) == (409, "BucketNotEmpty")


def test_lifecycle_configuration_roundtrip(s3, bucket):
    assert client_error(s3.get_bucket_lifecycle_configuration,
                        Bucket=bucket) == (404, "NoSuchLifecycleConfiguration")
    rules = [
        {"ID": "expire-logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
         "Expiration": {"Days": 30}},
        {"ID": "uploads", "Filter": {"Prefix": ""}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got == rules
    assert client_error(
        s3.put_bucket_lifecycle_configuration, Bucket=bucket,
        LifecycleConfiguration={"Rules": [{"ID": "t", "Filter": {"Prefix": ""}, "Status": "Enabled",
                                           "Transitions": [{"Days": 1, "StorageClass": "GLACIER"}]}]},
    ) == (501, "NotImplemented")
    s3.delete_bucket_lifecycle(Bucket=bucket)
    assert client_error(s3.get_bucket_lifecycle_configuration,
                        Bucket=bucket) == (404, "NoSuchLifecycleConfiguration")


def crc32_b64(data: bytes) -> str:
    return checksum_b64("CRC32", data)


PART = 5 * MiB


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA256", "CRC32C"])
def test_composite_multipart_checksum(s3, bucket, algorithm):
    parts_data = [bytes([i]) * PART for i in (1, 2)] + [b"tail"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm=algorithm)
    assert upload["ChecksumAlgorithm"] == algorithm
    field = f"Checksum{algorithm}"
    parts = []
    for number, data in enumerate(parts_data, start=1):
        # botocore computes CRC32C only with the CRT: send the value precomputed then.
        extra = ({field: checksum_b64(algorithm, data)} if algorithm == "CRC32C"
                 else {"ChecksumAlgorithm": algorithm})
        answer = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                PartNumber=number, Body=data, **extra)
        assert answer[field] == checksum_b64(algorithm, data)
        parts.append({"PartNumber": number, "ETag": answer["ETag"], field: answer[field]})
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])
    assert [p[field] for p in listed["Parts"]] == [p[field] for p in parts]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                        MultipartUpload={"Parts": parts})
    raw = b"".join(base64.b64decode(p[field]) for p in parts)
    expected = f"{checksum_b64(algorithm, raw)}-3"
    assert done[field] == expected
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert head[field] == expected
    assert head["ChecksumType"] == "COMPOSITE"
    part_head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=2, ChecksumMode="ENABLED")
    assert part_head[field] == parts[1][field]
    body = s3.get_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")["Body"].read()
    assert hashlib.md5(body).digest() == hashlib.md5(b"".join(parts_data)).digest()


def test_full_object_crc32_and_mismatches(s3, bucket):
    parts_data = [b"a" * PART, b"bc"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="full", ChecksumAlgorithm="CRC32",
                                        ChecksumType="FULL_OBJECT")
    uid = upload["UploadId"]
    parts = []
    for number, data in enumerate(parts_data, start=1):
        answer = s3.upload_part(Bucket=bucket, Key="full", UploadId=uid, PartNumber=number,
                                Body=data, ChecksumCRC32=crc32_b64(data))
        parts.append({"PartNumber": number, "ETag": answer["ETag"],
                      "ChecksumCRC32": answer["ChecksumCRC32"]})
    whole = crc32_b64(b"".join(parts_data))
    assert client_error(s3.complete_multipart_upload, Bucket=bucket, Key="full", UploadId=uid,
                        MultipartUpload={"Parts": parts}, ChecksumCRC32=crc32_b64(b"wrong"),
                        ChecksumType="FULL_OBJECT") == (400, "BadDigest")
    wrong_part = [dict(parts[0], ChecksumCRC32=crc32_b64(b"x")), parts[1]]
    assert client_error(s3.complete_multipart_upload, Bucket=bucket, Key="full", UploadId=uid,
                        MultipartUpload={"Parts": wrong_part}) == (400, "InvalidPart")
    done = s3.complete_multipart_upload(Bucket=bucket, Key="full", UploadId=uid,
                                        MultipartUpload={"Parts": parts}, ChecksumCRC32=whole,
                                        ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == whole
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (whole, "FULL_OBJECT")
    assert client_error(s3.create_multipart_upload, Bucket=bucket, Key="x",
                        ChecksumAlgorithm="SHA256",
                        ChecksumType="FULL_OBJECT") == (400, "InvalidRequest")


def test_upload_file_default_checksums(s3, bucket, tmp_path):
    """boto3's managed multipart upload with its default checksum behaviour."""
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(path), bucket, "managed", Config=config)
    got = s3.get_object(Bucket=bucket, Key="managed", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ETag"].endswith('-3"')


def test_multipart_listings_page(s3, bucket):
    upload = s3.create_multipart_upload(Bucket=bucket, Key="paged")["UploadId"]
    for number in range(1, 6):
        s3.upload_part(Bucket=bucket, Key="paged", UploadId=upload, PartNumber=number,
                       Body=b"p%d" % number)
    numbers = []
    pages = 0
    for page in s3.get_paginator("list_parts").paginate(
            Bucket=bucket, Key="paged", UploadId=upload, PaginationConfig={"PageSize": 2}):
        pages += 1
        numbers += [p["PartNumber"] for p in page.get("Parts", [])]
    assert numbers == [1, 2, 3, 4, 5] and pages == 3
    others = [s3.create_multipart_upload(Bucket=bucket, Key=f"u/{i}")["UploadId"] for i in range(3)]
    seen = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 1}):
        seen += [u["UploadId"] for u in page.get("Uploads", [])]
    assert sorted(seen) == sorted(others + [upload])
    rolled = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["u/"]
    for key, uid in [("paged", upload)] + [(f"u/{i}", u) for i, u in enumerate(others)]:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_conditional_put(s3, bucket):
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    assert client_error(s3.put_object, Bucket=bucket, Key="once", Body=b"again",
                        IfNoneMatch="*") == (412, "PreconditionFailed")
    etag = s3.head_object(Bucket=bucket, Key="once")["ETag"]
    s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfMatch=etag)
    assert client_error(s3.put_object, Bucket=bucket, Key="once", Body=b"third",
                        IfMatch=etag) == (412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"second"
