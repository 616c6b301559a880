"""Browser uploads (S3's POST Object): forms signed by boto3's generate_presigned_post (SigV4)
and by hand (SigV2), sent as multipart/form-data from Python and from a real HTML form in
headless Chromium; every policy violation gets S3's error and stores nothing."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import shutil
import subprocess
import threading
import urllib.parse
import uuid
import zlib

import pytest

from helpers import MiB, random_bytes, raw_request, unique_bucket



def multipart(fields: list[tuple[str, str]], file_name: str, data: bytes,
              file_type: str = "application/octet-stream") -> tuple[bytes, str]:
    """A multipart/form-data body: the fields in order, then the file, as a browser sends it."""
    boundary = "----tessera" + uuid.uuid4().hex
    out = bytearray()
    for name, value in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                f"{value}\r\n").encode()
    out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{file_name}\"\r\nContent-Type: {file_type}\r\n\r\n").encode()
    out += data + f"\r\n--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def post(cluster, url: str, fields, file_name="f.bin", data=b"data", body_and_type=None):
    """POSTs a form; returns (status, headers, body). No redirects are followed."""
    body, content_type = body_and_type or multipart(list(fields.items()) if isinstance(
        fields, dict) else fields, file_name, data)
    return cluster_request(cluster, "POST", url, body, {"Content-Type": content_type})


def cluster_request(cluster, method, url, body, headers):
    import http.client
    import ssl
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https":
        context = ssl.create_default_context(cafile=cluster.ca_bundle)
        conn = http.client.HTTPSConnection(parsed.hostname, parsed.port, context=context,
                                           timeout=60)
    else:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    result = response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    conn.close()
    return result


def error_code(body: bytes) -> str:
    import xml.etree.ElementTree as ET
    return ET.fromstring(body).findtext("Code")


def presigned(s3, bucket, key, fields=None, conditions=None, expires=600):
    return s3.generate_presigned_post(Bucket=bucket, Key=key, Fields=fields,
                                      Conditions=conditions, ExpiresIn=expires)


def stored(s3, bucket, key) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def test_presigned_post_uploads_with_metadata_and_status(cluster, s3, bucket):
    data = random_bytes(3 * MiB + 17)
    form = presigned(s3, bucket, "up/${filename}",
                     fields={"Content-Type": "image/png", "x-amz-meta-origin": "browser",
                             "success_action_status": "201",
                             "tagging": "<Tagging><TagSet><Tag><Key>t</Key><Value>v</Value>"
                                        "</Tag></TagSet></Tagging>"},
                     conditions=[["starts-with", "$key", "up/"],
                                 {"Content-Type": "image/png"}, {"x-amz-meta-origin": "browser"},
                                 {"success_action_status": "201"},
                                 ["starts-with", "$tagging", ""],
                                 ["content-length-range", 1, 10 * MiB]])
    status, headers, body = post(cluster, form["url"], form["fields"], "photo 1.png", data)
    assert status == 201, body
    etag = '"' + hashlib.md5(data).hexdigest() + '"'
    assert headers["etag"] == etag
    assert b"<Key>up/photo 1.png</Key>" in body and f"<ETag>{etag}</ETag>".encode() in \
        body.replace(b"&quot;", b'"')
    head = s3.head_object(Bucket=bucket, Key="up/photo 1.png")
    assert head["ContentType"] == "image/png" and head["Metadata"] == {"origin": "browser"}
    assert stored(s3, bucket, "up/photo 1.png") == data
    tags = s3.get_object_tagging(Bucket=bucket, Key="up/photo 1.png")["TagSet"]
    assert tags == [{"Key": "t", "Value": "v"}]


def test_a_public_read_upload_is_served_to_anyone(cluster, s3, bucket):
    form = presigned(s3, bucket, "public/logo.png", fields={"acl": "public-read"},
                     conditions=[{"acl": "public-read"}])
    status, _, body = post(cluster, form["url"], form["fields"], data=b"png")
    assert status == 204, body
    res = raw_request(f"{cluster.endpoint}/{bucket}/public/logo.png", ca_bundle=cluster.ca_bundle)
    assert (res.status, res.body) == (200, b"png")
    form = presigned(s3, bucket, "private/logo.png")
    assert post(cluster, form["url"], form["fields"], data=b"png")[0] == 204
    res = raw_request(f"{cluster.endpoint}/{bucket}/private/logo.png",
                      ca_bundle=cluster.ca_bundle)
    assert res.status == 403


def test_default_status_and_redirect(cluster, s3, bucket):
    form = presigned(s3, bucket, "plain")
    status, headers, _ = post(cluster, form["url"], form["fields"], data=b"x")
    assert status == 204 and headers["etag"] == '"' + hashlib.md5(b"x").hexdigest() + '"'
    form = presigned(s3, bucket, "redirected",
                     fields={"success_action_redirect": "https://example.com/done?a=1"},
                     conditions=[{"success_action_redirect": "https://example.com/done?a=1"}])
    status, headers, _ = post(cluster, form["url"], form["fields"], data=b"y")
    assert status == 303
    target = urllib.parse.urlsplit(headers["location"])
    query = urllib.parse.parse_qs(target.query)
    assert (target.netloc, query["bucket"], query["key"]) == ("example.com", [bucket],
                                                               ["redirected"])
    assert query["etag"] == ['"' + hashlib.md5(b"y").hexdigest() + '"']


def test_checksum_field_is_checked(cluster, s3, bucket):
    data = b"checksummed"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    form = presigned(s3, bucket, "crc", fields={"x-amz-checksum-crc32": crc},
                     conditions=[{"x-amz-checksum-crc32": crc}])
    assert post(cluster, form["url"], form["fields"], data=data)[0] == 204
    head = s3.head_object(Bucket=bucket, Key="crc", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc
    # A file that is not what the checksum field says: S3's 400 BadDigest, and nothing stored.
    form = presigned(s3, bucket, "crc2", fields={"x-amz-checksum-crc32": crc},
                     conditions=[{"x-amz-checksum-crc32": crc}])
    status, _, body = post(cluster, form["url"], form["fields"], data=b"other bytes")
    assert (status, error_code(body)) == (400, "BadDigest"), body
    assert stored(s3, bucket, "crc2") is None


@pytest.mark.parametrize("case", ["expired", "wrong-key", "extra-field", "bad-signature",
                                  "too-large", "too-small", "wrong-bucket", "anonymous",
                                  "no-key", "acl"])
def test_policy_violations_store_nothing(cluster, s3, bucket, case):
    conditions = [["content-length-range", 2, 10]]
    form = presigned(s3, bucket, "guarded/k", conditions=conditions,
                     expires=-10 if case == "expired" else 600)
    fields = dict(form["fields"])
    data = b"12345"
    url = form["url"]
    expected = (403, "AccessDenied")
    if case == "wrong-key":
        fields["key"] = "elsewhere"
    elif case == "extra-field":
        fields["x-amz-meta-sneaky"] = "1"
    elif case == "bad-signature":
        fields["x-amz-signature"] = "0" * 64
        expected = (403, "SignatureDoesNotMatch")
    elif case == "too-large":
        data = b"x" * 11
        expected = (400, "EntityTooLarge")
    elif case == "too-small":
        data = b"x"
        expected = (400, "EntityTooSmall")
    elif case == "wrong-bucket":
        other = unique_bucket()
        s3.create_bucket(Bucket=other)
        url = url.replace(bucket, other)
    elif case == "anonymous":
        fields = {"key": "guarded/k"}
    elif case == "no-key":
        del fields["key"]
        expected = (400, "InvalidArgument")
    elif case == "acl":
        form = presigned(s3, bucket, "guarded/k", fields={"acl": "aws-exec-read"},
                         conditions=[{"acl": "aws-exec-read"}])
        fields, data = form["fields"], b"12345"
        expected = (501, "NotImplemented")
    status, _, body = post(cluster, url, fields, data=data)
    assert (status, error_code(body)) == expected, body
    assert stored(s3, bucket, "guarded/k") is None
    assert stored(s3, bucket, "elsewhere") is None


def test_malformed_forms(cluster, s3, bucket):
    form = presigned(s3, bucket, "m")
    body, content_type = multipart(list(form["fields"].items()), "f", b"abc")
    # Fields after the file: S3 takes the file as the last field.
    cut = body.rindex(b"--\r\n")
    boundary = content_type.split("boundary=")[1]
    extra = (body[:cut] + b"\r\nContent-Disposition: form-data; name=\"late\"\r\n\r\nv\r\n--"
             + boundary.encode() + b"--\r\n")
    status, _, reply = post(cluster, form["url"], None, body_and_type=(extra, content_type))
    assert (status, error_code(reply)) == (400, "MalformedPOSTRequest")
    no_file = body[:body.index(b"Content-Disposition: form-data; name=\"file\"")]
    status, _, reply = post(cluster, form["url"], None,
                            body_and_type=(no_file[:-len(boundary) - 2] + b"--" +
                                           boundary.encode() + b"--\r\n", content_type))
    assert status == 400, reply
    assert stored(s3, bucket, "m") is None


def sigv2_form(cluster, bucket, key, data):
    policy = base64.b64encode(json.dumps({
        "expiration": (datetime.datetime.now(datetime.timezone.utc)
                       + datetime.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": [{"bucket": bucket}, {"key": key}],
    }).encode()).decode()
    signature = base64.b64encode(hmac.new(cluster.secret_key.encode(), policy.encode(),
                                          hashlib.sha1).digest()).decode()
    return [("key", key), ("AWSAccessKeyId", cluster.access_key), ("policy", policy),
            ("signature", signature)]


def test_sigv2_form(cluster, s3, bucket):
    fields = sigv2_form(cluster, bucket, "v2", b"two")
    status, _, body = post(cluster, f"{cluster.endpoint}/{bucket}", fields, data=b"two")
    assert status == 204, body
    assert stored(s3, bucket, "v2") == b"two"
    fields[-1] = ("signature", base64.b64encode(b"x" * 20).decode())
    status, _, body = post(cluster, f"{cluster.endpoint}/{bucket}", fields, data=b"bad")
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")


# --------------------------------------------------------------------------- a real browser

FORM_PAGE = """<!doctype html><html><body>
<form id="upload" method="post" enctype="multipart/form-data" action="{action}">
{inputs}
<input type="file" name="file" id="file">
</form>
<script>
const bytes = new TextEncoder().encode({content});
const dt = new DataTransfer();
dt.items.add(new File([bytes], "from browser.txt", {{type: "text/plain"}}));
document.getElementById("file").files = dt.files;
document.getElementById("upload").submit();
</script></body></html>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed "
                    "(scripts/install-deps.sh installs it)")
