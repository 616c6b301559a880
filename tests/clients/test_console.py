"""The web console, driven by a real headless Chromium (Debian's package, through Playwright):
log in (and fail to), create a bucket, upload files (one of 50 MiB) into a folder, browse,
download and compare bytes, see versions, delete, run a scrub pass to its end, and check that
the overview and scrub pages show what the admin API says. Set TESSERA_SCREENSHOTS to a folder
to keep the pages' screenshots (docs/img/ holds the README's)."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import time
from pathlib import Path

import pytest

from conftest import start_cluster
from consistency import admin_get
from helpers import MiB, flip_middle_byte, newest_fragment, unique_bucket

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (scripts/install-deps.sh)")
expect = playwright_api.expect

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(scripts/install-deps.sh installs it)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory, "console", tls=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def console_url(cluster):
    return f"http://127.0.0.1:{cluster.console_port}"


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    yield page
    context.close()
    # A script error, or a resource the page's policy blocked, is a bug even if the test passed;
    # the S3 errors the tests provoke are logged by the browser too, and are not.
    unexpected = [e for e in errors
                  if not e.startswith("Failed to load resource: the server responded with")]
    assert not unexpected, unexpected


def screenshot(page, name: str) -> None:
    folder = os.environ.get("TESSERA_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"console-{name}.png"), full_page=True)


def log_in(page, url: str, cluster, secret: str | None = None) -> None:
    page.goto(url)
    page.fill("#access-key", cluster.access_key)
    page.fill("#secret-key", secret or cluster.secret_key)
    page.click("button[type=submit]")


def logged_in(page, url: str, cluster) -> None:
    """Logs in with the administrator's key and waits for the first page."""
    log_in(page, url, cluster)
    expect(page.locator("h1")).to_have_text("Overview")


def test_a_wrong_login_is_refused_without_saying_which_half(page, console_url, cluster):
    log_in(page, console_url, cluster, secret="not-the-secret")
    alert = page.locator(".login .error")
    expect(alert).to_have_text("The access key or the secret key is wrong.")
    # A wrong access key gets the very same words.
    page.fill("#access-key", "NOSUCHKEY")
    page.fill("#secret-key", cluster.secret_key)
    page.click("button[type=submit]")
    expect(alert).to_have_text("The access key or the secret key is wrong.")
    expect(page.locator("header.top")).to_be_hidden()


def test_overview_shows_what_the_admin_api_says(page, console_url, cluster):
    logged_in(page, console_url, cluster)
    nodes = admin_get(cluster, "status")["nodes"]
    up = sum(1 for n in nodes if n["up"])
    expect(page.locator('[data-field="nodes-up"]')).to_have_text(f"{up} / {len(nodes)}")
    expect(page.locator('[data-field="zones"]')).to_have_text(str(len({n["zone"] for n in nodes})))
    expect(page.locator('[data-field="hints"]').first).to_have_text(
        f"{sum(n['hints'] for n in nodes):,}")
    expect(page.locator('[data-field="region"]')).to_have_text(cluster.region)
    expect(page.locator('.card [data-field="frames"]')).to_have_text(
        f"format {admin_get(cluster, 'status')['frame_format']}")
    for n in nodes:
        row = page.locator(f'tr[data-node="{n["id"]}"]')
        expect(row).to_contain_text("up")
        expect(row.locator('[data-field="hints"]')).to_have_text(f"{n['hints']:,}")
        expect(row.locator('[data-field="frames"]')).to_have_text(
            ", ".join(str(f) for f in n["frame_formats"]))
        used = n["disk_size_bytes"] - n["disk_free_bytes"]
        bar = row.locator('[role="progressbar"]')
        expect(bar).to_have_attribute("aria-valuenow",
                                      re.compile(rf"^({round(100 * used / n['disk_size_bytes'])}"
                                                 rf"|{round(100 * used / n['disk_size_bytes']) + 1}"
                                                 rf"|{round(100 * used / n['disk_size_bytes']) - 1})$"))
    # Nodes that share a file system count it once in the total (on this cluster, all of them).
    disks = {(n["addr"].rsplit(":", 1)[0], n["disk_id"]): n["disk_size_bytes"] for n in nodes}
    expect(page.locator('.card [data-field="disk"]')).to_have_text(
        re.compile(rf" of {re.escape(console_bytes(sum(disks.values())))}$"))
    expect(page.locator(".chart svg polyline")).to_have_count(2)
    # Every process's supervised workers, none of which has panicked here.
    status = admin_get(cluster, "status")
    for n in status["nodes"]:
        assert sorted(w["name"] for w in n["workers"]) == ["hinted handoff", "scrubber", "sweeper"]
        assert all(w["running"] and w["restarts"] == 0 for w in n["workers"]), n["workers"]
    assert {"probe", "lifecycle"} <= {w["name"] for w in status["workers"]}
    workers = len(status["workers"]) + sum(len(n["workers"]) for n in status["nodes"])
    expect(page.locator("#workers")).to_contain_text(f"{workers} background workers; none has panicked.")
    screenshot(page, "overview")


