"""Access keys and permissions (issue 20), as a user would use them: keys made with `tessera
admin key ...`, then every S3 operation the gateway serves tried by every kind of caller through
boto3, with exactly the status and code S3 gives in each cell; and the same keys with the aws CLI
(a part of the matrix, with the same expectations, and a read-only key's everyday commands).

The matrix's callers: anonymous, an unknown key id, a known id with a wrong secret, expired
presigned URLs (SigV4 and SigV2), a key without permission, a key that may read (signing with
SigV4, and with SigV2), one that may write, the bucket's owner (a key that created it) and the
configured (administrator) key.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import boto3
import pytest
from botocore import UNSIGNED
from botocore.auth import HmacV1QueryAuth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import TESSERA_BIN, Cluster, note_secret
from helpers import error_code, http_status, raw_request, unique_bucket
from test_post_object import multipart

# --------------------------------------------------------------------------- the world


def tessera_admin(cluster: Cluster, *args: str, key: dict | None = None):
    """`tessera admin ...` as an operator runs it: the cluster's configured key, or `key`."""
    env = dict(cluster.env(), AWS_ENDPOINT_URL=cluster.endpoint)
    if cluster.ca_bundle:
        env["AWS_CA_BUNDLE"] = cluster.ca_bundle
    if key:
        note_secret(key["secret"])
        env.update(TESSERA_ACCESS_KEY_ID=key["id"], TESSERA_SECRET_ACCESS_KEY=key["secret"])
    return subprocess.run([str(TESSERA_BIN), "admin", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def admin_cli(cluster: Cluster, *args: str) -> dict:
    """`tessera admin --json ...`, which must succeed: its answer."""
    res = tessera_admin(cluster, "--json", *args)
    assert res.returncode == 0, f"tessera admin {' '.join(args)}: {res.stderr}"
    return json.loads(res.stdout)


@dataclass
class World:
    cluster: Cluster
    bucket: str                 # created by the owner key, with Object Lock
    keys: dict[str, dict]       # name -> the key as `key create` printed it
    clients: dict[str, object]  # caller -> boto3 client
    counter: int = 0
    acl: str = ""               # the canned ACL the administrator's objects are written with

    @property
    def admin(self):
        return self.clients["admin"]

    def unique(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def grant(self, bucket: str) -> None:
        """The reader may read the bucket, the writer write to it."""
        admin_cli(self.cluster, "key", "allow", self.keys["reader"]["id"], "--bucket", bucket,
                  "--read")
        admin_cli(self.cluster, "key", "allow", self.keys["writer"]["id"], "--bucket", bucket,
                  "--write")

    def obj(self, **extra) -> str:
        key = self.unique("obj")
        if self.acl:
            extra["ACL"] = self.acl
        self.admin.put_object(Bucket=self.bucket, Key=key, Body=b"content", **extra)
        return key

    def upload(self) -> tuple[str, str]:
        key = self.unique("mp")
        return key, self.admin.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]


def tomorrow() -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=1)


@pytest.fixture(scope="module")
def world(cluster_http) -> World:
    cluster = cluster_http
    keys = {name: admin_cli(cluster, "key", "create", name, *flags)
            for name, flags in [("owner", ["--create-bucket"]), ("reader", []), ("writer", []),
                                ("nobody", [])]}
    clients = {name: cluster.client(access_key=key["id"], secret_key=key["secret"])
               for name, key in keys.items()}
    clients["admin"] = cluster.client()
    clients["anonymous"] = _client(cluster, Config(signature_version=UNSIGNED,
                                                   s3={"addressing_style": "path"}))
    clients["unknown"] = cluster.client(access_key="TKNOSUCHKEY000000000",
                                        secret_key="x" * 40)
    clients["wrong-secret"] = cluster.client(access_key=keys["reader"]["id"],
                                             secret_key="y" * 40)
    # Signature Version 2 in the Authorization header, as botocore's "s3" signer sends it.
    clients["reader-v2"] = _client(cluster, Config(signature_version="s3",
                                                   s3={"addressing_style": "path"}),
                                   keys["reader"]["id"], keys["reader"]["secret"])
    bucket = unique_bucket("acl")
    clients["owner"].create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    world = World(cluster, bucket, keys, clients)
    world.grant(bucket)
    return world


def _client(cluster: Cluster, config: Config, access_key=None, secret_key=None):
    return boto3.client("s3", endpoint_url=cluster.endpoint, region_name=cluster.region,
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        config=config)


# --------------------------------------------------------------------------- the operations


@dataclass(frozen=True)
class Op:
    method: str                 # boto3 client method
    needs: frozenset[str]       # "read", "write", "owner", "create" (nothing: ListBuckets)
    prepare: Callable[[World], dict]
    status: int = 200           # the status of success
    code: str = ""              # the error a caller allowed to ask gets (none: success)
    # How to send it when it is no boto3 method (POST Object): (client, params) -> status, code.
    send: Callable[[object, dict], tuple[int, str]] | None = None

    @property
    def name(self) -> str:
        return self.method


READ, WRITE, OWNER = frozenset({"read"}), frozenset({"write"}), frozenset({"owner"})
CORS = {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
LIFECYCLE = {"Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
                        "Expiration": {"Days": 30}}]}
