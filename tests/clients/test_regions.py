"""Two regions (`tessera dev --regions 2`: us-east-1 and eu-west-1) as a user drives them with
boto3 and the aws CLI: a bucket made in one region appears in the other, an object written in
one reads back from the other, with its replication status on both sides, and a delete follows
it there."""

from __future__ import annotations

import re
import ssl
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import Cluster, free_port, make_tls_cert
from helpers import MiB, dashboard_metrics, random_bytes, unique_bucket

EAST, WEST = "us-east-1", "eu-west-1"


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    base = tmp_path_factory.mktemp("regions")
    # The second region's S3 and console ports follow the first's: two ports apart.
    port = free_port()
    while not all(_free(p) for p in range(port, port + 4)):
        port = free_port()
    # Over TLS: the regions reach each other over it, and SSE-C asks for it.
    ca, cert, key = make_tls_cert(base / "tls")
    cluster = Cluster(name="regions", data_dir=base / "data", log_path=base / "tessera-dev.log",
                      port=port, console_port=port + 1,
                      dev_args=("--regions", "2", "--tls-ca", str(ca)))
    cluster.tls, cluster.ca_bundle = (cert, key), str(ca)
    cluster.start()
    deadline = time.monotonic() + 60
    while len(cluster.endpoints()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    yield cluster
    cluster.stop()


def _free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def client(cluster: Cluster, region: str):
    return boto3.client(
        "s3", endpoint_url=cluster.endpoints()[region], region_name=region,
        aws_access_key_id=cluster.access_key, aws_secret_access_key=cluster.secret_key,
        verify=cluster.ca_bundle,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def eventually(check, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, ClientError) as err:
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: {err}")
            time.sleep(0.2)


def test_dev_prints_one_endpoint_per_region_and_one_key_works_in_both(regions):
    endpoints = regions.endpoints()
    assert sorted(endpoints) == sorted([EAST, WEST])
    log = regions.log_path.read_text()
    assert f"S3 endpoint ({EAST}): https://127.0.0.1:{regions.port}" in log
    assert f"S3 endpoint ({WEST}): https://127.0.0.1:{regions.port + 2}" in log
    for region in (EAST, WEST):
        client(regions, region).list_buckets()


def test_an_object_written_in_one_region_reads_back_from_the_other(regions, make_aws, tmp_path):
    east, west = client(regions, EAST), client(regions, WEST)
    bucket = unique_bucket("geo")
    east.create_bucket(Bucket=bucket)
    eventually(lambda: west.head_bucket(Bucket=bucket), "the bucket in eu-west-1")

    data = random_bytes(200_000)
    put = east.put_object(Bucket=bucket, Key="photos/beach.jpg", Body=data,
                          ContentType="image/jpeg", Metadata={"camera": "x100"})
    status = east.head_object(Bucket=bucket, Key="photos/beach.jpg")["ReplicationStatus"]
    assert status in ("PENDING", "COMPLETED")

    def copied():
        got = west.get_object(Bucket=bucket, Key="photos/beach.jpg")
        assert got["Body"].read() == data
        return got

    got = eventually(copied, "the object in eu-west-1")
    assert got["ReplicationStatus"] == "REPLICA"
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "image/jpeg"
    assert got["Metadata"] == {"camera": "x100"}

    def completed():
        head = east.head_object(Bucket=bucket, Key="photos/beach.jpg")
        assert head["ReplicationStatus"] == "COMPLETED", head["ReplicationStatus"]

    eventually(completed, "COMPLETED in us-east-1")

    # The aws CLI (pip's, which sends a CRC32 checksum) writes in us-east-1 too.
    aws = make_aws("v1", regions)
    source = tmp_path / "notes.txt"
    source.write_bytes(b"written with the aws CLI\n")
    aws.run("s3", "cp", source, f"s3://{bucket}/notes.txt")

    def cli_copy():
        got = west.get_object(Bucket=bucket, Key="notes.txt")["Body"].read()
        assert got == source.read_bytes()

    eventually(cli_copy, "the CLI's object in eu-west-1")

    # A delete in eu-west-1 follows to us-east-1.
    west.delete_object(Bucket=bucket, Key="photos/beach.jpg")

    def deleted():
        try:
            east.head_object(Bucket=bucket, Key="photos/beach.jpg")
        except ClientError as err:
            assert err.response["Error"]["Code"] == "404"
            return
        raise AssertionError("still there")

    eventually(deleted, "the delete in us-east-1")


def test_encrypted_objects_replicate_and_customer_keyed_ones_stay(regions):
    east, west = client(regions, EAST), client(regions, WEST)
    bucket = unique_bucket("sealed")
    east.create_bucket(Bucket=bucket)
    eventually(lambda: west.head_bucket(Bucket=bucket), "the bucket in eu-west-1")
    body = random_bytes(300_000)
    east.put_object(Bucket=bucket, Key="sse-s3", Body=body, ServerSideEncryption="AES256")
    key = bytes(range(32))
    east.put_object(Bucket=bucket, Key="sse-c", Body=b"the customer's", SSECustomerAlgorithm="AES256",
                    SSECustomerKey=key)
    # Under SSE-S3 it is read with this region's master key and encrypted with the peer's.
    got = eventually(lambda: west.get_object(Bucket=bucket, Key="sse-s3"), "the object in eu-west-1")
    assert got["Body"].read() == body
    assert got["ServerSideEncryption"] == "AES256"
    assert got["ReplicationStatus"] == "REPLICA"
    eventually(lambda: (east.head_object(Bucket=bucket, Key="sse-s3")["ReplicationStatus"]
                        == "COMPLETED") or pytest.fail("not yet"), "COMPLETED in us-east-1")
    # Under a customer's key it cannot be read without the key, which is not kept: never queued.
    head = east.head_object(Bucket=bucket, Key="sse-c", SSECustomerAlgorithm="AES256",
                            SSECustomerKey=key)
    assert "ReplicationStatus" not in head
    east.put_object(Bucket=bucket, Key="after", Body=b"later")
    eventually(lambda: west.head_object(Bucket=bucket, Key="after"), "a later object in eu-west-1")
    with pytest.raises(ClientError) as err:
        west.head_object(Bucket=bucket, Key="sse-c", SSECustomerAlgorithm="AES256", SSECustomerKey=key)
    assert err.value.response["Error"]["Code"] == "404"


def test_a_multipart_object_replicates_with_its_parts_etag_and_checksum(regions):
    east, west = client(regions, EAST), client(regions, WEST)
    bucket = unique_bucket("parts")
    east.create_bucket(Bucket=bucket)
    eventually(lambda: west.head_bucket(Bucket=bucket), "the bucket in eu-west-1")
    data = random_bytes(11 * MiB)
    upload = east.create_multipart_upload(
        Bucket=bucket, Key="big", ChecksumAlgorithm="CRC32", ServerSideEncryption="AES256",
        ContentType="application/x-test", Metadata={"origin": "east"})["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MiB), 1):
        part = east.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=number,
                                Body=data[start:start + 5 * MiB], ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": number, "ETag": part["ETag"],
                      "ChecksumCRC32": part["ChecksumCRC32"]})
    done = east.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload,
                                          MultipartUpload={"Parts": parts})
    source = east.head_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED")
    assert done["ETag"].endswith('-3"')

    # The same parts, so the same ETag and checksum of checksums; the same headers.
    copy = eventually(lambda: west.head_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED"),
                      "the object in eu-west-1")
    assert copy["ETag"] == done["ETag"]
    assert copy["ChecksumCRC32"] == source["ChecksumCRC32"]
    assert copy["ReplicationStatus"] == "REPLICA"
    assert copy["ServerSideEncryption"] == "AES256"
    assert copy["ContentType"] == "application/x-test"
    assert copy["Metadata"] == {"origin": "east"}
    assert west.get_object(Bucket=bucket, Key="big")["Body"].read() == data
    second = west.get_object(Bucket=bucket, Key="big", PartNumber=2)
    assert second["ContentLength"] == 5 * MiB and second["PartsCount"] == 3
    assert second["Body"].read() == data[5 * MiB:10 * MiB]
    assert "Uploads" not in west.list_multipart_uploads(Bucket=bucket)
    eventually(lambda: (east.head_object(Bucket=bucket, Key="big")["ReplicationStatus"]
                        == "COMPLETED") or pytest.fail("not yet"), "COMPLETED in us-east-1")