def console_bytes(n: int) -> str:
    """A size as the console's `bytes` shows it."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n} {units[i]}" if i == 0 else f"{n:.{2 if n < 10 else 1}f} {units[i]}"


def test_a_region_alone_says_it_has_nothing_to_replicate(page, console_url, cluster):
    logged_in(page, console_url, cluster)
    page.click('nav a[data-page="replication"]')
    expect(page.locator(".notice")).to_contain_text(f"This cluster is one region ({cluster.region})")


def test_buckets_objects_versions_and_downloads(page, console_url, cluster, tmp_path):
    s3 = cluster.client()
    bucket = unique_bucket("console")
    logged_in(page, console_url, cluster)
    page.click('nav a[data-page="buckets"]')
    page.fill("#new-bucket", bucket)
    page.check("#new-versioned")
    page.click("text=Create bucket")
    row = page.locator(f'tr[data-bucket="{bucket}"]')
    expect(row).to_contain_text("Enabled")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    # A folder, then three files into it, one of 50 MiB.
    row.locator("a", has_text=bucket).click()
    expect(page.locator("#objects, main p.muted").first).to_be_visible()
    page.once("dialog", lambda d: d.accept("photos"))
    page.click("text=New folder")
    expect(page.locator("nav.crumbs")).to_contain_text("photos")
    files = {"small.txt": b"hello from the console\n",
             "notes.md": b"# notes\n" * 1000,
             "large.bin": os.urandom(50 * MiB)}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    page.set_input_files("#upload-files", [str(tmp_path / n) for n in files])
    for name in files:
        expect(page.locator(f'.upload[data-file="{name}"] .state')).to_have_text("done",
                                                                              timeout=120_000)
    for name, data in files.items():
        got = s3.get_object(Bucket=bucket, Key=f"photos/{name}")["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name
    expect(page.locator(f'tr[data-key="photos/large.bin"]')).to_contain_text("50.0 MiB")
    # The large file went up in four parts of 16 MiB (the last one 2 MiB), and none is left over.
    head = s3.head_object(Bucket=bucket, Key="photos/large.bin")
    assert head["ETag"].endswith('-4"'), head["ETag"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    screenshot(page, "objects")

    # Browse back to the bucket's root and into the folder again, by the breadcrumbs.
    page.locator("nav.crumbs a", has_text=bucket).click()
    folder = page.locator('tr[data-prefix="photos/"] a')
    expect(folder).to_be_visible()
    folder.click()
    expect(page.locator('tr[data-key="photos/small.txt"]')).to_be_visible()

    # Download the large file and compare bytes.
    with page.expect_download(timeout=120_000) as download:
        page.locator('tr[data-key="photos/large.bin"] a', has_text="Download").click()
    saved = tmp_path / "downloaded.bin"
    download.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).digest() == \
        hashlib.sha256(files["large.bin"]).digest()

    # A second upload of small.txt makes a second version; the details page lists both.
    (tmp_path / "small.txt").write_bytes(b"second version\n")
    page.set_input_files("#upload-files", [str(tmp_path / "small.txt")])
    expect(page.locator('.upload[data-file="small.txt"] .state')).to_have_text("done")
    page.locator('tr[data-key="photos/small.txt"] a.file').click()
    expect(page.locator("h1")).to_have_text("small.txt")
    versions = s3.list_object_versions(Bucket=bucket, Prefix="photos/small.txt")["Versions"]
    assert len(versions) == 2
    for v in versions:
        expect(page.locator(f'#versions tr[data-version="{v["VersionId"]}"]')).to_be_visible()
    head = s3.head_object(Bucket=bucket, Key="photos/small.txt")
    expect(page.locator('dd[data-field="ETag"]')).to_have_text(head["ETag"])
    expect(page.locator('dd[data-field="Size"]')).to_have_text("15 B")

    # Delete it: a delete marker on top of the two versions.
    page.once("dialog", lambda d: d.accept())
    page.locator("main button.danger", has_text="Delete").first.click()
    expect(page.locator('tr[data-key="photos/notes.md"]')).to_be_visible()
    expect(page.locator('tr[data-key="photos/small.txt"]')).to_have_count(0)
    listed = s3.list_object_versions(Bucket=bucket, Prefix="photos/small.txt")
    assert len(listed["Versions"]) == 2 and len(listed["DeleteMarkers"]) == 1


def test_pages_of_a_large_folder_an_objects_details_and_deleting_a_bucket(page, console_url,
                                                                          cluster):
    s3 = cluster.client()
    bucket = unique_bucket("details")
    s3.create_bucket(Bucket=bucket)
    keys = [f"many/k{i:03}" for i in range(130)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.put_object(Bucket=bucket, Key="detail.txt", Body=b"the details\n", ChecksumAlgorithm="CRC32",
                  Metadata={"owner": "ops"}, Tagging="team=blue", ContentType="text/plain")
    head = s3.head_object(Bucket=bucket, Key="detail.txt", ChecksumMode="ENABLED")
    logged_in(page, console_url, cluster)

    # A folder of 130 objects shows in pages of 100, forward and back.
    page.goto(f"{console_url}/#/browse/{bucket}/many%2F")
    rows = page.locator("#objects tbody tr[data-key]")
    expect(rows).to_have_count(100)
    expect(rows.first).to_have_attribute("data-key", keys[0])
    page.click("main button:has-text('Next')")
    expect(rows).to_have_count(30)
    expect(rows.first).to_have_attribute("data-key", keys[100])
    expect(page.locator("main button:has-text('Next')")).to_be_disabled()
    page.click("main button:has-text('Previous')")
    expect(rows).to_have_count(100)
    expect(rows.last).to_have_attribute("data-key", keys[99])

    # An object's details: its checksum, metadata, tags and type as S3 gives them.
    page.goto(f"{console_url}/#/object/{bucket}/detail.txt")
    expect(page.locator('dd[data-field="Checksum CRC32"]')).to_have_text(head["ChecksumCRC32"])
    expect(page.locator('dd[data-field="Metadata owner"]')).to_have_text("ops")
    expect(page.locator('dd[data-field="Content type"]')).to_have_text("text/plain")
    expect(page.locator('dd[data-field="ETag"]')).to_have_text(head["ETag"])
    expect(page.locator("main table").first).to_contain_text("team")
    expect(page.locator("main table").first).to_contain_text("blue")

    # A bucket that holds objects is not deleted, and the console says why; an empty one is.
    page.click('nav a[data-page="buckets"]')
    row = page.locator(f'tr[data-bucket="{bucket}"]')
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name=f"Delete bucket {bucket}").click()
    expect(page.locator("#toast .bad")).to_contain_text("not empty")
    for key in keys + ["detail.txt"]:
        s3.delete_object(Bucket=bucket, Key=key)
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name=f"Delete bucket {bucket}").click()
    expect(row).to_have_count(0)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_an_upload_that_fails_says_why(page, console_url, cluster, tmp_path):
    s3 = cluster.client()
    bucket = unique_bucket("gone")
    s3.create_bucket(Bucket=bucket)
    logged_in(page, console_url, cluster)
    page.goto(f"{console_url}/#/browse/{bucket}")
    expect(page.locator("main p.muted")).to_have_text("This bucket is empty.")
    s3.delete_bucket(Bucket=bucket)
    (tmp_path / "f.txt").write_bytes(b"x")
    page.set_input_files("#upload-files", [str(tmp_path / "f.txt")])
    expect(page.locator('.upload[data-file="f.txt"] .state')).to_have_text(
        re.compile(r"failed: .*\(NoSuchBucket\)"))


def test_scrub_runs_to_its_end_and_matches_the_admin_api(page, console_url, cluster):
    s3 = cluster.client()
    bucket = unique_bucket("scrub")
    s3.create_bucket(Bucket=bucket)
    node = cluster.node_ids[0]
    since = time.time() - 0.05  # file mtimes use a coarse clock
    for i in range(8):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=bytes([i]) * 400_000)
    # Bitrot the pass must find, and the heal it starts must repair.
    flip_middle_byte(newest_fragment(cluster.node_dir(node) / "fragments", since, 50_000))
    before = next(n for n in admin_get(cluster, "status")["nodes"] if n["id"] == node)["scrub"]
    logged_in(page, console_url, cluster)
    page.click('nav a[data-page="scrub"]')
    row = page.locator(f'tr[data-node="{node}"]')
    row.locator("button", has_text="Start pass").click()
    expect(row.locator('[data-field="passes"]')).to_have_text(f"{before['passes'] + 1:,}",
                                                              timeout=60_000)
    expect(row.locator('[data-field="state"]')).to_have_text("idle")
    expect(row.locator('[role="progressbar"]')).to_have_attribute("aria-valuenow", "100")
    expect(row.locator('[data-field="corrupt"]')).to_have_text(f"{before['corrupt'] + 1:,}")
    expect(row.locator('[data-field="repaired"]')).to_have_text(f"{before['repaired'] + 1:,}",
                                                                timeout=60_000)
    expect(row.locator('[data-field="awaiting_repair"]')).to_have_text("0")
    after = next(n for n in admin_get(cluster, "status")["nodes"] if n["id"] == node)["scrub"]
    assert after["passes"] == before["passes"] + 1 and after["files_checked"] > 0
    for field in ("files_checked", "passes", "corrupt", "missing", "repaired", "awaiting_repair"):
        expect(row.locator(f'[data-field="{field}"]')).to_have_text(f"{after[field]:,}")
    screenshot(page, "scrub")


def test_bucket_settings_are_shown_and_edited(page, console_url, cluster):
    s3 = cluster.client()
    bucket = unique_bucket("settings")
    s3.create_bucket(Bucket=bucket)
    logged_in(page, console_url, cluster)
    page.goto(f"{console_url}/#/bucket/{bucket}")
    expect(page.locator("#versioning-status")).to_have_text("Off")
    page.click("text=Enable versioning")
    expect(page.locator("#versioning-status")).to_have_text("Enabled")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rule = ("<LifecycleConfiguration><Rule><ID>old-logs</ID><Filter><Prefix>logs/</Prefix>"
            "</Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule>"
            "</LifecycleConfiguration>")
    page.fill("#setting-lifecycle", rule)
    page.locator("#setting-lifecycle ~ .row button", has_text="Save").click()
    # The field holds what was typed at once: the toast says when the save has been answered.
    expect(page.locator("#toast")).to_contain_text("Lifecycle saved.")
    expect(page.locator("#setting-lifecycle")).to_have_value(re.compile("old-logs"))
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rules[0]["ID"] == "old-logs" and rules[0]["Expiration"]["Days"] == 30
    # A rule S3 refuses is refused here too, with S3's words.
    page.fill("#setting-cors", "<CORSConfiguration><CORSRule></CORSRule></CORSConfiguration>")
    page.locator("#setting-cors ~ .row button", has_text="Save").click()
    expect(page.locator("#toast .bad")).to_contain_text("MalformedXML")
    cors = ("<CORSConfiguration><CORSRule><AllowedOrigin>https://app.example</AllowedOrigin>"
            "<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>")
    page.fill("#setting-cors", cors)
    page.locator("#setting-cors ~ .row button", has_text="Save").click()
    expect(page.locator("#toast")).to_contain_text("CORS saved.")
    expect(page.locator("#setting-cors")).to_have_value(re.compile("app.example"))
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == \
        ["https://app.example"]
    page.locator("#setting-cors ~ .row button", has_text="Remove").click()
    expect(page.locator("#setting-cors")).to_have_value("")


def test_a_heal_started_from_the_console_runs_to_its_end(page, console_url, cluster):
    node = cluster.node_ids[1]
    logged_in(page, console_url, cluster)
    page.click('nav a[data-page="heal"]')
    page.select_option("#heal-node", node)
    page.focus("#heal-node")
    # The page redraws every 2 s: the choice and the keyboard focus survive it.
    page.wait_for_timeout(2500)
    expect(page.locator("#heal-node")).to_have_value(node)
    expect(page.locator("#heal-node")).to_be_focused()
    page.click("text=Heal node")
    expect(page.locator("main .panel strong", has_text=f"Node {node}")).to_be_visible()
    expect(page.locator("main .panel .badge", has_text="finished")).to_be_visible(timeout=120_000)
    heal = admin_get(cluster, "heal")
    assert heal["node"] == node and not heal["running"]
    expect(page.locator("main dl.props")).to_contain_text(f"Shards compared{heal['shards_compared']:,}")
    # A second heal: both are listed, newest first, and the admin API says the same.
    other = cluster.node_ids[2]
    page.select_option("#heal-node", other)
    page.click("text=Heal node")
    expect(page.locator("main .panel strong", has_text=f"Node {other}")).to_be_visible()
    expect(page.locator("main .panel .badge", has_text="finished")).to_be_visible(timeout=120_000)
    heals = admin_get(cluster, "heals")
    assert heals[0]["node"] == other and node in [h["node"] for h in heals[1:]], heals
    rows = page.locator("#recent-heals tbody tr")
    expect(rows.nth(0)).to_contain_text(other)
    expect(rows.filter(has_text=node).first).to_contain_text("finished")


def test_keys_are_made_granted_and_deleted_and_a_key_sees_its_buckets(browser, page, console_url,
                                                                    cluster):
    s3 = cluster.client()
    shared, private = unique_bucket("shared"), unique_bucket("private")
    for bucket in (shared, private):
        s3.create_bucket(Bucket=bucket)
    logged_in(page, console_url, cluster)
    page.click('nav a[data-page="keys"]')
    page.fill("#new-key", "team")
    page.click("text=Create key")
    key_id = page.locator('#created-key [data-field="id"]').inner_text()
    secret = page.locator('#created-key [data-field="secret"]').inner_text()
    row = page.locator(f'tr[data-key-id="{key_id}"]')
    row.locator("select").select_option(shared)
    row.get_by_label("read for team").check()
    row.locator("button", has_text="Allow").click()
    expect(row).to_contain_text(f"{shared}: read")
    info = admin_get(cluster, f"keys/{key_id}")
    assert info["buckets"] == [{"bucket": shared, "read": True, "write": False, "owner": False}]

    # The new key logs in: it sees the bucket it may read, not the other, and no cluster pages.
    context = browser.new_context()
    other = context.new_page()
    other.goto(console_url)
    other.fill("#access-key", key_id)
    other.fill("#secret-key", secret)
    other.click("button[type=submit]")
    expect(other.locator("main .error")).to_contain_text("AccessDenied")
    other.click('nav a[data-page="buckets"]')
    expect(other.locator(f'tr[data-bucket="{shared}"]')).to_be_visible()
    expect(other.locator(f'tr[data-bucket="{private}"]')).to_have_count(0)
    context.close()

    page.once("dialog", lambda d: d.accept())
    row.locator("button", has_text="Delete").click()
    expect(page.locator(f'tr[data-key-id="{key_id}"]')).to_have_count(0)
    assert key_id not in [k["id"] for k in admin_get(cluster, "keys")]


def tab_to(page, predicate: str, presses: int = 40) -> None:
    """Presses Tab until the focused element satisfies a JavaScript predicate on `el`."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"(el => {predicate})(document.activeElement)"):
            return
    raise AssertionError(f"Tab never reached an element where {predicate}")