ENCRYPTION = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
TAGS = {"TagSet": [{"Key": "team", "Value": "web"}]}


# A policy that changes no cell of the matrix: it denies what no cell asks (the administrator
# is not bound by policies anyway).
def harmless_policy(bucket: str) -> str:
    return json.dumps({"Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/no-cell-reads-this/*"}]})


# A whole-bucket replication configuration to a peer region, as AWS takes it.
def replication(bucket: str) -> dict:
    return {"Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [{"ID": "all", "Priority": 1, "Status": "Enabled",
                       "Filter": {"Prefix": ""},
                       "DeleteMarkerReplication": {"Status": "Enabled"},
                       "Destination": {"Bucket": f"arn:aws:s3:eu-west-1::{bucket}"}}]}


def bucket_only(w: World) -> dict:
    return {"Bucket": w.bucket}


def with_bucket_setting(put: str, **setting) -> Callable[[World], dict]:
    """The bucket with a setting in place (so that reading or deleting it succeeds)."""
    def prepare(w: World) -> dict:
        getattr(w.admin, put)(Bucket=w.bucket, **setting)
        return {"Bucket": w.bucket}
    return prepare


def an_object(**extra) -> Callable[[World], dict]:
    return lambda w: {"Bucket": w.bucket, "Key": w.obj(**extra)}


def an_upload(w: World) -> dict:
    key, upload_id = w.upload()
    return {"Bucket": w.bucket, "Key": key, "UploadId": upload_id}


def a_completable_upload(w: World) -> dict:
    key, upload_id = w.upload()
    etag = w.admin.upload_part(Bucket=w.bucket, Key=key, UploadId=upload_id, PartNumber=1,
                               Body=b"part")["ETag"]
    return {"Bucket": w.bucket, "Key": key, "UploadId": upload_id,
            "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": etag}]}}


def a_policy(w: World) -> dict:
    """The bucket with a policy: the one it has (the public world's), else a harmless one."""
    try:
        w.admin.get_bucket_policy(Bucket=w.bucket)
    except ClientError as err:
        assert error_code(err) == "NoSuchBucketPolicy", err
        w.admin.put_bucket_policy(Bucket=w.bucket, Policy=harmless_policy(w.bucket))
    return {"Bucket": w.bucket}


def post_form(client, params: dict) -> tuple[int, str]:
    """POST Object: a browser form for the key, signed by the client's key as
    generate_presigned_post signs it (SigV4, or SigV2 for a client signing with "s3"), and
    without signature fields from an unsigned client; its policy expires in `ExpiresIn`."""
    bucket, key = params["Bucket"], params["Key"]
    if client.meta.config.signature_version is UNSIGNED:
        url, fields = f"{client.meta.endpoint_url}/{bucket}", {"key": key}
    else:
        form = client.generate_presigned_post(Bucket=bucket, Key=key,
                                              ExpiresIn=params.get("ExpiresIn", 600))
        url, fields = form["url"], form["fields"]
    body, content_type = multipart(list(fields.items()), "f", b"form", "text/plain")
    res = raw_request(url, method="POST", data=body,
                      headers={"Content-Type": content_type})
    return res.status, res.error_code or ""


