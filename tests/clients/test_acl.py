"""ACLs and Object Ownership (issue 20) as users set them: canned ACLs on uploads (a website's
`public-read` assets), grants to another key and to groups in headers and in
AccessControlPolicy documents, who owns what a key writes into another's bucket,
BucketOwnerEnforced disabling ACLs, and the errors S3 gives. Driven through boto3, plain HTTP
and the aws CLI."""

from __future__ import annotations

import dataclasses

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import error_code, http_status, raw_request, unique_bucket
from test_access import admin_cli

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def refusal(call) -> tuple[int, str]:
    with pytest.raises(ClientError) as err:
        call()
    return http_status(err.value), error_code(err.value)


@dataclasses.dataclass
class People:
    cluster: object
    keys: dict[str, dict]
    clients: dict[str, object]

    def id(self, name: str) -> str:
        return self.keys[name]["id"]


@pytest.fixture(scope="module")
def people(cluster_http) -> People:
    """A key that creates buckets (the owner), one it lets write (the writer), and one with no
    grant anywhere (the stranger); plus anonymous and the administrator."""
    keys = {name: admin_cli(cluster_http, "key", "create", f"acl-{name}", *flags)
            for name, flags in [("owner", ["--create-bucket"]), ("writer", []),
                                ("stranger", [])]}
    clients = {name: cluster_http.client(access_key=k["id"], secret_key=k["secret"])
               for name, k in keys.items()}
    clients["admin"] = cluster_http.client()
    clients["anonymous"] = boto3.client(
        "s3", endpoint_url=cluster_http.endpoint, region_name=cluster_http.region,
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}))
    return People(cluster_http, keys, clients)


@pytest.fixture
def bucket(people) -> str:
    """A bucket of the owner key, which the writer key may write to."""
    name = unique_bucket("acl")
    people.clients["owner"].create_bucket(Bucket=name)
    admin_cli(people.cluster, "key", "allow", people.id("writer"), "--bucket", name, "--write")
    return name


def grants(acl: dict) -> set[tuple[str, str]]:
    """An ACL answer's grants as (grantee id or group URI, permission)."""
    return {(g["Grantee"].get("ID") or g["Grantee"]["URI"], g["Permission"])
            for g in acl["Grants"]}


def test_public_read_objects_are_served_to_anyone_and_the_rest_stays_private(people, bucket):
    owner, anonymous = people.clients["owner"], people.clients["anonymous"]
    owner.put_object(Bucket=bucket, Key="site/app.js", Body=b"js", ACL="public-read")
    owner.put_object(Bucket=bucket, Key="site/draft.js", Body=b"draft")
    url = f"{people.cluster.endpoint}/{bucket}"
    res = raw_request(f"{url}/site/app.js")
    assert (res.status, res.body) == (200, b"js")
    assert anonymous.get_object(Bucket=bucket, Key="site/app.js")["Body"].read() == b"js"
    assert (raw_request(f"{url}/site/draft.js").status,
            raw_request(f"{url}/site/draft.js").error_code) == (403, "AccessDenied")
    # A missing key is no different from a private one to someone who may not list.
    assert raw_request(f"{url}/site/none.js").error_code == "AccessDenied"
    assert refusal(lambda: anonymous.list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
    assert refusal(lambda: anonymous.get_object_acl(Bucket=bucket, Key="site/app.js")) \
        == (403, "AccessDenied")
    assert grants(owner.get_object_acl(Bucket=bucket, Key="site/app.js")) == {
        (people.id("owner"), "FULL_CONTROL"), (ALL_USERS, "READ")}
    # Taking it back.
    owner.put_object_acl(Bucket=bucket, Key="site/app.js", ACL="private")
    assert raw_request(f"{url}/site/app.js").status == 403


def test_a_bucket_acl_lets_another_key_list_and_write(people, bucket):
    owner, stranger = people.clients["owner"], people.clients["stranger"]
    assert refusal(lambda: stranger.list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
    owner.put_bucket_acl(Bucket=bucket, GrantRead=f'id="{people.id("stranger")}"',
                         GrantFullControl=f'id="{people.id("owner")}"')
    assert stranger.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert refusal(lambda: stranger.put_object(Bucket=bucket, Key="k", Body=b"x")) \
        == (403, "AccessDenied")
    assert grants(owner.get_bucket_acl(Bucket=bucket)) == {
        (people.id("stranger"), "READ"), (people.id("owner"), "FULL_CONTROL")}
    # AuthenticatedUsers WRITE, in an AccessControlPolicy document this time.
    policy = owner.get_bucket_acl(Bucket=bucket)
    owner.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
        "Owner": policy["Owner"],
        "Grants": [{"Grantee": {"Type": "Group", "URI": AUTHENTICATED}, "Permission": "WRITE"},
                   {"Grantee": {"Type": "CanonicalUser", "ID": people.id("owner")},
                    "Permission": "FULL_CONTROL"}]})
    stranger.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert refusal(lambda: stranger.list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
    assert refusal(lambda: people.clients["anonymous"].put_object(
        Bucket=bucket, Key="k2", Body=b"x")) == (403, "AccessDenied")
    # What the stranger wrote is its own: listed as its, readable by it through the object's ACL.
    listed = owner.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]
    assert [o["Owner"]["ID"] for o in listed] == [people.id("stranger")]
    assert stranger.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    owner.put_bucket_acl(Bucket=bucket, ACL="private")
    assert refusal(lambda: stranger.put_object(Bucket=bucket, Key="k3", Body=b"x")) \
        == (403, "AccessDenied")
    assert grants(owner.get_bucket_acl(Bucket=bucket)) == {(people.id("owner"), "FULL_CONTROL")}


