"""GetObjectAttributes through boto3 and the aws CLI: ETag, Checksum, ObjectParts (paged),
StorageClass and ObjectSize, by version too, and its errors."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from helpers import MiB, checksum_b64, error_code, http_status, random_bytes, unique_bucket

ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
PART = 5 * MiB


@pytest.fixture(scope="module")
def s3(cluster_http):
    """Checksums only where asked for, so that an object without one can be made."""
    return cluster_http.client(request_checksum_calculation="when_required")


@pytest.fixture
def bucket(s3):
    name = unique_bucket("attrs")
    s3.create_bucket(Bucket=name)
    return name


def attributes(s3, bucket, key, names=ALL, **params) -> dict:
    answer = s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=names, **params)
    answer.pop("ResponseMetadata")
    return answer


def failure(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as excinfo:
        call()
    return http_status(excinfo.value), error_code(excinfo.value)


def multipart(s3, bucket, key, sizes, algorithm=None) -> tuple[dict, list[dict]]:
    """Uploads parts of `sizes`; returns CompleteMultipartUpload's answer and the parts sent."""
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    parts = []
    for number, size in enumerate(sizes, start=1):
        answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                Body=random_bytes(size), **extra)
        parts.append({"PartNumber": number, "ETag": answer["ETag"], "Size": size,
                      **{k: v for k, v in answer.items() if k.startswith("Checksum")}})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": [
            {k: v for k, v in p.items() if k != "Size"} for p in parts]})
    return done, parts


def test_a_simple_object(s3, bucket):
    data = random_bytes(1024)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ChecksumAlgorithm="SHA256")
    answer = attributes(s3, bucket, "k")
    head = s3.head_object(Bucket=bucket, Key="k")
    assert answer == {
        "LastModified": head["LastModified"],
        "ETag": put["ETag"].strip('"'),
        "Checksum": {"ChecksumSHA256": checksum_b64("sha256", data),
                     "ChecksumType": "FULL_OBJECT"},
        "StorageClass": "STANDARD",
        "ObjectSize": 1024,
    }


def test_only_the_attributes_asked_for(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    answer = attributes(s3, bucket, "k", ["ObjectSize", "Checksum"])
    assert set(answer) == {"LastModified", "ObjectSize"}  # no checksum was stored


def test_a_multipart_object_with_part_checksums(s3, bucket):
    done, parts = multipart(s3, bucket, "mp", [PART, PART, 1000], algorithm="CRC32")
    answer = attributes(s3, bucket, "mp")
    assert answer["ETag"] == done["ETag"].strip('"')
    assert answer["ObjectSize"] == 2 * PART + 1000
    # The composite checksum without HEAD's `-3`.
    assert done["ChecksumCRC32"].endswith("-3")
    assert answer["Checksum"] == {"ChecksumCRC32": done["ChecksumCRC32"].removesuffix("-3"),
                                  "ChecksumType": "COMPOSITE"}
    assert answer["ObjectParts"] == {
        "TotalPartsCount": 3, "PartNumberMarker": 0, "NextPartNumberMarker": 3,
        "MaxParts": 1000, "IsTruncated": False,
        "Parts": [{"PartNumber": p["PartNumber"], "Size": p["Size"],
                   "ChecksumCRC32": p["ChecksumCRC32"]} for p in parts],
    }


def test_object_parts_page(s3, bucket):
    multipart(s3, bucket, "mp", [PART, PART, 1000], algorithm="SHA1")
    first = attributes(s3, bucket, "mp", ["ObjectParts"], MaxParts=2)["ObjectParts"]
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert (first["IsTruncated"], first["NextPartNumberMarker"], first["MaxParts"]) == (True, 2, 2)
    rest = attributes(s3, bucket, "mp", ["ObjectParts"], MaxParts=2,
                      PartNumberMarker=first["NextPartNumberMarker"])["ObjectParts"]
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    assert (rest["IsTruncated"], rest["PartNumberMarker"], rest["TotalPartsCount"]) == (False, 2, 3)
    assert "ChecksumSHA1" in rest["Parts"][0]


def test_parts_without_checksums_are_counted_not_listed(s3, bucket):
    multipart(s3, bucket, "mp", [PART, 10])
    answer = attributes(s3, bucket, "mp")
    assert "Checksum" not in answer
    assert answer["ObjectParts"]["TotalPartsCount"] == 2
    assert "Parts" not in answer["ObjectParts"]


def test_versions_and_delete_markers(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="k", Body=b"first")["VersionId"]
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"second!")["VersionId"]
    assert attributes(s3, bucket, "k", ["ObjectSize"])["VersionId"] == second
    old = attributes(s3, bucket, "k", ["ObjectSize"], VersionId=first)
    assert (old["VersionId"], old["ObjectSize"]) == (first, 5)
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    with pytest.raises(ClientError) as excinfo:
        attributes(s3, bucket, "k")
    headers = excinfo.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert (http_status(excinfo.value), error_code(excinfo.value)) == (404, "NoSuchKey")
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == marker
    assert failure(lambda: attributes(s3, bucket, "k", VersionId=marker)) == (
        405, "MethodNotAllowed")
    assert attributes(s3, bucket, "k", ["ObjectSize"], VersionId=second)["ObjectSize"] == 7
    missing = "0" * 24
    assert failure(lambda: attributes(s3, bucket, "k", VersionId=missing)) == (
        404, "NoSuchVersion")


def test_errors(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert failure(lambda: attributes(s3, bucket, "absent")) == (404, "NoSuchKey")
    assert failure(lambda: attributes(s3, unique_bucket("none"), "k")) == (404, "NoSuchBucket")
    assert failure(lambda: attributes(s3, bucket, "k", ["ETag", "Size"])) == (
        400, "InvalidArgument")
    assert failure(lambda: attributes(s3, bucket, "k", [])) == (400, "InvalidRequest")
    assert failure(lambda: attributes(s3, bucket, "k", ["ETag"],
                                      ExpectedBucketOwner="123456789012")) == (403, "AccessDenied")
    # SSE-C is for HTTPS only (test_sse.py covers its keys).
    assert failure(lambda: attributes(s3, bucket, "k", ["ETag"], SSECustomerAlgorithm="AES256",
                                      SSECustomerKey="k" * 32)) == (400, "InvalidRequest")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aws_cli_get_object_attributes(make_aws, cluster_http, s3, bucket, version):
    aws = make_aws(version, cluster_http)
    multipart(s3, bucket, "mp", [PART, 10], algorithm="SHA256")
    out = aws.run("s3api", "get-object-attributes", "--bucket", bucket, "--key", "mp",
                  "--object-attributes", "ObjectParts", "ObjectSize", "--max-parts", "1")
    answer = json.loads(out.stdout)
    assert answer["ObjectSize"] == PART + 10
    parts = answer["ObjectParts"]
    assert (parts["TotalPartsCount"], parts["IsTruncated"], len(parts["Parts"])) == (2, True, 1)
    refused = aws.run("s3api", "get-object-attributes", "--bucket", bucket, "--key", "mp",
                      "--object-attributes", "Size", check=False)
    assert refused.returncode != 0 and "InvalidArgument" in refused.stderr
