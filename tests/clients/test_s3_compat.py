"""S3 operations beyond the basics through boto3, and virtual-hosted-style addressing."""

from __future__ import annotations

import socket

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import error_code, http_status, quoted_md5


def test_virtual_hosted_style_boto3(cluster, bucket, monkeypatch):
    """`<bucket>.localhost` names the bucket (dev's root domain) and SigV4 still verifies."""
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    if cluster.tls:
        pytest.skip("the test certificate does not name *.localhost")
    endpoint = cluster.endpoint.replace("127.0.0.1", "localhost")
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=cluster.region,
        aws_access_key_id=cluster.access_key, aws_secret_access_key=cluster.secret_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "virtual"}),
    )
    client.put_object(Bucket=bucket, Key="v/hosted key", Body=b"virtual")
    assert client.get_object(Bucket=bucket, Key="v/hosted key")["Body"].read() == b"virtual"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["v/hosted key"]
    client.delete_object(Bucket=bucket, Key="v/hosted key")


def client_error(fn, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as excinfo:
        fn(**kwargs)
    return http_status(excinfo.value), error_code(excinfo.value)


def test_copy_tagging_conditions_delete_objects(s3, bucket):
    """boto3 parses every new answer: CopyObjectResult, CopyPartResult, Tagging, CORS, DeleteResult."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"hello world", Metadata={"a": "1"}, Tagging="t=1")
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == quoted_md5(b"hello world")
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["Metadata"] == {"a": "1"}
    assert s3.get_object(Bucket=bucket, Key="dst")["TagCount"] == 1
    assert s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"] == [{"Key": "t", "Value": "1"}]
    s3.put_object_tagging(Bucket=bucket, Key="dst",
                          Tagging={"TagSet": [{"Key": "x", "Value": "y"}, {"Key": "z", "Value": ""}]})
    assert len(s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"]) == 2
    s3.delete_object_tagging(Bucket=bucket, Key="dst")
    assert s3.get_object_tagging(Bucket=bucket, Key="dst")["TagSet"] == []
    assert client_error(s3.copy_object, Bucket=bucket, Key="dst",
                        CopySource={"Bucket": bucket, "Key": "src"},
                        CopySourceIfMatch='"nope"') == (412, "PreconditionFailed")

    upload = s3.create_multipart_upload(Bucket=bucket, Key="joined")["UploadId"]
    part = s3.upload_part_copy(Bucket=bucket, Key="joined", UploadId=upload, PartNumber=1,
                               CopySource={"Bucket": bucket, "Key": "src"},
                               CopySourceRange="bytes=6-10")
    etag = part["CopyPartResult"]["ETag"]
    assert etag == quoted_md5(b"world")
    s3.complete_multipart_upload(Bucket=bucket, Key="joined", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3.get_object(Bucket=bucket, Key="joined")["Body"].read() == b"world"

    assert client_error(s3.put_object, Bucket=bucket, Key="src", Body=b"x",
                        IfNoneMatch="*") == (412, "PreconditionFailed")
    s3.put_object(Bucket=bucket, Key="fresh", Body=b"x", IfNoneMatch="*")

    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "k", "Value": "v"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    assert client_error(s3.get_bucket_tagging, Bucket=bucket) == (404, "NoSuchTagSet")

    rules = [{"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "PUT"], "MaxAgeSeconds": 10}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["AllowedMethods"] == ["GET", "PUT"] and got[0]["MaxAgeSeconds"] == 10
    s3.delete_bucket_cors(Bucket=bucket)
    assert client_error(s3.get_bucket_cors, Bucket=bucket) == (404, "NoSuchCORSConfiguration")

    deleted = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": k} for k in ["src", "dst", "joined", "fresh", "never-existed"]]})
    assert sorted(d["Key"] for d in deleted["Deleted"]) == [
        "dst", "fresh", "joined", "never-existed", "src"]
    assert "Errors" not in deleted
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