def test_html_form_in_headless_chromium(cluster_http, s3_http, tmp_path):
    """A real HTML form, filled and submitted by Chromium: the upload lands, and the redirect
    brings the browser back to the page's server with the bucket, key and ETag."""
    bucket = unique_bucket()
    s3_http.create_bucket(Bucket=bucket)
    seen: dict = {}
    content = "uploaded by a real browser form " + uuid.uuid4().hex

    class Pages(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.startswith("/done"):
                seen.update(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query))
                body = b"thanks"
            else:
                body = self.server.page.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Pages)
    done = f"http://127.0.0.1:{server.server_port}/done"
    form = s3_http.generate_presigned_post(
        Bucket=bucket, Key="forms/${filename}",
        Fields={"success_action_redirect": done, "Content-Type": "text/plain"},
        Conditions=[["starts-with", "$key", "forms/"], {"success_action_redirect": done},
                    {"Content-Type": "text/plain"}],
        ExpiresIn=600)
    inputs = "\n".join(f'<input type="hidden" name="{k}" value="{v}">'
                       for k, v in form["fields"].items())
    server.page = FORM_PAGE.format(action=form["url"], inputs=inputs,
                                   content=json.dumps(content))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        profile = tmp_path / "profile"
        run = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom",
             f"http://127.0.0.1:{server.server_port}/form"],
            capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert seen.get("key") == ["forms/from browser.txt"], (seen, run.stderr[-3000:])
    assert seen["bucket"] == [bucket]
    got = s3_http.get_object(Bucket=bucket, Key="forms/from browser.txt")
    assert got["Body"].read() == content.encode()
    assert got["ContentType"] == "text/plain"
    assert seen["etag"] == [got["ETag"]]
