"""Signature Version 2 (issue 20), as clients send it: boto3's presigned URLs with its default
configuration (SigV2 query auth against a custom endpoint in us-east-1), botocore's "s3" header
signer, and rclone with `--s3-v2-auth`; with the configured key and with a key of the key table.
The authorization matrix (test_access.py) runs every operation with SigV2 headers and expired
SigV2 URLs."""

from __future__ import annotations

import email.utils
import os
import shutil
import subprocess
import time

import boto3
import pytest
from botocore import auth
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import MiB, error_code, http_status, random_bytes, raw_request
from test_access import admin_cli


def default_client(cluster, access_key=None, secret_key=None):
    """boto3 as a new user makes it: no signature_version given."""
    return boto3.client("s3", endpoint_url=cluster.endpoint, region_name=cluster.region,
                        aws_access_key_id=access_key or cluster.access_key,
                        aws_secret_access_key=secret_key or cluster.secret_key,
                        verify=cluster.ca_bundle if cluster.tls else None)


def v2_client(cluster, access_key=None, secret_key=None):
    return boto3.client("s3", endpoint_url=cluster.endpoint, region_name=cluster.region,
                        aws_access_key_id=access_key or cluster.access_key,
                        aws_secret_access_key=secret_key or cluster.secret_key,
                        verify=cluster.ca_bundle if cluster.tls else None,
                        config=Config(signature_version="s3", s3={"addressing_style": "path"}))


def test_default_boto3_presigns_with_sigv2_and_the_urls_work(cluster, s3, bucket):
    client = default_client(cluster)
    key = "dir/odd key+ü.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"presigned body")
    url = client.generate_presigned_url("get_object", Params={
        "Bucket": bucket, "Key": key, "ResponseContentType": "text/x-test"})
    assert "AWSAccessKeyId=" in url and "Signature=" in url and "X-Amz-" not in url
    res = raw_request(url, ca_bundle=cluster.ca_bundle)
    assert (res.status, res.body) == (200, b"presigned body")
    assert res.headers["Content-Type"] == "text/x-test"

    put = client.generate_presigned_url("put_object", Params={
        "Bucket": bucket, "Key": "uploaded", "ContentType": "application/x-test",
        "Metadata": {"origin": "v2"}})
    res = raw_request(put, method="PUT", data=b"uploaded body",
                      headers={"Content-Type": "application/x-test"}, ca_bundle=cluster.ca_bundle)
    assert res.status == 200, res.body
    head = s3.head_object(Bucket=bucket, Key="uploaded")
    assert head["Metadata"] == {"origin": "v2"} and head["ContentType"] == "application/x-test"

    listing = client.generate_presigned_url("list_objects", Params={"Bucket": bucket})
    res = raw_request(listing, ca_bundle=cluster.ca_bundle)
    assert res.status == 200 and b"<Key>uploaded</Key>" in res.body


def test_a_changed_or_expired_url_is_refused(cluster, s3, bucket):
    client = default_client(cluster)
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a"})
    tampered = url.replace(f"/{bucket}/a?", f"/{bucket}/b?")
    res = raw_request(tampered, ca_bundle=cluster.ca_bundle)
    assert (res.status, res.error_code) == (403, "SignatureDoesNotMatch")
    assert b"<StringToSign" not in res.body and b"SignatureProvided" not in res.body
    # A PUT with a Content-Type the URL was not signed for.
    put = client.generate_presigned_url("put_object", Params={
        "Bucket": bucket, "Key": "c", "ContentType": "a/b"})
    res = raw_request(put, method="PUT", data=b"x", headers={"Content-Type": "c/d"},
                      ca_bundle=cluster.ca_bundle)
    assert res.status in (400, 403) and res.error_code in ("SignatureDoesNotMatch",
                                                           "InvalidRequest")
    unknown = url.replace(f"AWSAccessKeyId={cluster.access_key}",
                          "AWSAccessKeyId=TKNOSUCHKEY000000000")
    res = raw_request(unknown, ca_bundle=cluster.ca_bundle)
    assert (res.status, res.error_code) == (403, "InvalidAccessKeyId")
    short = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a"},
                                          ExpiresIn=1)
    time.sleep(2.2)
    res = raw_request(short, ca_bundle=cluster.ca_bundle)
    assert (res.status, res.error_code) == (403, "AccessDenied")
    assert b"Request has expired" in res.body