def test_the_console_is_usable_by_keyboard_alone(page, console_url, cluster):
    s3 = cluster.client()
    bucket = unique_bucket("keyboard")
    page.goto(console_url)
    # The login form takes the focus; Tab and Enter do the rest.
    expect(page.locator("#access-key")).to_be_focused()
    page.keyboard.type(cluster.access_key)
    page.keyboard.press("Tab")
    page.keyboard.type(cluster.secret_key)
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Overview")
    tab_to(page, "el.dataset.page === 'buckets'")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Buckets")
    tab_to(page, "el.id === 'new-bucket'")
    page.keyboard.type(bucket)
    page.keyboard.press("Enter")
    expect(page.locator(f'tr[data-bucket="{bucket}"]')).to_be_visible()
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_an_ended_session_returns_to_the_login_page(page, console_url, cluster):
    logged_in(page, console_url, cluster)
    cookie = next(c for c in page.context.cookies() if c["name"] == "tessera_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    # A session the server no longer knows (it ended, or the gateway restarted).
    page.context.add_cookies([{**cookie, "value": "0" * 64}])
    page.click('nav a[data-page="buckets"]')
    expect(page.locator(".login .error")).to_have_text("Your session has ended: log in again.")


def console_request(cluster, method: str, path: str, headers: dict, body: bytes = b"",
                    tls: bool = False):
    if tls:
        context = ssl.create_default_context(cafile=cluster.ca_bundle)
        conn = http.client.HTTPSConnection("127.0.0.1", cluster.console_port, context=context,
                                           timeout=30)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", cluster.console_port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.getheaders(), resp.read()


def login(cluster, tls: bool = False) -> tuple[str, str, str]:
    body = json.dumps({"access_key": cluster.access_key, "secret_key": cluster.secret_key})
    status, headers, answer = console_request(cluster, "POST", "/api/login",
                                              {"Content-Type": "application/json"},
                                              body.encode(), tls)
    assert status == 200, answer
    cookie = next(v for k, v in headers if k.lower() == "set-cookie")
    return cookie, cookie.split(";")[0], json.loads(answer)["csrf"]


def test_changes_need_the_csrf_token_and_the_console_origin(cluster):
    _, cookie, csrf = login(cluster)
    bucket = unique_bucket("csrf")
    for headers in ({"Cookie": cookie},
                    {"Cookie": cookie, "X-Tessera-CSRF": "0" * 64},
                    {"Cookie": cookie, "X-Tessera-CSRF": csrf, "Origin": "http://evil.example"}):
        status, _, answer = console_request(cluster, "PUT", f"/api/s3/{bucket}", headers)
        assert status == 403, answer
    assert bucket not in [b["Name"] for b in cluster.client().list_buckets()["Buckets"]]
    status, _, _ = console_request(cluster, "PUT", f"/api/s3/{bucket}",
                                   {"Cookie": cookie, "X-Tessera-CSRF": csrf})
    assert status == 200
    # A login from another site's form (not JSON) is refused before the key is even checked.
    status, _, _ = console_request(cluster, "POST", "/api/login",
                                   {"Content-Type": "application/x-www-form-urlencoded"},
                                   b"access_key=a&secret_key=b")
    assert status == 403
    status, _, _ = console_request(cluster, "POST", "/api/logout", {"Cookie": cookie,
                                                                    "X-Tessera-CSRF": csrf})
    assert status == 200
    status, _, _ = console_request(cluster, "GET", "/api/admin/status", {"Cookie": cookie})
    assert status == 401


def test_objects_are_served_sandboxed_and_pages_under_a_policy(cluster):
    _, cookie, csrf = login(cluster)
    bucket = unique_bucket("sandbox")
    s3 = cluster.client()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="x.html", Body=b"<script>alert(1)</script>",
                  ContentType="text/html")
    status, headers, _ = console_request(cluster, "GET", f"/api/s3/{bucket}/x.html",
                                         {"Cookie": cookie})
    assert status == 200
    assert dict((k.lower(), v) for k, v in headers)["content-security-policy"].startswith(
        "sandbox")
    status, headers, body = console_request(cluster, "GET", "/", {})
    policy = dict((k.lower(), v) for k, v in headers)["content-security-policy"]
    assert status == 200 and "script-src 'self'" in policy and b"app.js" in body
    # Nothing on the page is loaded from elsewhere (and the policy would block it).
    loads = re.compile(rb"(src|href)=[\"']?(https?:)?//|url\(\s*[\"']?(https?:)?//"
                       rb"|import[^;]*[\"'](https?:)?//|fetch\(\s*[\"'`](https?:)?//")
    for asset in ("/", "/app.js", "/app.css"):
        _, _, text = console_request(cluster, "GET", asset, {})
        assert not loads.search(text), asset


def test_under_tls_the_cookie_is_secure(cluster_https):
    set_cookie, _, _ = login(cluster_https, tls=True)
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