def test_the_writer_owns_what_it_writes_unless_the_bucket_says_otherwise(people, bucket):
    owner, writer = people.clients["owner"], people.clients["writer"]
    writer.put_object(Bucket=bucket, Key="mine", Body=b"w")
    acl = owner.get_object_acl(Bucket=bucket, Key="mine")
    assert acl["Owner"]["ID"] == people.id("writer")
    # The writer may not read the bucket, but may read and share what it owns.
    assert writer.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"w"
    writer.put_object_acl(Bucket=bucket, Key="mine", GrantRead=f'id="{people.id("stranger")}"',
                          GrantFullControl=f'id="{people.id("writer")}"')
    assert people.clients["stranger"].get_object(Bucket=bucket, Key="mine")["Body"].read() == b"w"
    # A multipart upload and a copy give the same owner, and take an ACL too.
    upload = writer.create_multipart_upload(Bucket=bucket, Key="big", ACL="public-read")
    etag = writer.upload_part(Bucket=bucket, Key="big", UploadId=upload["UploadId"],
                              PartNumber=1, Body=b"part")["ETag"]
    writer.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert raw_request(f"{people.cluster.endpoint}/{bucket}/big").body == b"part"
    writer.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "mine"},
                       ACL="bucket-owner-read")
    assert grants(owner.get_object_acl(Bucket=bucket, Key="copy")) == {
        (people.id("writer"), "FULL_CONTROL"), (people.id("owner"), "READ")}
    # BucketOwnerPreferred: what is written with bucket-owner-full-control is the bucket's.
    owner.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]})
    writer.put_object(Bucket=bucket, Key="given", Body=b"g", ACL="bucket-owner-full-control")
    assert owner.get_object_acl(Bucket=bucket, Key="given")["Owner"]["ID"] == people.id("owner")
    writer.put_object(Bucket=bucket, Key="kept", Body=b"k")
    assert owner.get_object_acl(Bucket=bucket, Key="kept")["Owner"]["ID"] == people.id("writer")


def test_bucket_owner_enforced_disables_acls(people, bucket):
    owner, writer = people.clients["owner"], people.clients["writer"]
    owner.put_object(Bucket=bucket, Key="public", Body=b"p", ACL="public-read")
    url = f"{people.cluster.endpoint}/{bucket}/public"
    assert raw_request(url).status == 200
    assert refusal(lambda: owner.get_bucket_ownership_controls(Bucket=bucket)) \
        == (404, "OwnershipControlsNotFoundError")
    enforced = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    owner.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=enforced)
    assert owner.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"] == enforced
    # The object's ACL no longer counts, and none can be set but the owner's full control.
    assert raw_request(url).status == 403
    assert grants(owner.get_object_acl(Bucket=bucket, Key="public")) == {
        (people.id("owner"), "FULL_CONTROL")}
    not_supported = (400, "AccessControlListNotSupported")
    assert refusal(lambda: writer.put_object(Bucket=bucket, Key="k", Body=b"x",
                                             ACL="public-read")) == not_supported
    assert refusal(lambda: owner.put_bucket_acl(Bucket=bucket, ACL="public-read")) == not_supported
    assert refusal(lambda: owner.put_object_acl(Bucket=bucket, Key="public",
                                                ACL="public-read")) == not_supported
    writer.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    writer.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private")
    assert owner.get_object_acl(Bucket=bucket, Key="k")["Owner"]["ID"] == people.id("owner")
    owner.delete_bucket_ownership_controls(Bucket=bucket)
    assert raw_request(url).status == 200