def a_bucket_to_delete(w: World) -> dict:
    bucket = unique_bucket("del")
    w.clients["owner"].create_bucket(Bucket=bucket)
    w.grant(bucket)
    return {"Bucket": bucket}


def setting_ops(name: str, put_status: int, **setting) -> list[Op]:
    """PutBucketX (owner), GetBucketX (read) and DeleteBucketX (owner) of one bucket setting."""
    put = f"put_bucket_{name}"
    delete = "delete_bucket_lifecycle" if name == "lifecycle_configuration" \
        else f"delete_bucket_{name}"
    return [
        Op(put, OWNER, lambda w: {"Bucket": w.bucket, **setting}, put_status),
        Op(f"get_bucket_{name}", READ, with_bucket_setting(put, **setting)),
        Op(delete, OWNER, with_bucket_setting(put, **setting), 204),
    ]


OPS = [
    Op("list_buckets", frozenset(), lambda w: {}),
    Op("create_bucket", frozenset({"create"}), lambda w: {"Bucket": unique_bucket("new")}),
    Op("delete_bucket", OWNER, a_bucket_to_delete, 204),
    Op("head_bucket", READ, bucket_only),
    Op("get_bucket_location", READ, bucket_only),
    Op("get_bucket_versioning", READ, bucket_only),
    Op("put_bucket_versioning", OWNER,
       lambda w: {"Bucket": w.bucket, "VersioningConfiguration": {"Status": "Enabled"}}),
    *setting_ops("tagging", 204, Tagging=TAGS),
    *setting_ops("cors", 200, CORSConfiguration=CORS),
    *setting_ops("lifecycle_configuration", 200, LifecycleConfiguration=LIFECYCLE),
    *setting_ops("encryption", 200, ServerSideEncryptionConfiguration=ENCRYPTION),
    Op("put_object_lock_configuration", OWNER,
       lambda w: {"Bucket": w.bucket,
                  "ObjectLockConfiguration": {"ObjectLockEnabled": "Enabled"}}),
    Op("get_object_lock_configuration", READ, bucket_only),
    Op("list_objects", READ, bucket_only),
    Op("list_objects_v2", READ, bucket_only),
    Op("list_object_versions", READ, bucket_only),
    Op("list_multipart_uploads", READ, bucket_only),
    Op("delete_objects", WRITE,
       lambda w: {"Bucket": w.bucket, "Delete": {"Objects": [{"Key": w.obj()}]}}),
    Op("put_object", WRITE, lambda w: {"Bucket": w.bucket, "Key": w.unique("put"),
                                       "Body": b"new"}),
    Op("get_object", READ, an_object()),
    Op("head_object", READ, an_object()),
    Op("copy_object", READ | WRITE,
       lambda w: {"Bucket": w.bucket, "Key": w.unique("copy"),
                  "CopySource": {"Bucket": w.bucket, "Key": w.obj()}}),
    Op("delete_object", WRITE, an_object(), 204),
    Op("put_object_tagging", WRITE,
       lambda w: {"Bucket": w.bucket, "Key": w.obj(), "Tagging": TAGS}),
    Op("get_object_tagging", READ, an_object(Tagging="team=web")),
    Op("delete_object_tagging", WRITE, an_object(Tagging="team=web"), 204),
    Op("get_object_attributes", READ,
       lambda w: {"Bucket": w.bucket, "Key": w.obj(), "ObjectAttributes": ["ETag"]}),
    Op("create_multipart_upload", WRITE, lambda w: {"Bucket": w.bucket, "Key": w.unique("mp")}),
    Op("upload_part", WRITE, lambda w: {**an_upload(w), "PartNumber": 1, "Body": b"part"}),
    Op("upload_part_copy", READ | WRITE,
       lambda w: {**an_upload(w), "PartNumber": 1,
                  "CopySource": {"Bucket": w.bucket, "Key": w.obj()}}),
    Op("complete_multipart_upload", WRITE, a_completable_upload),
    Op("abort_multipart_upload", WRITE, an_upload, 204),
    Op("list_parts", READ, an_upload),
    Op("put_object_retention", WRITE,
       lambda w: {"Bucket": w.bucket, "Key": w.obj(),
                  "Retention": {"Mode": "GOVERNANCE", "RetainUntilDate": tomorrow()}}),
    Op("get_object_retention", READ,
       an_object(ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=tomorrow())),
    Op("put_object_legal_hold", WRITE,
       lambda w: {"Bucket": w.bucket, "Key": w.obj(), "LegalHold": {"Status": "OFF"}}),
    Op("get_object_legal_hold", READ, an_object(ObjectLockLegalHoldStatus="ON")),
    Op("put_bucket_acl", OWNER, lambda w: {"Bucket": w.bucket, "ACL": "private"}),
    Op("get_bucket_acl", OWNER, bucket_only),
    Op("put_object_acl", OWNER, lambda w: {"Bucket": w.bucket, "Key": w.obj(),
                                           "ACL": "private"}),
    Op("get_object_acl", OWNER, an_object()),
    Op("put_bucket_ownership_controls", OWNER, lambda w: {
        "Bucket": w.bucket, "OwnershipControls": {"Rules": [{"ObjectOwnership": "ObjectWriter"}]}}),
    Op("get_bucket_ownership_controls", READ, with_bucket_setting(
        "put_bucket_ownership_controls",
        OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})),
    Op("delete_bucket_ownership_controls", OWNER, bucket_only, 204),
    Op("put_bucket_policy", OWNER,
       lambda w: {"Bucket": w.bucket, "Policy": harmless_policy(w.bucket)}, 204),
    Op("get_bucket_policy", OWNER, a_policy),
    Op("get_bucket_policy_status", OWNER, a_policy),
    Op("delete_bucket_policy", OWNER, a_policy, 204),
    Op("get_bucket_notification_configuration", READ, bucket_only),
    # A cluster of one region has no peer to replicate to: it refuses every configuration
    # (AWS would store this one: 200).
    Op("put_bucket_replication", OWNER,
       lambda w: {"Bucket": w.bucket, "ReplicationConfiguration": replication(w.bucket)},
       400, "InvalidRequest"),
    Op("get_bucket_replication", READ, bucket_only, 404, "ReplicationConfigurationNotFoundError"),
    Op("delete_bucket_replication", OWNER, bucket_only, 204),
    # POST Object, a browser's form upload (see post_form).
    Op("post_object", WRITE, lambda w: {"Bucket": w.bucket, "Key": w.unique("post")}, 204,
       send=post_form),
]