def test_bucket_replication_chooses_where_a_bucket_replicates(regions):
    east, west = client(regions, EAST), client(regions, WEST)
    bucket = unique_bucket("rep")
    east.create_bucket(Bucket=bucket)
    east.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def config(status: str, prefix: str = "") -> dict:
        return {
            "Role": "arn:aws:iam::123456789012:role/replication",
            "Rules": [{
                "ID": "to-eu", "Priority": 1, "Status": status, "Filter": {"Prefix": prefix},
                "DeleteMarkerReplication": {"Status": "Enabled"},
                "Destination": {"Bucket": f"arn:aws:s3:{WEST}::{bucket}"},
            }],
        }

    with pytest.raises(ClientError) as err:
        east.get_bucket_replication(Bucket=bucket)
    assert err.value.response["Error"]["Code"] == "ReplicationConfigurationNotFoundError"
    # What Tessera does not carry out is refused, not stored.
    with pytest.raises(ClientError) as err:
        east.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=config("Enabled", "logs/"))
    assert err.value.response["Error"]["Code"] == "NotImplemented"

    # Its only rule disabled: the bucket's changes stay here.
    east.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=config("Disabled"))
    got = east.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
    assert got["Rules"][0]["Status"] == "Disabled"
    assert got["Rules"][0]["Destination"]["Bucket"] == f"arn:aws:s3:{WEST}::{bucket}"
    east.put_object(Bucket=bucket, Key="local-only", Body=b"stays")
    assert "ReplicationStatus" not in east.head_object(Bucket=bucket, Key="local-only")

    # Enabled: they go to eu-west-1.
    east.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=config("Enabled"))
    east.put_object(Bucket=bucket, Key="shared", Body=b"goes")
    eventually(lambda: west.head_object(Bucket=bucket, Key="shared"), "the object in eu-west-1")
    with pytest.raises(ClientError):
        west.head_object(Bucket=bucket, Key="local-only")

    east.delete_bucket_replication(Bucket=bucket)
    with pytest.raises(ClientError) as err:
        east.get_bucket_replication(Bucket=bucket)
    assert err.value.response["Error"]["Code"] == "ReplicationConfigurationNotFoundError"