def test_acl_requests_s3_refuses(people, bucket):
    owner = people.clients["owner"]
    owner.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert refusal(lambda: owner.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="private",
                                            GrantRead=f'id="{people.id("writer")}"')) \
        == (400, "InvalidRequest")
    assert refusal(lambda: owner.put_object_acl(Bucket=bucket, Key="k",
                                                GrantRead='id="TKNOSUCHKEY000000000"')) \
        == (400, "InvalidArgument")
    assert refusal(lambda: owner.put_bucket_acl(Bucket=bucket,
                                                GrantRead='emailAddress="a@example.com"')) \
        == (501, "NotImplemented")
    assert refusal(lambda: owner.put_bucket_acl(Bucket=bucket, AccessControlPolicy={
        "Owner": {"ID": people.id("writer")},
        "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"}]})) \
        == (403, "AccessDenied")
    assert refusal(lambda: owner.create_bucket(
        Bucket=unique_bucket("both"), ACL="public-read", ObjectOwnership="BucketOwnerEnforced")) \
        == (400, "InvalidBucketAclWithObjectOwnership")
    assert refusal(lambda: owner.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "Everyone"}]})) \
        == (400, "MalformedXML")
    # Nothing above was stored.
    assert grants(owner.get_object_acl(Bucket=bucket, Key="k")) == {
        (people.id("owner"), "FULL_CONTROL")}
    assert grants(owner.get_bucket_acl(Bucket=bucket)) == {(people.id("owner"), "FULL_CONTROL")}


def test_owners_are_the_keys_that_created_what_they_own(people, bucket):
    owner, admin = people.clients["owner"], people.clients["admin"]
    assert owner.list_buckets()["Owner"]["ID"] == people.id("owner")
    assert admin.list_buckets()["Owner"]["ID"] == "tessera"
    assert owner.head_bucket(Bucket=bucket, ExpectedBucketOwner=people.id("owner"))
    assert refusal(lambda: admin.head_bucket(Bucket=bucket, ExpectedBucketOwner="tessera"))[0] \
        == 403
    owner.put_object(Bucket=bucket, Key="k", Body=b"x")
    source = {"Bucket": bucket, "Key": "k"}
    owner.copy_object(Bucket=bucket, Key="c", CopySource=source,
                      ExpectedSourceBucketOwner=people.id("owner"))
    assert refusal(lambda: owner.copy_object(Bucket=bucket, Key="c", CopySource=source,
                                             ExpectedSourceBucketOwner="tessera")) \
        == (403, "AccessDenied")


def test_bucket_created_public_read_with_the_aws_cli(people, make_aws, tmp_path):
    key = people.keys["owner"]
    aws = make_aws("v1", dataclasses.replace(people.cluster, access_key=key["id"],
                                             secret_key=key["secret"]))
    name = unique_bucket("cli")
    aws.run("s3api", "create-bucket", "--bucket", name, "--acl", "public-read")
    (tmp_path / "index.html").write_bytes(b"<h1>hi</h1>")
    aws.run("s3", "cp", str(tmp_path / "index.html"), f"s3://{name}/index.html",
            "--acl", "public-read")
    assert raw_request(f"{people.cluster.endpoint}/{name}/index.html").body == b"<h1>hi</h1>"
    assert raw_request(f"{people.cluster.endpoint}/{name}").status == 200
    shown = aws.run("s3api", "get-object-acl", "--bucket", name, "--key", "index.html")
    assert ALL_USERS in shown.stdout and "READ" in shown.stdout