# What each caller may do; the first four never get past authentication.
MAY = {
    "admin": {"read", "write", "owner", "create"},
    "owner": {"read", "write", "owner", "create"},
    "reader": {"read"},
    "reader-v2": {"read"},
    "writer": {"write"},
    "nobody": set(),
}
REFUSED = {
    "anonymous": (403, "AccessDenied"),
    "unknown": (403, "InvalidAccessKeyId"),
    "wrong-secret": (403, "SignatureDoesNotMatch"),
    "expired": (403, "AccessDenied"),
    "expired-v2": (403, "AccessDenied"),
}
CALLERS = [*REFUSED, *MAY]


def expected(op: Op, caller: str) -> tuple[int, str]:
    if caller in REFUSED:
        status, code = REFUSED[caller]
    elif op.needs <= MAY[caller]:
        status, code = op.status, op.code
    else:
        status, code = 403, "AccessDenied"
    return status, (str(status) if code and is_head(op) else code)


def is_head(op: Op) -> bool:
    """HEAD answers carry no body, so clients see the status as the code."""
    return op.method.startswith("head_")


def outcome(client, op: Op, params: dict) -> tuple[int, str]:
    if op.send:
        return op.send(client, params)
    try:
        answer = getattr(client, op.method)(**params)
    except ClientError as err:
        return http_status(err), error_code(err)
    return answer["ResponseMetadata"]["HTTPStatusCode"], ""