def test_the_admin_cli_shows_each_link_and_chooses_where_a_bucket_replicates(regions):
    from test_access import admin_cli, tessera_admin

    res = tessera_admin(regions, "replication")
    assert res.returncode == 0, res.stderr
    assert f"{EAST} -> {WEST}" in res.stdout, res.stdout
    assert "LAST-ERROR" in res.stdout
    res = tessera_admin(regions, "status")
    assert res.returncode == 0, res.stderr
    assert f"{EAST} -> {WEST}" in res.stdout, res.stdout
    status = admin_cli(regions, "status")
    assert status["region"] == EAST
    assert len(status["nodes"]) == 6
    assert [link["target"] for link in status["replication"]] == [WEST]

    # A bucket without versioning: the admin API does not ask for it, as S3's API does.
    east, west = client(regions, EAST), client(regions, WEST)
    bucket = unique_bucket("admin-rep")
    east.create_bucket(Bucket=bucket)
    shown = admin_cli(regions, "replication", "show", bucket)
    assert shown == {"bucket": bucket, "region": EAST, "configured": False, "sends_to": [WEST]}
    kept = admin_cli(regions, "replication", "set", bucket)
    assert kept["configured"] and kept["sends_to"] == []
    res = tessera_admin(regions, "replication", "set", bucket, "ap-south-1")
    assert res.returncode != 0 and "not a peer region" in res.stderr, res.stderr
    east.put_object(Bucket=bucket, Key="local-only", Body=b"stays")
    assert "ReplicationStatus" not in east.head_object(Bucket=bucket, Key="local-only")

    assert admin_cli(regions, "replication", "reset", bucket)["sends_to"] == [WEST]
    res = tessera_admin(regions, "replication", "show", bucket)
    assert f"{bucket}: {EAST} sends its changes to {WEST} (every peer region, the default)" \
        in res.stdout, res.stdout
    east.put_object(Bucket=bucket, Key="shared", Body=b"goes")
    eventually(lambda: west.head_object(Bucket=bucket, Key="shared"), "the object in eu-west-1")
    with pytest.raises(ClientError):
        west.head_object(Bucket=bucket, Key="local-only")


