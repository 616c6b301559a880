"""S3 Object Lock through boto3 and the aws CLI: a locked version survives every delete path,
GOVERNANCE yields only to `x-amz-bypass-governance-retention`, and every error is AWS's.

What the lock does on node loss, healing and lifecycle expiration is in tests/object_lock.rs."""

from __future__ import annotations

import datetime
import json
import time

import pytest
from botocore.exceptions import ClientError

from helpers import MiB, error_code, http_status, random_bytes, unique_bucket

ACCESS_DENIED = (403, "AccessDenied")


def utc_in(seconds: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)


def client_error(call, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as excinfo:
        call(**kwargs)
    return http_status(excinfo.value), error_code(excinfo.value)


@pytest.fixture
def lock_bucket(s3):
    """A bucket created with Object Lock. Its versions are left to their retention: a COMPLIANCE
    one cannot be removed before it expires, by design."""
    name = unique_bucket("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    yield name
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            try:
                s3.put_object_legal_hold(Bucket=name, Key=v["Key"], VersionId=v["VersionId"],
                                         LegalHold={"Status": "OFF"})
            except ClientError:
                pass
            try:
                s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"],
                                 BypassGovernanceRetention=True)
            except ClientError:
                pass


def versions(s3, bucket: str, key: str) -> list[str]:
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def test_a_lock_bucket_has_versioning_for_good(s3, lock_bucket):
    assert s3.get_bucket_versioning(Bucket=lock_bucket)["Status"] == "Enabled"
    config = s3.get_object_lock_configuration(Bucket=lock_bucket)["ObjectLockConfiguration"]
    assert config == {"ObjectLockEnabled": "Enabled"}
    assert client_error(s3.put_bucket_versioning, Bucket=lock_bucket,
                        VersioningConfiguration={"Status": "Suspended"}) \
        == (409, "InvalidBucketState")
    assert s3.get_bucket_versioning(Bucket=lock_bucket)["Status"] == "Enabled"


def test_compliance_retention_survives_every_delete_path(s3, lock_bucket):
    until = utc_in(86400)
    put = s3.put_object(Bucket=lock_bucket, Key="backup", Body=b"immutable",
                        ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    vid = put["VersionId"]
    head = s3.head_object(Bucket=lock_bucket, Key="backup")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert abs((head["ObjectLockRetainUntilDate"] - until).total_seconds()) < 1
    retention = s3.get_object_retention(Bucket=lock_bucket, Key="backup", VersionId=vid)
    assert retention["Retention"]["Mode"] == "COMPLIANCE"

    for bypass in (False, True):
        assert client_error(s3.delete_object, Bucket=lock_bucket, Key="backup", VersionId=vid,
                            BypassGovernanceRetention=bypass) == ACCESS_DENIED
        answer = s3.delete_objects(Bucket=lock_bucket, BypassGovernanceRetention=bypass,
                                   Delete={"Objects": [{"Key": "backup", "VersionId": vid}]})
        assert [(e["Key"], e["Code"]) for e in answer["Errors"]] == [("backup", "AccessDenied")]
        assert "Deleted" not in answer
    # An overwrite is a new version, and a plain delete a delete marker: the version stays.
    s3.put_object(Bucket=lock_bucket, Key="backup", Body=b"newer")
    marker = s3.delete_object(Bucket=lock_bucket, Key="backup")
    assert marker["DeleteMarker"] is True
    got = s3.get_object(Bucket=lock_bucket, Key="backup", VersionId=vid)
    assert got["Body"].read() == b"immutable"
    assert vid in versions(s3, lock_bucket, "backup")

    # The retention may be extended, never shortened, removed or turned to GOVERNANCE.
    for change in ({"Mode": "COMPLIANCE", "RetainUntilDate": utc_in(3600)},
                   {"Mode": "GOVERNANCE", "RetainUntilDate": utc_in(2 * 86400)}, {}):
        for bypass in (False, True):
            assert client_error(s3.put_object_retention, Bucket=lock_bucket, Key="backup",
                                VersionId=vid, Retention=change,
                                BypassGovernanceRetention=bypass) == ACCESS_DENIED
    later = utc_in(2 * 86400)
    s3.put_object_retention(Bucket=lock_bucket, Key="backup", VersionId=vid,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    retention = s3.get_object_retention(Bucket=lock_bucket, Key="backup", VersionId=vid)
    assert abs((retention["Retention"]["RetainUntilDate"] - later).total_seconds()) < 1


def test_governance_yields_only_to_the_bypass_header(s3, lock_bucket):
    vid = s3.put_object(Bucket=lock_bucket, Key="gov", Body=b"g", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=utc_in(86400))["VersionId"]
    assert client_error(s3.delete_object, Bucket=lock_bucket, Key="gov",
                        VersionId=vid) == ACCESS_DENIED
    answer = s3.delete_objects(Bucket=lock_bucket,
                               Delete={"Objects": [{"Key": "gov", "VersionId": vid}]})
    assert [e["Code"] for e in answer["Errors"]] == ["AccessDenied"]
    shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": utc_in(3600)}
    assert client_error(s3.put_object_retention, Bucket=lock_bucket, Key="gov", VersionId=vid,
                        Retention=shorter) == ACCESS_DENIED
    s3.put_object_retention(Bucket=lock_bucket, Key="gov", VersionId=vid, Retention=shorter,
                            BypassGovernanceRetention=True)
    answer = s3.delete_objects(Bucket=lock_bucket, BypassGovernanceRetention=True,
                               Delete={"Objects": [{"Key": "gov", "VersionId": vid}]})
    assert [d["VersionId"] for d in answer["Deleted"]] == [vid]
    assert versions(s3, lock_bucket, "gov") == []

    vid = s3.put_object(Bucket=lock_bucket, Key="gov2", Body=b"g", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=utc_in(86400))["VersionId"]
    s3.delete_object(Bucket=lock_bucket, Key="gov2", VersionId=vid,
                     BypassGovernanceRetention=True)
    assert versions(s3, lock_bucket, "gov2") == []


def test_a_legal_hold_holds_until_it_is_lifted(s3, lock_bucket):
    vid = s3.put_object(Bucket=lock_bucket, Key="held", Body=b"h",
                        ObjectLockLegalHoldStatus="ON")["VersionId"]
    assert s3.head_object(Bucket=lock_bucket, Key="held")["ObjectLockLegalHoldStatus"] == "ON"
    assert client_error(s3.get_object_retention, Bucket=lock_bucket, Key="held") \
        == (404, "NoSuchObjectLockConfiguration")
    for bypass in (False, True):
        assert client_error(s3.delete_object, Bucket=lock_bucket, Key="held", VersionId=vid,
                            BypassGovernanceRetention=bypass) == ACCESS_DENIED
    s3.put_object_legal_hold(Bucket=lock_bucket, Key="held", LegalHold={"Status": "OFF"})
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="held")["LegalHold"] \
        == {"Status": "OFF"}
    s3.delete_object(Bucket=lock_bucket, Key="held", VersionId=vid)
    assert versions(s3, lock_bucket, "held") == []

    vid = s3.put_object(Bucket=lock_bucket, Key="later", Body=b"l")["VersionId"]
    assert client_error(s3.get_object_legal_hold, Bucket=lock_bucket, Key="later") \
        == (404, "NoSuchObjectLockConfiguration")
    s3.put_object_legal_hold(Bucket=lock_bucket, Key="later", VersionId=vid,
                             LegalHold={"Status": "ON"})
    assert client_error(s3.delete_object, Bucket=lock_bucket, Key="later",
                        VersionId=vid) == ACCESS_DENIED
    # A legal hold is a revision of the version: its id, bytes and tags stay.
    s3.put_object_tagging(Bucket=lock_bucket, Key="later", VersionId=vid,
                          Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    assert s3.get_object_legal_hold(Bucket=lock_bucket, Key="later")["LegalHold"]["Status"] == "ON"
    assert s3.get_object(Bucket=lock_bucket, Key="later")["Body"].read() == b"l"


def test_a_retention_expires_by_the_servers_clock(s3, lock_bucket):
    vid = s3.put_object(Bucket=lock_bucket, Key="short", Body=b"s", ObjectLockMode="COMPLIANCE",
                        ObjectLockRetainUntilDate=utc_in(4))["VersionId"]
    assert client_error(s3.delete_object, Bucket=lock_bucket, Key="short",
                        VersionId=vid) == ACCESS_DENIED
    time.sleep(5)
    s3.delete_object(Bucket=lock_bucket, Key="short", VersionId=vid)
    assert versions(s3, lock_bucket, "short") == []


def test_default_retention_applies_to_writes_that_ask_for_none(s3, lock_bucket):
    s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}})
    config = s3.get_object_lock_configuration(Bucket=lock_bucket)["ObjectLockConfiguration"]
    assert config["Rule"] == {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 2}}
    vid = s3.put_object(Bucket=lock_bucket, Key="default", Body=b"d")["VersionId"]
    head = s3.head_object(Bucket=lock_bucket, Key="default")
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert abs((head["ObjectLockRetainUntilDate"] - utc_in(2 * 86400)).total_seconds()) < 60
    assert client_error(s3.delete_object, Bucket=lock_bucket, Key="default",
                        VersionId=vid) == ACCESS_DENIED
    # What a write asks for wins over the default.
    s3.put_object(Bucket=lock_bucket, Key="asked", Body=b"a", ObjectLockMode="COMPLIANCE",
                  ObjectLockRetainUntilDate=utc_in(60))
    assert s3.head_object(Bucket=lock_bucket, Key="asked")["ObjectLockMode"] == "COMPLIANCE"

    s3.put_object_lock_configuration(Bucket=lock_bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Years": 1}}})
    s3.put_object(Bucket=lock_bucket, Key="year", Body=b"y")
    head = s3.head_object(Bucket=lock_bucket, Key="year")
    assert abs((head["ObjectLockRetainUntilDate"] - utc_in(365 * 86400)).total_seconds()) < 60
    s3.put_object_lock_configuration(Bucket=lock_bucket,
                                     ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    s3.put_object(Bucket=lock_bucket, Key="none", Body=b"n")
    assert "ObjectLockMode" not in s3.head_object(Bucket=lock_bucket, Key="none")


def test_lock_on_multipart_uploads_and_copies(s3, lock_bucket):
    until = utc_in(86400)
    upload = s3.create_multipart_upload(Bucket=lock_bucket, Key="mp", ObjectLockMode="GOVERNANCE",
                                        ObjectLockRetainUntilDate=until,
                                        ObjectLockLegalHoldStatus="ON")["UploadId"]
    parts = []
    for number, data in enumerate([random_bytes(5 * MiB), random_bytes(1000)], start=1):
        etag = s3.upload_part(Bucket=lock_bucket, Key="mp", UploadId=upload, PartNumber=number,
                              Body=data)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    vid = s3.complete_multipart_upload(Bucket=lock_bucket, Key="mp", UploadId=upload,
                                       MultipartUpload={"Parts": parts})["VersionId"]
    head = s3.head_object(Bucket=lock_bucket, Key="mp")
    assert (head["ObjectLockMode"], head["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", "ON")
    assert client_error(s3.delete_object, Bucket=lock_bucket, Key="mp", VersionId=vid,
                        BypassGovernanceRetention=True) == ACCESS_DENIED

    # A copy gets what its request asks for; the source's lock stays with the source.
    s3.copy_object(Bucket=lock_bucket, Key="copy", CopySource={"Bucket": lock_bucket, "Key": "mp"})
    head = s3.head_object(Bucket=lock_bucket, Key="copy")
    assert "ObjectLockMode" not in head and "ObjectLockLegalHoldStatus" not in head
    s3.copy_object(Bucket=lock_bucket, Key="copy", CopySource={"Bucket": lock_bucket, "Key": "mp"},
                   ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=until)
    assert s3.head_object(Bucket=lock_bucket, Key="copy")["ObjectLockMode"] == "COMPLIANCE"


def test_object_lock_errors_are_awss(s3, bucket, lock_bucket):
    future = utc_in(86400)
    missing_config = (400, "InvalidRequest")
    assert client_error(s3.put_object, Bucket=bucket, Key="k", Body=b"x",
                        ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=future) == missing_config
    assert client_error(s3.put_object, Bucket=bucket, Key="k", Body=b"x",
                        ObjectLockLegalHoldStatus="OFF") == missing_config
    s3.put_object(Bucket=bucket, Key="plain", Body=b"p")
    assert client_error(s3.put_object_retention, Bucket=bucket, Key="plain",
                        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": future}) \
        == missing_config
    assert client_error(s3.get_object_legal_hold, Bucket=bucket, Key="plain") == missing_config
    assert client_error(s3.get_object_lock_configuration, Bucket=bucket) \
        == (404, "ObjectLockConfigurationNotFoundError")
    # Object Lock needs versioning enabled first.
    assert client_error(s3.put_object_lock_configuration, Bucket=bucket,
                        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}) \
        == (409, "InvalidBucketState")

    invalid = (400, "InvalidArgument")
    assert client_error(s3.put_object, Bucket=lock_bucket, Key="k", Body=b"x",
                        ObjectLockMode="GOVERNANCE") == invalid
    assert client_error(s3.put_object, Bucket=lock_bucket, Key="k", Body=b"x",
                        ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=utc_in(-60)) \
        == invalid
    for status in ("on", "MAYBE"):
        assert client_error(s3.put_object, Bucket=lock_bucket, Key="k", Body=b"x",
                            ObjectLockLegalHoldStatus=status) == invalid
    for rule in ({"Mode": "GOVERNANCE", "Days": 0}, {"Mode": "GOVERNANCE", "Years": 101}):
        assert client_error(s3.put_object_lock_configuration, Bucket=lock_bucket,
                            ObjectLockConfiguration={"ObjectLockEnabled": "Enabled",
                                                     "Rule": {"DefaultRetention": rule}}) \
            == invalid
    assert client_error(s3.put_object_lock_configuration, Bucket=lock_bucket,
                        ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {
                            "DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}}) \
        == (400, "MalformedXML")
    s3.put_object(Bucket=lock_bucket, Key="k", Body=b"x")
    assert client_error(s3.put_object_retention, Bucket=lock_bucket, Key="k",
                        Retention={"Mode": "GOVERNANCE", "RetainUntilDate": utc_in(-60)}) == invalid
    assert client_error(s3.get_object_retention, Bucket=lock_bucket, Key="k") \
        == (404, "NoSuchObjectLockConfiguration")
    assert client_error(s3.put_object_legal_hold, Bucket=lock_bucket, Key="nope",
                        LegalHold={"Status": "ON"}) == (404, "NoSuchKey")
    # None of the refused writes made a version.
    assert versions(s3, lock_bucket, "k") != [] and len(versions(s3, lock_bucket, "k")) == 1


def test_lock_on_an_existing_versioned_bucket(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    vid = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    assert client_error(s3.delete_object, Bucket=bucket, Key="k", VersionId=vid) == ACCESS_DENIED
    s3.delete_object(Bucket=bucket, Key="k", VersionId=vid, BypassGovernanceRetention=True)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aws_cli_object_lock(cluster_http, make_aws, version, tmp_path):
    aws = make_aws(version, cluster_http)
    name = unique_bucket("cli-lock")
    aws.run("s3api", "create-bucket", "--bucket", name, "--object-lock-enabled-for-bucket")
    body = tmp_path / "body"
    body.write_bytes(b"kept for a while")
    until = utc_in(86400).strftime("%Y-%m-%dT%H:%M:%SZ")
    put = json.loads(aws.run("s3api", "put-object", "--bucket", name, "--key", "k", "--body", body,
                             "--object-lock-mode", "GOVERNANCE",
                             "--object-lock-retain-until-date", until).stdout)
    vid = put["VersionId"]
    retention = json.loads(aws.run("s3api", "get-object-retention", "--bucket", name,
                                   "--key", "k").stdout)
    assert retention["Retention"]["Mode"] == "GOVERNANCE"
    refused = aws.run("s3api", "delete-object", "--bucket", name, "--key", "k",
                      "--version-id", vid, check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    aws.run("s3api", "put-object-legal-hold", "--bucket", name, "--key", "k",
            "--legal-hold", "Status=ON")
    refused = aws.run("s3api", "delete-object", "--bucket", name, "--key", "k",
                      "--version-id", vid, "--bypass-governance-retention", check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    aws.run("s3api", "put-object-legal-hold", "--bucket", name, "--key", "k",
            "--legal-hold", "Status=OFF")
    aws.run("s3api", "delete-object", "--bucket", name, "--key", "k", "--version-id", vid,
            "--bypass-governance-retention")
    aws.run("s3api", "delete-bucket", "--bucket", name)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aws_cli_object_lock_configuration(cluster_http, make_aws, version, tmp_path):
    """A default retention set with put-object-lock-configuration is read back, and an object
    written without lock headers gets it."""
    aws = make_aws(version, cluster_http)
    name = unique_bucket("cli-lockcfg")
    aws.run("s3api", "create-bucket", "--bucket", name, "--object-lock-enabled-for-bucket")
    config = {"ObjectLockEnabled": "Enabled",
              "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
    aws.run("s3api", "put-object-lock-configuration", "--bucket", name,
            "--object-lock-configuration", json.dumps(config))
    got = json.loads(aws.run("s3api", "get-object-lock-configuration", "--bucket",
                             name).stdout)
    assert got["ObjectLockConfiguration"] == config
    body = tmp_path / "body"
    body.write_bytes(b"locked by default")
    before = utc_in(86400 - 60)
    vid = json.loads(aws.run("s3api", "put-object", "--bucket", name, "--key", "k",
                             "--body", body).stdout)["VersionId"]
    retention = json.loads(aws.run("s3api", "get-object-retention", "--bucket", name,
                                   "--key", "k").stdout)["Retention"]
    assert retention["Mode"] == "GOVERNANCE"
    until = datetime.datetime.fromisoformat(retention["RetainUntilDate"].replace("Z", "+00:00"))
    assert before <= until <= utc_in(86400 + 60)
    refused = aws.run("s3api", "delete-object", "--bucket", name, "--key", "k",
                      "--version-id", vid, check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stderr
    aws.run("s3api", "delete-object", "--bucket", name, "--key", "k", "--version-id", vid,
            "--bypass-governance-retention")
    aws.run("s3api", "delete-bucket", "--bucket", name)