class _Captured(Exception):
    pass


def request_line(client, op: Op, params: dict) -> tuple[str, str]:
    """The method and URL boto3 would send for the operation (nothing is sent)."""
    captured = {}

    def capture(request, **_):
        captured.update(method=request.method, url=request.url)
        raise _Captured()

    client.meta.events.register_first("before-send.s3", capture)
    try:
        getattr(client, op.method)(**params)
    except _Captured:
        pass
    finally:
        client.meta.events.unregister("before-send.s3", capture)
    return captured["method"], captured["url"]


@pytest.fixture(scope="module")
def expired_answers(world) -> dict[tuple[str, str], tuple[int, str]]:
    """Every operation's request presigned with the administrator's key to expire in 1 s, with
    SigV4 and with SigV2 (as boto3's presigners do), then sent 2.5 s later."""
    credentials = Credentials(world.cluster.access_key, world.cluster.secret_key)
    signers = {
        "expired": S3SigV4QueryAuth(credentials, "s3", world.cluster.region, expires=1),
        "expired-v2": HmacV1QueryAuth(credentials, expires=1),
    }
    capturer = world.cluster.client()
    # Forms carry their expiration in their policy: one that has passed.
    form_signers = {"expired": capturer,
                    "expired-v2": _client(world.cluster, Config(signature_version="s3",
                                                                s3={"addressing_style": "path"}),
                                          world.cluster.access_key, world.cluster.secret_key)}
    urls, answers = {}, {}
    for op in OPS:
        if op.send:
            for caller, client in form_signers.items():
                answers[caller, op.name] = op.send(client, {**op.prepare(world),
                                                            "ExpiresIn": -10})
            continue
        method, url = request_line(capturer, op, op.prepare(world))
        for caller, signer in signers.items():
            request = AWSRequest(method=method, url=url)
            signer.add_auth(request)
            urls[caller, op.name] = (method, request.url)
    time.sleep(2.5)
    for cell, (method, url) in urls.items():
        res = raw_request(url, method=method, data=b"" if method in ("PUT", "POST") else None)
        answers[cell] = (res.status, res.error_code or (str(res.status) if method == "HEAD"
                                                        else ""))
    return answers


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_matrix(world, expired_answers, op, caller):
    if caller.startswith("expired"):
        got = expired_answers[caller, op.name]
    else:
        got = outcome(world.clients[caller], op, op.prepare(world))
    assert got == expected(op, caller)


# Operations a policy allowing everyone s3:GetObject on the bucket's objects lets anonymous
# callers do; every other cell of that column is 403 AccessDenied.
PUBLIC_READS = {"get_object", "head_object", "get_object_attributes"}


@pytest.fixture(scope="module")
def public_world(world) -> World:
    """The world's callers and operations on a bucket whose policy makes the objects the
    operations prepare (`obj-*`) publicly readable."""
    bucket = unique_bucket("pub")
    world.admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    world.admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/obj-*"}]}))
    return dataclasses.replace(world, bucket=bucket)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_matrix_public_prefix_policy(public_world, op):
    got = outcome(public_world.clients["anonymous"], op, op.prepare(public_world))
    want = (op.status, op.code) if op.name in PUBLIC_READS else expected(op, "anonymous")
    assert got == want


# Operations a bucket with the canned ACL public-read, whose objects have it too, lets
# anonymous callers do: list (READ on the bucket) and read objects (READ on each).
PUBLIC_ACL_READS = {"head_bucket", "list_objects", "list_objects_v2", "list_object_versions",
                    "list_multipart_uploads", "get_object", "head_object",
                    "get_object_attributes"}


@pytest.fixture(scope="module")
def public_acl_world(world) -> World:
    bucket = unique_bucket("pubacl")
    world.admin.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True, ACL="public-read")
    return dataclasses.replace(world, bucket=bucket, acl="public-read")


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_matrix_public_read_acl(public_acl_world, op):
    got = outcome(public_acl_world.clients["anonymous"], op, op.prepare(public_acl_world))
    want = (op.status, op.code) if op.name in PUBLIC_ACL_READS else expected(op, "anonymous")
    assert got == want