def test_header_signatures_and_their_refusals(cluster, s3, bucket):
    client = v2_client(cluster)
    data = random_bytes(6 * MiB + 17)
    client.put_object(Bucket=bucket, Key="v2/obj", Body=data, Metadata={"k": "v"})
    assert client.get_object(Bucket=bucket, Key="v2/obj")["Body"].read() == data
    assert client.head_object(Bucket=bucket, Key="v2/obj")["Metadata"] == {"k": "v"}
    got = client.get_object(Bucket=bucket, Key="v2/obj", Range="bytes=10-19")["Body"].read()
    assert got == data[10:20]
    upload = client.create_multipart_upload(Bucket=bucket, Key="v2/mp")["UploadId"]
    parts = []
    for number, chunk in enumerate([data[:5 * MiB], data[5 * MiB:]], 1):
        etag = client.upload_part(Bucket=bucket, Key="v2/mp", UploadId=upload,
                                  PartNumber=number, Body=chunk)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=bucket, Key="v2/mp", UploadId=upload,
                                     MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key="v2/mp")["Body"].read() == data
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "v2/obj"}]})
    assert "Contents" not in client.list_objects_v2(Bucket=bucket, Prefix="v2/obj")

    wrong = v2_client(cluster, secret_key="not the secret")
    with pytest.raises(ClientError) as err:
        wrong.list_objects_v2(Bucket=bucket)
    assert (http_status(err.value), error_code(err.value)) == (403, "SignatureDoesNotMatch")

    # A Date 20 minutes off: signed correctly, refused for the clock.
    when = email.utils.formatdate(time.time() - 1200, usegmt=True)
    skewed = v2_client(cluster)
    original = auth.HmacV1Auth._get_date
    auth.HmacV1Auth._get_date = lambda self: when
    try:
        with pytest.raises(ClientError) as err:
            skewed.list_objects_v2(Bucket=bucket)
    finally:
        auth.HmacV1Auth._get_date = original
    assert (http_status(err.value), error_code(err.value)) == (403, "RequestTimeTooSkewed")


def test_keys_of_the_key_table_sign_with_sigv2(cluster_http, s3_http):
    cluster = cluster_http
    key = admin_cli(cluster, "key", "create", "v2-user", "--create-bucket")
    client = v2_client(cluster, key["id"], key["secret"])
    bucket = f"v2-{key['id'].lower()}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="k", Body=b"mine")
    url = default_client(cluster, key["id"], key["secret"]).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"})
    assert raw_request(url).body == b"mine"
    other = admin_cli(cluster, "key", "create", "v2-other")
    res = raw_request(default_client(cluster, other["id"], other["secret"]).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}))
    assert (res.status, res.error_code) == (403, "AccessDenied")


RCLONE = shutil.which("rclone")


@pytest.mark.skipif(RCLONE is None, reason="rclone not installed (apt install rclone)")
def test_rclone_with_v2_auth(cluster, bucket, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = {f"f{i}.bin": random_bytes(1000 * i + 1) for i in range(5)}
    files["big.bin"] = random_bytes(7 * MiB)
    for name, body in files.items():
        (src / name).write_bytes(body)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "AWS_"))}
    env.update(RCLONE_CONFIG=str(tmp_path / "rclone.conf"), RCLONE_CONFIG_V2_TYPE="s3",
               RCLONE_CONFIG_V2_PROVIDER="Other", RCLONE_CONFIG_V2_V2_AUTH="true",
               RCLONE_CONFIG_V2_ACCESS_KEY_ID=cluster.access_key,
               RCLONE_CONFIG_V2_SECRET_ACCESS_KEY=cluster.secret_key,
               RCLONE_CONFIG_V2_ENDPOINT=cluster.endpoint, RCLONE_CONFIG_V2_REGION=cluster.region,
               RCLONE_CONFIG_V2_FORCE_PATH_STYLE="true")
    extra = ["--ca-cert", cluster.ca_bundle] if cluster.ca_bundle else []

    def rclone(*args):
        res = subprocess.run([RCLONE, *map(str, args), "--retries", "1", *extra,
                              "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"],
                             env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        return res

    rclone("copy", src, f"v2:{bucket}/tree")
    rclone("check", src, f"v2:{bucket}/tree")
    down = tmp_path / "down"
    rclone("copy", f"v2:{bucket}/tree", down)
    assert {p.name: p.read_bytes() for p in down.iterdir()} == files
    rclone("delete", f"v2:{bucket}/tree")
    assert rclone("lsf", f"v2:{bucket}/tree").stdout.strip() == ""