def test_the_console_shows_each_links_lag_and_backlog(regions):
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (scripts/install-deps.sh)")
    from consistency import admin_get
    from test_console import CHROMIUM, logged_in, screenshot
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install-deps.sh installs it)")
    expect = sync_api.expect
    east, west = client(regions, EAST), client(regions, WEST)
    bucket = unique_bucket("console-rep")
    east.create_bucket(Bucket=bucket)
    eventually(lambda: west.head_bucket(Bucket=bucket), "the bucket in eu-west-1")
    east.put_object(Bucket=bucket, Key="shown", Body=random_bytes(100_000))
    eventually(lambda: west.head_object(Bucket=bucket, Key="shown"), "the object in eu-west-1")
    delivered = admin_get(regions, "replication")["links"][0]["delivered_entries"]
    assert delivered >= 1

    def completed():
        status = east.head_object(Bucket=bucket, Key="shown")["ReplicationStatus"]
        assert status == "COMPLETED", status
    eventually(completed, "COMPLETED in us-east-1")

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 860}, ignore_https_errors=True)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        logged_in(page, f"https://127.0.0.1:{regions.console_port}", regions)
        page.click('nav a[data-page="replication"]')
        link = page.locator(f'section[data-link="{WEST}"]')
        expect(link.locator("h2")).to_have_text(f"{EAST} → {WEST}")
        expect(link.locator('[data-field="up"]')).to_have_text("up")
        expect(link.locator('[data-field="backlog"]')).to_have_text(re.compile(r"^[\d,]+ changes$"))
        expect(link.locator('[data-field="delivered"]')).to_have_text(re.compile(r"^[1-9][\d,]* · "))
        expect(link.locator(".chart svg polyline")).to_have_count(3)
        screenshot(page, "replication")
        # An object's details show its replication status.
        page.goto(f"https://127.0.0.1:{regions.console_port}/#/object/{bucket}/shown")
        expect(page.locator('dd[data-field="Replication"]')).to_have_text("COMPLETED")
        # The overview lists the regions, the peer with its link.
        page.click('nav a[data-page="overview"]')
        expect(page.locator(f'#regions tr[data-region="{EAST}"]')).to_contain_text("this region")
        expect(page.locator(f'#regions tr[data-region="{WEST}"]')).to_contain_text("reachable")
        screenshot(page, "regions")
        browser.close()
    assert not [e for e in errors
                if not e.startswith("Failed to load resource: the server responded with")], errors


def test_the_dashboard_queries_series_a_region_serves(regions):
    from consistency import admin_get
    from test_metrics import served_families
    token = admin_get(regions, "metrics-token")["token"]
    context = ssl.create_default_context(cafile=regions.ca_bundle)
    request = urllib.request.Request(f"https://127.0.0.1:{regions.console_port}/metrics",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10, context=context) as resp:
        text = resp.read().decode()
    served = served_families([text])
    wanted = {m for m in dashboard_metrics() if m.startswith("tessera_replication_")}
    assert len(wanted) >= 4 and wanted <= served, wanted - served