# --------------------------------------------------------------------------- beyond the matrix


def test_list_buckets_shows_each_key_what_it_may_see(world):
    names = lambda caller: {b["Name"] for b in world.clients[caller].list_buckets()["Buckets"]}
    assert world.bucket in names("reader") and world.bucket in names("writer")
    assert world.bucket in names("owner") and world.bucket in names("admin")
    assert names("nobody") == set()
    own = unique_bucket("own")
    world.clients["owner"].create_bucket(Bucket=own)
    assert own in names("owner") and own not in names("reader")


def test_a_bucket_name_another_key_holds_is_taken(world):
    with pytest.raises(ClientError) as err:
        world.clients["owner"].create_bucket(Bucket=world.bucket)
    assert (http_status(err.value), error_code(err.value)) == (409, "BucketAlreadyOwnedByYou")
    with pytest.raises(ClientError) as err:
        world.admin.create_bucket(Bucket=world.bucket)
    assert (http_status(err.value), error_code(err.value)) == (409, "BucketAlreadyExists")


def test_governance_bypass_needs_the_owner(world):
    key = world.obj(ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=tomorrow())
    version = world.admin.head_object(Bucket=world.bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError) as err:
        world.clients["writer"].delete_object(Bucket=world.bucket, Key=key, VersionId=version,
                                              BypassGovernanceRetention=True)
    assert (http_status(err.value), error_code(err.value)) == (403, "AccessDenied")
    world.clients["owner"].delete_object(Bucket=world.bucket, Key=key, VersionId=version,
                                         BypassGovernanceRetention=True)


def test_grants_taken_back_and_keys_deleted_stop_working(world):
    key = admin_cli(world.cluster, "key", "create", "temporary")
    client = world.cluster.client(access_key=key["id"], secret_key=key["secret"])
    shown = admin_cli(world.cluster, "key", "allow", key["id"], "--bucket", world.bucket,
                      "--read", "--write")
    assert shown["buckets"] == [{"bucket": world.bucket, "read": True, "write": True,
                                 "owner": False}]
    assert "secret" not in shown and "secret" not in admin_cli(world.cluster, "key", "info",
                                                                 key["id"])
    client.put_object(Bucket=world.bucket, Key="temporary", Body=b"x")
    admin_cli(world.cluster, "key", "deny", key["id"], "--bucket", world.bucket, "--write")
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=world.bucket, Key="temporary", Body=b"y")
    assert error_code(err.value) == "AccessDenied"
    assert client.get_object(Bucket=world.bucket, Key="temporary")["Body"].read() == b"x"
    listed = {k["id"] for k in admin_cli(world.cluster, "key", "list")}
    assert key["id"] in listed
    admin_cli(world.cluster, "key", "delete", key["id"])
    with pytest.raises(ClientError) as err:
        client.get_object(Bucket=world.bucket, Key="temporary")
    assert (http_status(err.value), error_code(err.value)) == (403, "InvalidAccessKeyId")
    assert key["id"] not in {k["id"] for k in admin_cli(world.cluster, "key", "list")}


def test_only_the_administrator_reaches_the_admin_api(world):
    for caller in ("owner", "reader"):
        res = tessera_admin(world.cluster, "key", "list", key=world.keys[caller])
        assert res.returncode != 0 and "403 AccessDenied" in res.stderr


def test_admin_cli_tables(world):
    run = lambda *args: tessera_admin(world.cluster, *args)
    listing = run("key", "list")
    assert listing.returncode == 0, listing.stderr
    reader = world.keys["reader"]["id"]
    row = next(line for line in listing.stdout.splitlines() if line.startswith(reader))
    assert "reader" in row and f"{world.bucket}:R--" in row
    missing = run("key", "info", "TKNOSUCHKEY000000000")
    assert missing.returncode != 0 and "404 NoSuchAccessKey" in missing.stderr
    bad = run("key", "allow", reader, "--read")
    assert bad.returncode != 0 and "InvalidArgument" in bad.stderr
    odd = run("key", "info", "../status")
    assert odd.returncode != 0 and "not an access key id" in odd.stderr


