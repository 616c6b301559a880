"""Bucket policies (issue 20) as users write them: a website's public prefix read by anonymous
clients, a key given a prefix through a policy, an explicit Deny over a key's grant, source
address conditions, GetBucketPolicyStatus, and every policy outside the subset refused by name
and never stored. Driven through boto3 (signed and unsigned), plain HTTP and the aws CLI."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import error_code, http_status, raw_request, unique_bucket
from test_access import admin_cli


def public_prefix(bucket: str, prefix: str = "public/") -> dict:
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/{prefix}*"}]}


def refusal(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as err:
        call()
    return http_status(err.value), error_code(err.value)


@pytest.fixture
def anonymous(cluster_http):
    return boto3.client("s3", endpoint_url=cluster_http.endpoint, region_name=cluster_http.region,
                        config=Config(signature_version=UNSIGNED,
                                      s3={"addressing_style": "path"}))


@pytest.fixture
def site(s3_http):
    bucket = unique_bucket("site")
    s3_http.create_bucket(Bucket=bucket)
    for key in ("public/index.html", "public/css/app.css", "private/secret.txt"):
        s3_http.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def test_a_public_prefix_is_served_to_anonymous_clients_and_nothing_else(
        cluster_http, s3_http, anonymous, site):
    url = f"{cluster_http.endpoint}/{site}"
    assert raw_request(f"{url}/public/index.html").status == 403
    s3_http.put_bucket_policy(Bucket=site, Policy=json.dumps(public_prefix(site)))

    res = raw_request(f"{url}/public/css/app.css")
    assert (res.status, res.body) == (200, b"public/css/app.css")
    assert raw_request(f"{url}/public/index.html", method="HEAD").status == 200
    assert anonymous.get_object(Bucket=site, Key="public/index.html")["Body"].read() \
        == b"public/index.html"
    assert (raw_request(f"{url}/private/secret.txt").status,
            raw_request(f"{url}/private/secret.txt").error_code) == (403, "AccessDenied")
    assert refusal(lambda: anonymous.put_object(Bucket=site, Key="public/new", Body=b"x")) \
        == (403, "AccessDenied")
    assert refusal(lambda: anonymous.delete_object(Bucket=site, Key="public/index.html")) \
        == (403, "AccessDenied")
    assert refusal(lambda: anonymous.list_objects_v2(Bucket=site)) == (403, "AccessDenied")
    assert refusal(lambda: anonymous.get_bucket_policy(Bucket=site)) == (403, "AccessDenied")
    assert refusal(lambda: anonymous.list_buckets()) == (403, "AccessDenied")
    assert raw_request(f"{cluster_http.endpoint}/_tessera/status").status == 403
    assert s3_http.get_object(Bucket=site, Key="public/index.html")["Body"].read()

    assert json.loads(s3_http.get_bucket_policy(Bucket=site)["Policy"]) == public_prefix(site)
    assert s3_http.get_bucket_policy_status(Bucket=site)["PolicyStatus"]["IsPublic"] is True

    s3_http.delete_bucket_policy(Bucket=site)
    assert raw_request(f"{url}/public/index.html").status == 403
    assert refusal(lambda: s3_http.get_bucket_policy(Bucket=site)) == (404, "NoSuchBucketPolicy")
    assert refusal(lambda: s3_http.get_bucket_policy_status(Bucket=site)) \
        == (404, "NoSuchBucketPolicy")


def test_a_policy_gives_a_key_a_prefix_and_a_deny_beats_a_grant(cluster_http, s3_http, site):
    uploader = admin_cli(cluster_http, "key", "create", "uploader")
    writer = admin_cli(cluster_http, "key", "create", "policy-writer")
    admin_cli(cluster_http, "key", "allow", writer["id"], "--bucket", site, "--read", "--write")
    policy = {"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": [uploader["id"]]}, "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{site}/uploads/*"},
        {"Effect": "Deny", "Principal": {"AWS": writer["id"]}, "Action": "s3:DeleteObject",
         "Resource": f"arn:aws:s3:::{site}/public/*"},
    ]}
    s3_http.put_bucket_policy(Bucket=site, Policy=json.dumps(policy))
    as_uploader = cluster_http.client(access_key=uploader["id"], secret_key=uploader["secret"])
    as_writer = cluster_http.client(access_key=writer["id"], secret_key=writer["secret"])

    as_uploader.put_object(Bucket=site, Key="uploads/photo.jpg", Body=b"jpeg")
    assert refusal(lambda: as_uploader.put_object(Bucket=site, Key="elsewhere", Body=b"x")) \
        == (403, "AccessDenied")
    # The policy gives no s3:GetObject; what the uploader reads is what it owns (its ACL).
    assert as_uploader.get_object(Bucket=site, Key="uploads/photo.jpg")["Body"].read() == b"jpeg"
    assert refusal(lambda: as_uploader.get_object(Bucket=site, Key="public/index.html")) \
        == (403, "AccessDenied")
    # Multipart uploads are PutObject too.
    upload = as_uploader.create_multipart_upload(Bucket=site, Key="uploads/big")["UploadId"]
    etag = as_uploader.upload_part(Bucket=site, Key="uploads/big", UploadId=upload,
                                   PartNumber=1, Body=b"part")["ETag"]
    as_uploader.complete_multipart_upload(Bucket=site, Key="uploads/big", UploadId=upload,
                                          MultipartUpload={"Parts": [{"PartNumber": 1,
                                                                      "ETag": etag}]})
    assert s3_http.get_object(Bucket=site, Key="uploads/big")["Body"].read() == b"part"

    assert refusal(lambda: as_writer.delete_object(Bucket=site, Key="public/index.html")) \
        == (403, "AccessDenied")
    as_writer.delete_object(Bucket=site, Key="uploads/photo.jpg")
    answer = as_writer.delete_objects(Bucket=site, Delete={"Objects": [
        {"Key": "public/css/app.css"}, {"Key": "private/secret.txt"}]})
    assert [d["Key"] for d in answer.get("Deleted", [])] == ["private/secret.txt"]
    assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [
        ("public/css/app.css", "AccessDenied")]
    assert s3_http.head_object(Bucket=site, Key="public/css/app.css")
    # The administrator is not bound by policies.
    s3_http.delete_object(Bucket=site, Key="public/index.html")
    # Only the bucket's owner reads its policy.
    assert refusal(lambda: as_writer.get_bucket_policy(Bucket=site)) == (403, "AccessDenied")


def test_source_address_conditions(cluster_http, s3_http, site):
    url = f"{cluster_http.endpoint}/{site}/private/secret.txt"
    for nets, status, public in [(["127.0.0.0/8"], 200, False), (["10.0.0.0/8", "::1"], 403, False)]:
        s3_http.put_bucket_policy(Bucket=site, Policy=json.dumps({"Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{site}", f"arn:aws:s3:::{site}/*"],
            "Condition": {"IpAddress": {"aws:SourceIp": nets}}}]}))
        assert raw_request(url).status == status, nets
        assert raw_request(f"{cluster_http.endpoint}/{site}?list-type=2").status == status
        assert s3_http.get_bucket_policy_status(Bucket=site)["PolicyStatus"]["IsPublic"] is public
    s3_http.put_bucket_policy(Bucket=site, Policy=json.dumps({"Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{site}", f"arn:aws:s3:::{site}/*"],
        "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}))
    reader = admin_cli(cluster_http, "key", "create", "far-reader")
    admin_cli(cluster_http, "key", "allow", reader["id"], "--bucket", site, "--read")
    as_reader = cluster_http.client(access_key=reader["id"], secret_key=reader["secret"])
    assert refusal(lambda: as_reader.get_object(Bucket=site, Key="private/secret.txt")) \
        == (403, "AccessDenied")


@pytest.mark.parametrize("statement_change, named", [
    ({"NotAction": "s3:PutObject"}, "NotAction"),
    ({"Action": "s3:GetObjectAcl"}, "s3:GetObjectAcl"),
    ({"Action": ["s3:GetObject", "s3:PutBucketPolicy"]}, "s3:PutBucketPolicy"),
    ({"Principal": {"Service": "cloudfront.amazonaws.com"}}, "Service"),
    ({"Principal": {"AWS": "arn:aws:iam::123456789012:root"}}, "arn:aws:iam"),
    ({"Resource": "arn:aws:s3:::some-other-bucket/*"}, "invalid resource"),
    ({"Resource": "arn:aws:s3:::BUCKET/home/${aws:username}/*"}, "variables"),
    ({"Condition": {"StringLike": {"aws:Referer": "https://example.com/*"}}}, "StringLike"),
    ({"Condition": {"IpAddress": {"aws:SourceIp": "not-an-address"}}}, "not-an-address"),
    ({"Condition": {"Bool": {"aws:SecureTransport": "false"}}}, "Bool"),
    ({"Effect": "Maybe"}, "Maybe"),
])
def test_policies_outside_the_subset_are_refused_and_not_stored(s3_http, site,
                                                                statement_change, named):
    s3_http.put_bucket_policy(Bucket=site, Policy=json.dumps(public_prefix(site)))
    policy = public_prefix(site)
    policy["Statement"][0].update(json.loads(json.dumps(statement_change).replace("BUCKET", site)))
    with pytest.raises(ClientError) as err:
        s3_http.put_bucket_policy(Bucket=site, Policy=json.dumps(policy))
    assert (http_status(err.value), error_code(err.value)) == (400, "MalformedPolicy")
    assert named in err.value.response["Error"]["Message"]
    assert json.loads(s3_http.get_bucket_policy(Bucket=site)["Policy"]) == public_prefix(site)


def test_not_json_and_too_large(s3_http, site):
    for body in ["{not json", json.dumps({"Statement": []}), "x" * 21000]:
        assert refusal(lambda: s3_http.put_bucket_policy(Bucket=site, Policy=body)) \
            == (400, "MalformedPolicy")
    assert refusal(lambda: s3_http.get_bucket_policy(Bucket=site)) == (404, "NoSuchBucketPolicy")


def test_notification_configuration_is_empty(s3_http, site):
    answer = s3_http.get_bucket_notification_configuration(Bucket=site)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert not {k for k in answer if k.endswith("Configurations")}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aws_cli_policy_commands(cluster_http, make_aws, s3_http, site, tmp_path, version):
    aws = make_aws(version, cluster_http)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(public_prefix(site)))
    aws.run("s3api", "put-bucket-policy", "--bucket", site, "--policy", f"file://{path}")
    status = json.loads(aws.run("s3api", "get-bucket-policy-status", "--bucket", site).stdout)
    assert status["PolicyStatus"]["IsPublic"] is True
    got = json.loads(aws.run("s3api", "get-bucket-policy", "--bucket", site).stdout)
    assert json.loads(got["Policy"]) == public_prefix(site)
    assert raw_request(f"{cluster_http.endpoint}/{site}/public/index.html").status == 200
    aws.run("s3api", "delete-bucket-policy", "--bucket", site)
    assert raw_request(f"{cluster_http.endpoint}/{site}/public/index.html").status == 403