def test_admin_cli_heal(world):
    run = lambda *args: tessera_admin(world.cluster, *args)
    started = run("heal", "z2-n1")
    assert started.returncode == 0, started.stderr
    assert "Heal of z2-n1" in started.stdout
    deadline = time.monotonic() + 60
    while (heal := admin_cli(world.cluster, "heal"))["running"]:
        assert time.monotonic() < deadline, heal
        time.sleep(0.2)
    assert heal["node"] == "z2-n1" and heal["errors"] == 0 and heal["shards_compared"] > 0
    shown = run("heal")
    assert "finished" in shown.stdout and "Shards compared" in shown.stdout
    unknown = run("heal", "no-such-node")
    assert unknown.returncode != 0 and "InvalidArgument" in unknown.stderr


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aws_cli_with_a_read_only_key(world, make_aws, tmp_path, version):
    key = world.keys["reader"]
    aws = make_aws(version, dataclasses.replace(world.cluster, access_key=key["id"],
                                                secret_key=key["secret"]))
    source = world.obj()
    listing = aws.run("s3", "ls", f"s3://{world.bucket}/")
    assert source in listing.stdout
    aws.run("s3", "cp", f"s3://{world.bucket}/{source}", str(tmp_path / "down"))
    assert (tmp_path / "down").read_bytes() == b"content"
    (tmp_path / "up").write_bytes(b"upload")
    res = aws.run("s3", "cp", str(tmp_path / "up"), f"s3://{world.bucket}/up", check=False)
    assert res.returncode != 0 and "AccessDenied" in res.stderr
    res = aws.run("s3", "mb", f"s3://{unique_bucket('cli')}", check=False)
    assert res.returncode != 0 and "AccessDenied" in res.stderr


# --------------------------------------------------------------------------- the aws CLI's matrix

# Operations of every kind (read, write, owner; object and bucket; an allowed answer that is an
# error) that the keyed callers try through the aws CLI, each with the boto3 matrix's
# expectation. Each caller uses one of the two CLIs, so that both see refusals and successes.
CLI_OPS = [op for op in OPS if op.name in {
    "list_objects_v2", "head_object", "get_object", "put_object", "delete_object",
    "put_object_tagging", "get_bucket_policy", "put_bucket_tagging", "get_bucket_replication"}]
CLI_VERSIONS = {"nobody": "v1", "reader": "v2", "writer": "v1", "owner": "v2"}


def cli_args(op: Op, params: dict, tmp_path) -> list[str]:
    """`aws s3api OPERATION --param value ...` for boto3's parameters: bytes go in a file,
    structures as JSON; get-object's output file last."""
    args = ["s3api", op.method.replace("_", "-")]
    for name, value in params.items():
        if isinstance(value, bytes):
            (tmp_path / "body").write_bytes(value)
            value = str(tmp_path / "body")
        elif not isinstance(value, str):
            value = json.dumps(value)
        args += ["--" + re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower(), value]
    if op.method == "get_object":
        args.append(str(tmp_path / "out"))
    return args


@pytest.mark.parametrize("caller", list(CLI_VERSIONS))
@pytest.mark.parametrize("op", CLI_OPS, ids=lambda op: op.name)
def test_aws_cli_matrix(world, make_aws, tmp_path, op, caller):
    key = world.keys[caller]
    aws = make_aws(CLI_VERSIONS[caller], dataclasses.replace(
        world.cluster, access_key=key["id"], secret_key=key["secret"]))
    res = aws.run(*cli_args(op, op.prepare(world), tmp_path), check=False)
    _, code = expected(op, caller)
    if code:  # the CLI shows the code (a HEAD's: its status) and exits non-zero
        assert res.returncode != 0 and f"({code})" in res.stderr, res.stderr
    else:
        assert res.returncode == 0, res.stderr
