// The Tessera console: one ES module, no build step. Pages are rendered from the admin API
// (/api/admin/... is /_tessera/...) and the S3 API (/api/s3/...), which the console's server
// signs with the logged-in key. User data only ever enters the page as text nodes.

const main = document.getElementById("main");
let session = null;
// The refresh timer of the page on show; cleared when another page is shown.
let timer = null;
// Pages shown so far: a page whose first render ends after another page was shown sets no timer.
let visits = 0;
// Continuation tokens of the pages seen, per bucket and prefix, so that "Previous" works.
const listPages = new Map();

// ---- API ----

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/// Calls the console's server; a 401 (no or ended session) shows the login page.
async function call(method, path, { body, headers = {} } = {}) {
  const h = { ...headers };
  if (session && method !== "GET" && method !== "HEAD") h["X-Tessera-CSRF"] = session.csrf;
  const r = await fetch(path, { method, body, headers: h, credentials: "same-origin" });
  if (r.status === 401 && path !== "/api/login") {
    const j = await r.json().catch(() => ({}));
    session = null;
    showLogin(j.error || "Log in first.");
    throw new ApiError(401, "Unauthorized", j.error);
  }
  if (!r.ok && !(method === "HEAD" && r.status < 500)) throw await failure(r);
  return r;
}

/// The S3 error (XML) or console error (JSON) a response carries.
async function failure(r) {
  const text = await r.text().catch(() => "");
  if (text.startsWith("{")) {
    try { return new ApiError(r.status, "", JSON.parse(text).error); } catch (_) { /* not JSON */ }
  }
  const doc = new DOMParser().parseFromString(text, "application/xml");
  const code = doc.querySelector("Code")?.textContent;
  const message = doc.querySelector("Message")?.textContent;
  return new ApiError(r.status, code, message && code ? `${message} (${code})` : message || code || `HTTP ${r.status}`);
}

const admin = async (path) => (await call("GET", `/api/admin/${path}`)).json();
const adminPost = async (path, body) => (await call("POST", `/api/admin/${path}`, body === undefined ? {} :
  { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } })).json();

/// Encodes one path component; a key goes whole, its slashes as %2F.
const enc = (s) => encodeURIComponent(s);
const s3Path = (bucket, key = "", query = "") =>
  `/api/s3/${enc(bucket)}${key ? "/" + enc(key) : ""}${query ? "?" + query : ""}`;

async function s3Xml(method, bucket, key, query, opts) {
  const r = await call(method, s3Path(bucket, key, query), opts);
  return new DOMParser().parseFromString(await r.text(), "application/xml");
}

// ---- DOM helpers ----

/// An element with attributes (`on*` ones as listeners) and children (strings become text).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    // Through the CSSOM: the page's policy refuses style attributes.
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const svgNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function bytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}
const rate = (perSec) => `${perSec < 10 ? perSec.toFixed(2) : Math.round(perSec).toLocaleString("en-US")}/s`;
const count = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
function ago(unix) {
  if (!unix) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h ago`;
  return new Date(unix * 1000).toISOString().slice(0, 16).replace("T", " ");
}
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

function bar(fraction, label, { indeterminate = false, warnAbove = 2 } = {}) {
  const f = Math.max(0, Math.min(1, fraction || 0));
  const b = h("div", {
    class: `bar${indeterminate ? " indeterminate" : ""}${f > warnAbove ? " full" : ""}`,
    role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": indeterminate ? null : Math.round(f * 100), "aria-label": label,
  }, h("span", indeterminate ? {} : { style: `width:${(f * 100).toFixed(1)}%` }));
  return h("div", {}, b, h("div", { class: "bar-label" }, label));
}

function toast(message, bad = false) {
  const t = h("div", { class: bad ? "bad" : "" }, message);
  document.getElementById("toast").append(t);
  setTimeout(() => t.remove(), bad ? 8000 : 4000);
}

/// Runs an action from a button, showing what went wrong.
async function act(fn, done) {
  try {
    await fn();
    if (done) toast(done);
  } catch (e) {
    if (e.status !== 401) toast(e.message, true);
  }
}

/// Draws a page. Redrawn (by `every`), it keeps what the user chose in its fields and where the
/// keyboard focus was, matching elements by id or label.
function page(title, ...children) {
  const redraw = main.querySelector("h1")?.textContent === title;
  const keyOf = (el) => el.id || el.getAttribute("aria-label");
  const kept = new Map();
  let focused = null;
  if (redraw) {
    for (const el of main.querySelectorAll("input:not([type=file]), select, textarea")) {
      if (keyOf(el)) kept.set(keyOf(el), el.type === "checkbox" ? el.checked : el.value);
    }
    if (document.activeElement !== main && main.contains(document.activeElement)) focused = keyOf(document.activeElement);
  }
  main.replaceChildren(h("h1", {}, title), ...children);
  for (const el of main.querySelectorAll("[id], [aria-label]")) {
    const key = keyOf(el);
    if (kept.has(key)) el[el.type === "checkbox" ? "checked" : "value"] = kept.get(key);
    if (focused && key === focused) el.focus({ preventScroll: true });
  }
}

// ---- Session ----

function showLogin(message) {
  clearInterval(timer);
  document.querySelector("header.top").hidden = true;
  const error = h("div", { class: "error", role: "alert", hidden: !message }, message || "");
  const key = h("input", { type: "text", id: "access-key", name: "access_key", autocomplete: "username", required: true });
  const secret = h("input", { type: "password", id: "secret-key", name: "secret_key", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit" }, "Log in");
  const form = h("form", {
    class: "panel login", onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      try {
        const r = await fetch("/api/login", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ access_key: key.value, secret_key: secret.value }),
        });
        const j = await r.json().catch(() => ({}));
        if (!r.ok) throw new Error(j.error || `HTTP ${r.status}`);
        session = j;
        secret.value = "";
        if (!location.hash || location.hash === "#/login") location.hash = "#/overview";
        start();
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        secret.focus();
      } finally {
        submit.disabled = false;
      }
    },
  },
    h("h1", {}, h("img", { src: "/icon.svg", alt: "", width: 32, height: 32 }), "Tessera console"),
    error,
    h("label", { for: "access-key" }, "Access key"), key,
    h("label", { for: "secret-key" }, "Secret key"), secret,
    submit);
  main.replaceChildren(form);
  key.focus();
}

function start() {
  document.querySelector("header.top").hidden = false;
  document.getElementById("who").textContent = `${session.access_key} · ${session.region}`;
  route();
}

document.getElementById("logout").addEventListener("click", () =>
  act(async () => {
    await call("POST", "/api/logout");
    session = null;
    showLogin("You have logged out.");
  }));

// ---- Router ----

const routes = {
  overview: overviewPage,
  buckets: bucketsPage,
  bucket: (rest) => bucketPage(rest[0]),
  browse: (rest) => browsePage(rest[0], rest[1] || ""),
  object: (rest) => objectPage(rest[0], rest[1] || ""),
  scrub: scrubPage,
  heal: healPage,
  replication: replicationPage,
  keys: () => keysPage(),
};

function route() {
  if (!session) return;
  clearInterval(timer);
  visits++;
  const [name, ...rest] = (location.hash.replace(/^#\/?/, "") || "overview").split("/");
  const show = routes[name] || overviewPage;
  for (const a of document.querySelectorAll(".top nav a")) {
    const current = a.dataset.page === name || (a.dataset.page === "buckets" && ["bucket", "browse", "object"].includes(name));
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  main.focus({ preventScroll: true });
  Promise.resolve(show(rest.map(decodeURIComponent))).catch((e) => {
    if (e.status === 401) return;
    const why = e.code === "AccessDenied" ? "This page needs the administrator's key. " : "";
    main.replaceChildren(h("div", { class: "error", role: "alert" }, why + e.message));
  });
}

/// Renders now and then every `ms` while the page is shown; `render` draws with the `page`-like
/// function it is given, which draws nothing once another page is shown (a render may end after
/// that). A first render that fails shows its error in the page (and nothing repeats); later
/// failures show as notes.
async function every(ms, render) {
  const visit = visits;
  const show = (...parts) => visit === visits && page(...parts);
  await render(show);
  if (visit !== visits) return;
  timer = setInterval(() => render(show).catch((e) => {
    if (e.status !== 401 && visit === visits) toast(e.message, true);
  }), ms);
}

window.addEventListener("hashchange", route);

// ---- Overview ----

/// A chart of the last hour's samples: what `pick` counted over each interval, as a rate, or
/// with `gauge` the value it read at the end of each, shown with `format`.
function chart(title, samples, pick, interval, cls, { gauge = false, format = rate } = {}) {
  const slots = 3600 / interval;
  const values = Array(Math.max(0, slots - samples.length)).fill(0)
    .concat(samples.map((s) => (gauge ? pick(s) : pick(s) / interval))).slice(-slots);
  const peak = Math.max(...values, 0);
  const max = peak || 1;
  const w = 360, ht = 80;
  const x = (i) => (i / (slots - 1)) * w;
  const y = (v) => ht - (v / max) * (ht - 4);
  const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const graphic = svg("svg", { viewBox: `0 0 ${w} ${ht}`, preserveAspectRatio: "none", role: "img", "aria-label": `${title}, last hour` });
  graphic.append(svg("polygon", { class: "area", points: `0,${ht} ${points} ${w},${ht}` }), svg("polyline", { class: "line", points }));
  const now = values[values.length - 1] || 0;
  return h("div", { class: `panel chart ${cls || ""}` },
    h("div", { class: "row" }, h("strong", {}, title), h("span", { class: "spacer" }),
      h("span", { class: "muted" }, `now ${format(now)} · peak ${format(peak)}`)),
    graphic,
    h("div", { class: "row muted" }, h("small", {}, "1 hour ago"), h("span", { class: "spacer" }), h("small", {}, "now")));
}

function nodeState(n) {
  if (!n.up) return [h("span", { class: "dot down" }), "down"];
  if (n.needs_heal) return [h("span", { class: "dot warn" }), "needs heal"];
  if (n.behind) return [h("span", { class: "dot warn" }), "catching up"];
  return [h("span", { class: "dot up" }), "up"];
}

function diskCell(n) {
  if (n.disk_size_bytes == null) return "—";
  const used = n.disk_size_bytes - n.disk_free_bytes;
  return bar(used / n.disk_size_bytes, `${bytes(used)} used · ${bytes(n.disk_free_bytes)} free`, { warnAbove: 0.85 });
}

async function overviewPage() {
  await every(5000, async (show) => {
    const [{ nodes, workers, replication, frame_format }, activity, heal] = await Promise.all([admin("status"), admin("activity"), admin("heal")]);
    const up = nodes.filter((n) => n.up).length;
    const zones = [...new Set(nodes.map((n) => n.zone))];
    const hints = nodes.reduce((a, n) => a + (n.hints || 0), 0);
    // Nodes on one host that report the same disk_id (all of `tessera dev`'s) share a file system:
    // count it once. The id alone can repeat across hosts (it is a device number on some).
    const host = (addr) => addr.slice(0, addr.lastIndexOf(":"));
    const disks = new Map(nodes.filter((n) => n.disk_size_bytes != null)
      .map((n) => [n.disk_id ? `${host(n.addr)} ${n.disk_id}` : n.id, n]));
    const size = [...disks.values()].reduce((a, n) => a + n.disk_size_bytes, 0);
    const free = [...disks.values()].reduce((a, n) => a + n.disk_free_bytes, 0);
    const card = (label, value, field) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", "data-field": field }, value));
    const rows = [];
    for (const zone of zones) {
      rows.push(h("tr", { class: "zone-row" }, h("td", { colspan: 7 }, `Zone ${zone}`)));
      for (const n of nodes.filter((n) => n.zone === zone)) {
        rows.push(h("tr", { "data-node": n.id },
          h("td", {}, nodeState(n)), h("td", {}, n.id), h("td", {}, h("code", {}, n.addr)),
          h("td", {}, diskCell(n)), h("td", { class: "num", "data-field": "hints" }, count(n.hints)),
          h("td", {}, n.scrub ? (n.scrub.running ? "scrubbing" : `${count(n.scrub.corrupt + n.scrub.missing)} damaged`) : "—"),
          h("td", { "data-field": "frames" }, n.frame_formats ? n.frame_formats.join(", ") : "—")));
      }
    }
    const healing = heal && heal.running ? h("div", {}, `healing ${heal.node}`, healBar(heal)) : "none";
    show("Overview",
      h("div", { class: "cards" },
        card("Region", activity.region, "region"),
        card("Nodes up", `${up} / ${nodes.length}`, "nodes-up"),
        card("Zones", zones.length, "zones"),
        card("Pending hints", count(hints), "hints"),
        card("Heals in progress", healing, "heal"),
        card("Disk used", size ? `${bytes(size - free)} of ${bytes(size)}` : "—", "disk"),
        card("Frames written", `format ${frame_format}`, "frames")),
      replication.length ? regionsTable(activity.region, up, nodes.length, replication) : "",
      h("h2", {}, "Requests to this gateway"),
      h("div", { class: "charts" },
        chart("Requests", activity.samples, (s) => s.requests, activity.interval_secs),
        chart("Errors (4xx and 5xx)", activity.samples, (s) => s.client_errors + s.server_errors, activity.interval_secs, "errors")),
      h("h2", {}, "Nodes"),
      h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "State"), h("th", {}, "Node"), h("th", {}, "Address"),
        h("th", {}, "Disk"), h("th", { class: "num" }, "Hints"), h("th", {}, "Scrub"),
        h("th", { title: "The fragment frame formats the node knows" }, "Frame formats"))), h("tbody", {}, rows)),
      workersPanel(workers, nodes));
  });
}

/// The background workers of this gateway and of every node that answered, as far as any of
/// them panicked: each one that did was started again, and its last panic says why.
function workersPanel(gatewayWorkers, nodes) {
  const all = [...(gatewayWorkers || []).map((w) => ["this gateway", w]),
    ...nodes.flatMap((n) => (n.workers || []).map((w) => [n.id, w]))];
  const panicked = all.filter(([, w]) => w.restarts > 0);
  const total = `${all.length} background workers`;
  if (!panicked.length) return h("div", { id: "workers" }, h("h2", {}, "Workers"), h("p", { class: "muted" }, `${total}; none has panicked.`));
  return h("div", { id: "workers" }, h("h2", {}, "Workers"),
    h("p", {}, `${total}; ${panicked.length} panicked and started again.`),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Process"), h("th", {}, "Worker"), h("th", { class: "num" }, "Restarts"),
      h("th", {}, "Last panic"), h("th", {}, "When"))),
    h("tbody", {}, panicked.map(([process, w]) => h("tr", { "data-worker": `${process}/${w.name}` },
      h("td", {}, process), h("td", {}, w.name), h("td", { class: "num" }, count(w.restarts)),
      h("td", {}, h("code", {}, w.last_panic || "")), h("td", {}, w.last_panic_at ? ago(w.last_panic_at) : "—"))))));
}

/// This region and each peer region, as the links to them show them.
function regionsTable(region, up, total, links) {
  const rows = [h("tr", { "data-region": region }, h("td", {}, h("span", { class: `dot ${up === total ? "up" : "warn"}` }), "this region"),
    h("td", {}, region), h("td", {}, `${up} / ${total} nodes up`), h("td", { class: "num" }, "—"), h("td", {}, "—"))];
  for (const l of links) {
    rows.push(h("tr", { "data-region": l.target },
      h("td", {}, h("span", { class: `dot ${l.up ? "up" : "down"}` }), l.up ? "reachable" : "unreachable"),
      h("td", {}, h("a", { href: "#/replication" }, l.target)), h("td", {}, l.draining ? "drained by this gateway" : "drained by another gateway"),
      h("td", { class: "num", "data-field": "backlog" }, count(l.backlog_entries)),
      h("td", { "data-field": "oldest" }, l.oldest_pending_secs == null ? "nothing pending" : seconds(l.oldest_pending_secs))));
  }
  return h("div", {}, h("h2", {}, "Regions"),
    h("table", { id: "regions" }, h("thead", {}, h("tr", {}, h("th", {}, "State"), h("th", {}, "Region"), h("th", {}, ""),
      h("th", { class: "num" }, "Changes to send"), h("th", {}, "Oldest pending"))), h("tbody", {}, rows)));
}

// ---- Buckets ----

/// The buckets with their usage (admin API), or, for a key that is not the administrator, the
/// buckets S3's ListBuckets shows it, without usage.
async function listBuckets() {
  try {
    return await admin("buckets");
  } catch (e) {
    if (e.code !== "AccessDenied") throw e;
    const doc = await s3Xml("GET", "", "", "");
    return [...doc.querySelectorAll("Bucket")].map((b) => ({
      name: b.querySelector("Name").textContent, created: b.querySelector("CreationDate")?.textContent,
    }));
  }
}

async function bucketsPage() {
  const buckets = await listBuckets();
  const name = h("input", { type: "text", id: "new-bucket", placeholder: "my-bucket", required: true, pattern: "[a-z0-9][a-z0-9.\\-]{1,61}[a-z0-9]" });
  const versioned = h("input", { type: "checkbox", id: "new-versioned" });
  const locked = h("input", { type: "checkbox", id: "new-locked" });
  const create = h("form", {
    class: "panel row", onsubmit: (e) => {
      e.preventDefault();
      act(async () => {
        const headers = locked.checked ? { "x-amz-bucket-object-lock-enabled": "true" } : {};
        await call("PUT", s3Path(name.value), { headers });
        if (versioned.checked && !locked.checked) await setVersioning(name.value, "Enabled");
        await bucketsPage();
      }, `Bucket ${name.value} created.`);
    },
  }, h("label", { for: "new-bucket", class: "inline" }, "New bucket"), name,
    h("label", { class: "inline" }, versioned, "Versioning"),
    h("label", { class: "inline" }, locked, "Object Lock"),
    h("button", { type: "submit" }, "Create bucket"));
  const rows = buckets.map((b) => h("tr", { "data-bucket": b.name },
    h("td", {}, h("a", { href: `#/browse/${enc(b.name)}` }, b.name)),
    h("td", { class: "num", "data-field": "objects" }, count(b.objects)),
    h("td", { class: "num", "data-field": "bytes" }, bytes(b.bytes)),
    h("td", {}, b.versioning === undefined ? "—" : b.versioning || "off", b.object_lock ? " · locked" : ""),
    h("td", {}, when(b.created)),
    h("td", {}, h("div", { class: "row" },
      h("a", { class: "button secondary", href: `#/bucket/${enc(b.name)}` }, "Settings"),
      h("button", {
        type: "button", class: "danger", "aria-label": `Delete bucket ${b.name}`,
        onclick: () => confirm(`Delete bucket ${b.name}? It must be empty.`) &&
          act(async () => { await call("DELETE", s3Path(b.name)); await bucketsPage(); }, `Bucket ${b.name} deleted.`),
      }, "Delete")))));
  page("Buckets", create, h("h2", {}, `${buckets.length} bucket${buckets.length === 1 ? "" : "s"}`),
    buckets.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", { class: "num" }, "Objects"),
      h("th", { class: "num" }, "Size"), h("th", {}, "Versioning"), h("th", {}, "Created"), h("th", {}, ""))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No buckets yet."));
}

function setVersioning(bucket, status) {
  const body = `<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>${status}</Status></VersioningConfiguration>`;
  return call("PUT", s3Path(bucket, "", "versioning"), { body, headers: { "Content-Type": "application/xml" } });
}

/// A bucket setting kept as an XML document (lifecycle, CORS): shown, edited, saved, removed.
function xmlSetting(bucket, query, title, missingCode, example) {
  const area = h("textarea", { id: `setting-${query}`, spellcheck: "false", "aria-label": `${title} XML`, placeholder: example });
  const state = h("span", { class: "muted" });
  const load = async () => {
    try {
      const r = await call("GET", s3Path(bucket, "", query));
      area.value = await r.text();
      state.textContent = "";
    } catch (e) {
      if (e.code !== missingCode) throw e;
      area.value = "";
      state.textContent = "Not set.";
    }
  };
  const panel = h("div", { class: "panel" }, h("div", { class: "row" }, h("strong", {}, title), state), area,
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => act(async () => { await call("PUT", s3Path(bucket, "", query), { body: area.value, headers: { "Content-Type": "application/xml" } }); await load(); }, `${title} saved.`) }, "Save"),
      h("button", { type: "button", class: "danger", onclick: () => act(async () => { await call("DELETE", s3Path(bucket, "", query)); await load(); }, `${title} removed.`) }, "Remove")));
  return { panel, load };
}

async function bucketPage(bucket) {
  const doc = await s3Xml("GET", bucket, "", "versioning");
  const status = doc.querySelector("Status")?.textContent || "Off";
  const lifecycle = xmlSetting(bucket, "lifecycle", "Lifecycle", "NoSuchLifecycleConfiguration",
    '<LifecycleConfiguration><Rule><ID>expire-logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule></LifecycleConfiguration>');
  const cors = xmlSetting(bucket, "cors", "CORS", "NoSuchCORSConfiguration",
    "<CORSConfiguration><CORSRule><AllowedOrigin>https://example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>");
  await Promise.all([lifecycle.load(), cors.load()]);
  const toggle = status === "Enabled" ? "Suspended" : "Enabled";
  page(`Bucket ${bucket}`,
    h("div", { class: "row" }, h("a", { href: `#/browse/${enc(bucket)}` }, "Browse objects"), h("a", { href: "#/buckets" }, "All buckets")),
    h("h2", {}, "Versioning"),
    h("div", { class: "panel row" }, h("span", {}, "Status: ", h("strong", { id: "versioning-status" }, status)),
      h("button", { type: "button", onclick: () => act(async () => { await setVersioning(bucket, toggle); await bucketPage(bucket); }, `Versioning ${toggle.toLowerCase()}.`) },
        toggle === "Enabled" ? "Enable versioning" : "Suspend versioning")),
    h("h2", {}, "Lifecycle rules"), lifecycle.panel,
    h("h2", {}, "CORS rules"), cors.panel);
}

// ---- Object browser ----

const PAGE_SIZE = 100;

function crumbs(bucket, prefix) {
  const parts = prefix.split("/").filter(Boolean);
  const items = [h("a", { href: "#/buckets" }, "Buckets"), h("span", { class: "sep" }, "›"),
    h("a", { href: `#/browse/${enc(bucket)}` }, bucket)];
  let path = "";
  for (const p of parts) {
    path += p + "/";
    items.push(h("span", { class: "sep" }, "›"), h("a", { href: `#/browse/${enc(bucket)}/${enc(path)}` }, p));
  }
  return h("nav", { class: "crumbs", "aria-label": "Breadcrumbs" }, items);
}

async function browsePage(bucket, prefix, pageIndex = 0) {
  const pagesKey = `${bucket}\n${prefix}`;
  const tokens = listPages.get(pagesKey) || [""];
  listPages.set(pagesKey, tokens);
  const token = tokens[pageIndex] || "";
  let query = `list-type=2&delimiter=%2F&max-keys=${PAGE_SIZE}&prefix=${enc(prefix)}`;
  if (token) query += `&continuation-token=${enc(token)}`;
  const doc = await s3Xml("GET", bucket, "", query);
  const next = doc.querySelector("NextContinuationToken")?.textContent;
  if (next) tokens[pageIndex + 1] = next;
  const folders = [...doc.querySelectorAll("CommonPrefixes > Prefix")].map((p) => p.textContent);
  const files = [...doc.querySelectorAll("Contents")].map((c) => ({
    key: c.querySelector("Key").textContent,
    size: Number(c.querySelector("Size")?.textContent || 0),
    modified: c.querySelector("LastModified")?.textContent,
  })).filter((f) => f.key !== prefix);
  const reload = () => browsePage(bucket, prefix, pageIndex);
  const selected = new Set();
  const rows = [
    ...folders.map((f) => h("tr", { "data-prefix": f }, h("td", {}),
      h("td", {}, h("a", { class: "folder", href: `#/browse/${enc(bucket)}/${enc(f)}` }, f.slice(prefix.length))),
      h("td", { class: "num" }, "—"), h("td", {}, ""), h("td", {}, ""))),
    ...files.map((f) => h("tr", { "data-key": f.key },
      h("td", {}, h("input", { type: "checkbox", "aria-label": `Select ${f.key}`, onchange: (e) => (e.target.checked ? selected.add(f.key) : selected.delete(f.key)) })),
      h("td", {}, h("a", { class: "file", href: `#/object/${enc(bucket)}/${enc(f.key)}` }, f.key.slice(prefix.length))),
      h("td", { class: "num" }, bytes(f.size)), h("td", {}, when(f.modified)),
      h("td", {}, h("div", { class: "row" },
        h("a", { class: "button secondary", href: downloadUrl(bucket, f.key), download: f.key.split("/").pop() }, "Download"),
        h("button", { type: "button", class: "danger", "aria-label": `Delete ${f.key}`, onclick: () => confirm(`Delete ${f.key}?`) && act(async () => { await call("DELETE", s3Path(bucket, f.key)); await reload(); }, `${f.key} deleted.`) }, "Delete"))))),
  ];
  const uploads = h("div", { class: "uploads", id: "uploads" });
  const picker = h("input", { type: "file", id: "upload-files", multiple: true, onchange: () => { upload(bucket, prefix, [...picker.files], uploads, reload); picker.value = ""; } });
  const drop = h("div", {
    class: "drop",
    ondragover: (e) => { e.preventDefault(); drop.classList.add("over"); },
    ondragleave: () => drop.classList.remove("over"),
    ondrop: (e) => { e.preventDefault(); drop.classList.remove("over"); upload(bucket, prefix, [...e.dataTransfer.files], uploads, reload); },
  }, h("label", { for: "upload-files", class: "inline" }, "Upload files: "), picker, h("span", {}, " or drop them here"));
  const folder = h("button", {
    type: "button", class: "secondary", onclick: () => {
      const name = prompt("Folder name");
      if (!name) return;
      const path = `${prefix}${name.replace(/\/+$/, "")}/`;
      act(async () => { await call("PUT", s3Path(bucket, path)); location.hash = `#/browse/${enc(bucket)}/${enc(path)}`; });
    },
  }, "New folder");
  const deleteSelected = h("button", {
    type: "button", class: "danger", onclick: () => selected.size && confirm(`Delete ${selected.size} object(s)?`) && act(async () => {
      for (const key of selected) await call("DELETE", s3Path(bucket, key));
      await reload();
    }, `${selected.size} object(s) deleted.`),
  }, "Delete selected");
  const pager = h("div", { class: "pager" },
    h("span", { class: "muted" }, `Page ${pageIndex + 1}`),
    h("button", { type: "button", class: "secondary", disabled: pageIndex === 0, onclick: () => act(() => browsePage(bucket, prefix, pageIndex - 1)) }, "Previous"),
    h("button", { type: "button", class: "secondary", disabled: !next, onclick: () => act(() => browsePage(bucket, prefix, pageIndex + 1)) }, "Next"));
  page(`${bucket}`, crumbs(bucket, prefix), drop, uploads,
    h("div", { class: "row", style: "margin: 1em 0" }, folder, deleteSelected, h("span", { class: "spacer" }),
      h("a", { href: `#/bucket/${enc(bucket)}` }, "Bucket settings")),
    rows.length ? h("table", { id: "objects" }, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Name"), h("th", { class: "num" }, "Size"), h("th", {}, "Last modified"), h("th", {}, ""))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, prefix ? "This folder is empty." : "This bucket is empty."),
    pager);
}

function downloadUrl(bucket, key, versionId) {
  const name = key.split("/").pop() || "download";
  let query = `response-content-disposition=${enc(`attachment; filename*=UTF-8''${enc(name)}`)}`;
  if (versionId) query += `&versionId=${enc(versionId)}`;
  return s3Path(bucket, key, query);
}

/// Uploads files one after another, each with its progress bar; then calls `done`.
async function upload(bucket, prefix, files, list, done) {
  const items = files.map((file) => {
    const progress = h("progress", { max: 100, value: 0, "aria-label": `Upload of ${file.name}` });
    const state = h("span", { class: "state" }, "waiting");
    list.append(h("div", { class: "upload", "data-file": file.name }, h("span", {}, file.name), progress, state));
    return { file, progress, state };
  });
  let failed = 0;
  for (const { file, progress, state } of items) {
    state.textContent = "uploading";
    try {
      await uploadFile(bucket, prefix + file.name, file, (f) => { progress.value = f * 100; });
      progress.value = 100;
      state.textContent = "done";
    } catch (e) {
      failed++;
      state.textContent = `failed: ${e.message}`;
      state.classList.add("bad");
    }
  }
  toast(failed ? `${failed} upload(s) failed.` : `${files.length} file(s) uploaded.`, failed > 0);
  const keep = [...list.children];
  await done().catch((e) => e.status !== 401 && toast(e.message, true));
  document.getElementById("uploads")?.replaceChildren(...keep);
}

/// Files larger than two parts go up as a multipart upload in parts of this size: a single PUT
/// stops at 5 GiB, and a part that fails costs only itself.
const PART_BYTES = 16 * 1024 * 1024;

/// Uploads one file, reporting the fraction sent; a multipart upload that fails is aborted, so
/// that its parts do not stay behind.
async function uploadFile(bucket, key, file, onProgress) {
  const type = file.type || "application/octet-stream";
  if (file.size <= 2 * PART_BYTES) return send("PUT", s3Path(bucket, key), file, type, onProgress);
  const created = await s3Xml("POST", bucket, key, "uploads", { headers: { "Content-Type": type } });
  const uploadId = created.querySelector("UploadId")?.textContent;
  if (!uploadId) throw new Error("the store did not start a multipart upload");
  const query = `uploadId=${enc(uploadId)}`;
  try {
    const parts = [];
    for (let start = 0, number = 1; start < file.size; start += PART_BYTES, number++) {
      const part = file.slice(start, start + PART_BYTES);
      const sent = await send("PUT", s3Path(bucket, key, `partNumber=${number}&${query}`), part, null,
        (f) => onProgress((start + f * part.size) / file.size));
      const etag = sent.getResponseHeader("ETag") || "";
      if (!/^"[0-9a-f]+"$/.test(etag)) throw new Error(`part ${number} came back without an ETag`);
      parts.push(`<Part><PartNumber>${number}</PartNumber><ETag>${etag}</ETag></Part>`);
    }
    const body = `<CompleteMultipartUpload>${parts.join("")}</CompleteMultipartUpload>`;
    const done = await s3Xml("POST", bucket, key, query, { body, headers: { "Content-Type": "application/xml" } });
    // S3 may answer 200 and still fail the completion, in the body.
    const error = done.querySelector("Error");
    if (error) throw new ApiError(200, error.querySelector("Code")?.textContent, error.querySelector("Message")?.textContent);
  } catch (e) {
    await call("DELETE", s3Path(bucket, key, query)).catch(() => {});
    throw e;
  }
}

/// Sends a body with XMLHttpRequest, whose upload progress `fetch` does not report; resolves
/// with the finished request.
function send(method, path, body, type, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.setRequestHeader("X-Tessera-CSRF", session.csrf);
    if (type) xhr.setRequestHeader("Content-Type", type);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onload = async () => {
      if (xhr.status >= 200 && xhr.status < 300) return resolve(xhr);
      if (xhr.status === 401) { session = null; showLogin("Your session has ended: log in again."); }
      reject(await failure(new Response(xhr.responseText, { status: xhr.status })));
    };
    xhr.onerror = () => reject(new Error("the connection to the console failed"));
    xhr.send(body);
  });
}

// ---- Object details ----

async function objectPage(bucket, key) {
  const head = await call("HEAD", s3Path(bucket, key), { headers: { "x-amz-checksum-mode": "ENABLED" } });
  if (!head.ok) throw new ApiError(head.status, "", head.status === 404 ? `No object ${key} in ${bucket} (it may be deleted, with versions left).` : `HEAD answered ${head.status}`);
  const hd = head.headers;
  const props = [["Size", bytes(Number(hd.get("content-length")))], ["ETag", hd.get("etag")],
    ["Content type", hd.get("content-type")], ["Last modified", hd.get("last-modified")],
    ["Version", hd.get("x-amz-version-id") || "—"], ["Storage class", hd.get("x-amz-storage-class") || "STANDARD"],
    ["Replication", hd.get("x-amz-replication-status") || "—"],
    ["Encryption", hd.get("x-amz-server-side-encryption") || "none"]];
  const extra = [];
  for (const [k, v] of hd.entries()) {
    if (k.startsWith("x-amz-checksum-") && k !== "x-amz-checksum-type") extra.push([`Checksum ${k.slice(15).toUpperCase()}`, v]);
    if (k.startsWith("x-amz-meta-")) extra.push([`Metadata ${k.slice(11)}`, v]);
  }
  const dl = h("dl", { class: "props" }, [...props, ...extra].flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, v ?? "—")]));
  const tagsDoc = await s3Xml("GET", bucket, key, "tagging");
  const tags = [...tagsDoc.querySelectorAll("Tag")].map((t) => [t.querySelector("Key")?.textContent, t.querySelector("Value")?.textContent]);
  const versionsDoc = await s3Xml("GET", bucket, "", `versions&prefix=${enc(key)}`);
  const versions = [...versionsDoc.querySelectorAll("Version, DeleteMarker")]
    .filter((v) => v.querySelector("Key")?.textContent === key)
    .map((v) => ({
      id: v.querySelector("VersionId")?.textContent, latest: v.querySelector("IsLatest")?.textContent === "true",
      marker: v.tagName === "DeleteMarker", size: Number(v.querySelector("Size")?.textContent || 0),
      modified: v.querySelector("LastModified")?.textContent,
    }));
  const reload = () => objectPage(bucket, key);
  const parent = key.includes("/") ? key.slice(0, key.lastIndexOf("/") + 1) : "";
  page(key.split("/").pop() || key, crumbs(bucket, parent),
    h("div", { class: "row" },
      h("a", { class: "button", href: downloadUrl(bucket, key), download: key.split("/").pop() }, "Download"),
      h("button", { type: "button", class: "danger", onclick: () => confirm(`Delete ${key}?`) && act(async () => { await call("DELETE", s3Path(bucket, key)); location.hash = `#/browse/${enc(bucket)}/${enc(parent)}`; }, `${key} deleted.`) }, "Delete")),
    h("h2", {}, "Properties"), h("div", { class: "panel" }, dl),
    h("h2", {}, "Tags"),
    tags.length ? h("table", {}, h("tbody", {}, tags.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v))))) : h("p", { class: "muted" }, "No tags."),
    h("h2", {}, "Versions"),
    h("table", { id: "versions" }, h("thead", {}, h("tr", {}, h("th", {}, "Version"), h("th", {}, ""), h("th", { class: "num" }, "Size"), h("th", {}, "Modified"), h("th", {}, ""))),
      h("tbody", {}, versions.map((v) => h("tr", { "data-version": v.id },
        h("td", {}, h("code", {}, v.id)),
        h("td", {}, v.latest ? h("span", { class: "badge ok" }, "latest") : "", v.marker ? h("span", { class: "badge bad" }, "delete marker") : ""),
        h("td", { class: "num" }, v.marker ? "—" : bytes(v.size)), h("td", {}, when(v.modified)),
        h("td", {}, h("div", { class: "row" },
          v.marker ? "" : h("a", { class: "button secondary", href: downloadUrl(bucket, key, v.id) }, "Download"),
          h("button", { type: "button", class: "danger", "aria-label": `Delete version ${v.id}`, onclick: () => confirm(`Delete version ${v.id} for good?`) && act(async () => { await call("DELETE", s3Path(bucket, key, `versionId=${enc(v.id)}`)); await reload(); }, "Version deleted.") }, "Delete version"))))))));
}

// ---- Scrub ----

function scrubProgress(s, up) {
  if (!up || !s) return "—";
  if (s.running) {
    if (s.last_pass_bytes > 0) {
      const f = Math.min(0.99, s.bytes_checked / s.last_pass_bytes);
      return bar(f, `${Math.round(f * 100)}% · ${bytes(s.bytes_checked)} of about ${bytes(s.last_pass_bytes)}`);
    }
    return bar(0, `${bytes(s.bytes_checked)} checked (first pass: size unknown)`, { indeterminate: true });
  }
  return s.passes > 0 ? bar(1, `finished · ${bytes(s.bytes_checked)} in ${count(s.files_checked)} files`) : bar(0, "no pass yet");
}

async function scrubPage() {
  await every(2000, async (show) => {
    const { nodes } = await admin("status");
    const now = Date.now() / 1000;
    const rows = nodes.map((n) => {
      const s = n.scrub;
      const speed = s && s.running ? s.bytes_checked / Math.max(1, now - s.pass_started_unix) : null;
      return h("tr", { "data-node": n.id },
        h("td", {}, nodeState(n)), h("td", {}, n.id), h("td", {}, n.zone),
        h("td", { "data-field": "state" }, s ? (s.running ? "running" : "idle") : "—"),
        h("td", { style: "min-width: 220px" }, scrubProgress(s, n.up)),
        h("td", { class: "num", "data-field": "files_checked" }, s ? count(s.files_checked) : "—"),
        h("td", { class: "num" }, speed === null ? "—" : `${bytes(speed)}/s`),
        h("td", { "data-field": "last_pass" }, s ? ago(s.last_pass_finished_unix) : "—"),
        h("td", { class: "num", "data-field": "passes" }, s ? count(s.passes) : "—"),
        h("td", { class: "num", "data-field": "corrupt" }, s ? count(s.corrupt) : "—"),
        h("td", { class: "num", "data-field": "missing" }, s ? count(s.missing) : "—"),
        h("td", { class: "num", "data-field": "repaired" }, s ? count(s.repaired) : "—"),
        h("td", { class: "num", "data-field": "awaiting_repair" }, s ? count(s.awaiting_repair) : "—"),
        h("td", {}, h("button", {
          type: "button", class: "secondary", disabled: !n.up || (s && s.running), "aria-label": `Start a scrub pass on ${n.id}`,
          onclick: () => act(async () => { await adminPost(`scrub?node=${enc(n.id)}`); }, `Scrub started on ${n.id}.`),
        }, "Start pass")));
    });
    show("Scrub",
      h("p", { class: "muted" }, "Each node re-reads its fragment files and checks every block's hash. Corrupt files are moved aside and the node is healed from the others; a damaged file counts as repaired once a good copy is back in its place."),
      h("table", { id: "scrub" }, h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, "Node"), h("th", {}, "Zone"), h("th", {}, "State"),
        h("th", {}, "Current pass"), h("th", { class: "num" }, "Files"), h("th", { class: "num" }, "Speed"), h("th", {}, "Last finished"),
        h("th", { class: "num" }, "Passes"), h("th", { class: "num" }, "Corrupt"), h("th", { class: "num" }, "Missing"),
        h("th", { class: "num" }, "Repaired"), h("th", { class: "num" }, "Awaiting repair"), h("th", {}, ""))),
      h("tbody", {}, rows)));
  });
}

// ---- Healing ----

async function healPage() {
  await every(2000, async (show) => {
    const [heals, { nodes }] = await Promise.all([admin("heals"), admin("status")]);
    const heal = heals[0];
    const select = h("select", { id: "heal-node", "aria-label": "Node to heal" }, nodes.map((n) => h("option", { value: n.id }, `${n.id} (${n.zone})${n.needs_heal ? " — needs heal" : ""}`)));
    const waiting = nodes.filter((n) => n.needs_heal || n.behind);
    const details = heal ? h("div", { class: "panel" },
      h("div", { class: "row" }, h("strong", {}, `Node ${heal.node}`), heal.running ? h("span", { class: "badge" }, "running") : h("span", { class: "badge ok" }, "finished"),
        heal.errors ? h("span", { class: "badge bad" }, `${heal.errors} errors`) : ""),
      healBar(heal),
      h("dl", { class: "props", style: "margin-top: 1em" }, [
        ["Started", ago(heal.started_unix)], ["Finished", heal.finished_unix ? ago(heal.finished_unix) : "—"],
        ["Shards compared", count(heal.shards_compared)], ["Shards that differed", count(heal.shards_differing)],
        ["Versions listed", `${count(heal.versions_listed)} of about ${count(heal.versions_total)}`],
        ["Keys checked", count(heal.keys_checked)], ["Keys repaired", count(heal.keys_repaired)],
        ["Bytes rebuilt", bytes(heal.bytes_rebuilt)], ["Speed", `${bytes(heal.bytes_per_sec)}/s`], ["Errors", count(heal.errors)],
      ].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])))
      : h("p", { class: "muted" }, "No heal has run since this gateway started.");
    show("Healing and repair",
      h("p", { class: "muted" }, "A heal compares a node's shards with the other holders' and rebuilds what it lacks. Nodes that come back after missing writes are healed on their own; read repair fixes damage a GET meets."),
      h("form", {
        class: "panel row", onsubmit: (e) => {
          e.preventDefault();
          act(async () => { await adminPost(`heal?node=${enc(select.value)}`); }, `Heal of ${select.value} started.`);
        },
      }, h("label", { for: "heal-node", class: "inline" }, "Heal a node"), select, h("button", { type: "submit", disabled: heal && heal.running }, "Heal node")),
      h("h2", {}, "Waiting for a heal"),
      waiting.length ? h("ul", {}, waiting.map((n) => h("li", {}, `${n.id}: ${n.needs_heal ? "missed writes nobody kept" : "others hold hints for it"}`))) : h("p", { class: "muted" }, "No node is behind."),
      h("h2", {}, "Current or last heal"), details,
      h("h2", {}, "Recent heals"), heals.length ? recentHeals(heals) : h("p", { class: "muted" }, "None yet."));
  });
}

/// How far a heal has got: it first compares every bucket's shards (no fraction known yet),
/// then lists the versions of the buckets that differ, which the usage counted beforehand.
function healBar(heal) {
  if (!heal.running) return bar(1, "done");
  if (!heal.versions_total) return bar(0, `comparing shards: ${count(heal.shards_compared)} compared`, { indeterminate: true });
  const f = Math.min(0.99, heal.versions_listed / heal.versions_total);
  return bar(f, `${Math.floor(f * 100)}% · ${count(heal.versions_listed)} of about ${count(heal.versions_total)} versions listed`);
}

/// The heals this gateway ran, newest first, one row each.
function recentHeals(heals) {
  const rows = heals.map((p) => h("tr", { "data-started": p.started_unix },
    h("td", {}, p.running ? h("span", { class: "badge" }, "running") : p.errors ? h("span", { class: "badge bad" }, "errors") : h("span", { class: "badge ok" }, "finished")),
    h("td", {}, p.node), h("td", {}, ago(p.started_unix)), h("td", {}, p.finished_unix ? ago(p.finished_unix) : "—"),
    h("td", { class: "num" }, count(p.keys_repaired)), h("td", { class: "num" }, bytes(p.bytes_rebuilt)), h("td", { class: "num" }, count(p.errors))));
  return h("table", { id: "recent-heals" }, h("thead", {}, h("tr", {}, h("th", {}, "State"), h("th", {}, "Node"), h("th", {}, "Started"),
    h("th", {}, "Finished"), h("th", { class: "num" }, "Keys repaired"), h("th", { class: "num" }, "Bytes rebuilt"), h("th", { class: "num" }, "Errors"))),
  h("tbody", {}, rows));
}

// ---- Replication ----

const seconds = (s) => (s < 60 ? `${s.toFixed(1)} s` : s < 3600 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);

function linkSection(link, samples, interval) {
  const card = (label, value, field) => h("div", { class: "card" }, h("div", { class: "label" }, label), h("div", { class: "value", "data-field": field }, value));
  const buckets = link.buckets.map((b) => h("tr", { "data-bucket": b.bucket },
    h("td", {}, b.bucket), h("td", { class: "num" }, count(b.entries)), h("td", { class: "num" }, bytes(b.bytes))));
  return h("section", { "data-link": link.target },
    h("h2", {}, h("span", { class: `dot ${link.up ? "up" : "down"}` }), `${link.source} → ${link.target}`),
    h("div", { class: "cards" },
      card("Link", link.up ? "up" : "down", "up"),
      card("Backlog", `${count(link.backlog_entries)} changes`, "backlog"),
      card("Backlog bytes", bytes(link.backlog_bytes), "backlog-bytes"),
      card("Oldest pending (data-loss window)", link.oldest_pending_secs == null ? "none" : seconds(link.oldest_pending_secs), "oldest"),
      card("Throughput", `${rate(link.entries_per_sec)} · ${bytes(link.bytes_per_sec)}/s`, "rate"),
      card("Delivered", `${count(link.delivered_entries)} · ${bytes(link.delivered_bytes)}`, "delivered")),
    link.last_error ? h("div", { class: "notice", "data-field": "last-error" }, `Last error, ${ago(link.last_error_unix)}: ${link.last_error}`) : null,
    h("div", { class: "charts" },
      chart("Oldest pending", samples, (s) => s.oldest_pending_secs || 0, interval, "", { gauge: true, format: seconds }),
      chart("Backlog (changes)", samples, (s) => s.backlog_entries, interval, "", { gauge: true, format: count }),
      chart("Delivered", samples, (s) => s.delivered_bytes, interval, "", { format: (v) => `${bytes(v)}/s` })),
    buckets.length
      ? h("table", { class: "link-buckets" }, h("thead", {}, h("tr", {}, h("th", {}, "Bucket"), h("th", { class: "num" }, "Changes pending"), h("th", { class: "num" }, "Bytes pending"))), h("tbody", {}, buckets))
      : h("p", { class: "muted" }, "Nothing pending in any bucket."));
}

async function replicationPage() {
  await every(5000, async (show) => {
    const [status, history] = await Promise.all([admin("replication"), admin("replication/history")]);
    if (!status.links.length) {
      show("Replication", h("div", { class: "notice" }, `This cluster is one region (${status.region}): there is no other region to replicate to. `,
        "When regions are configured, their replication lag and backlog per region pair appear here."));
      return;
    }
    const samplesOf = (link) => (history.links.find((l) => l.target === link.target) || { samples: [] }).samples;
    show("Replication",
      h("p", { class: "muted" }, `What region ${status.region} has still to send each peer region, as this gateway's drain counts it (every second). `,
        "The oldest pending change's age is what this region would lose for that peer if it were lost now."),
      ...status.links.map((l) => linkSection(l, samplesOf(l), history.interval_secs)));
  });
}

// ---- Access keys ----

async function keysPage(created) {
  const [keys, buckets] = await Promise.all([admin("keys"), admin("buckets")]);
  const name = h("input", { type: "text", id: "new-key", required: true, maxlength: 128, placeholder: "backups" });
  const mayCreate = h("input", { type: "checkbox", id: "new-key-create-bucket" });
  const create = h("form", {
    class: "panel row", onsubmit: (e) => {
      e.preventDefault();
      act(async () => { await keysPage(await adminPost("keys", { name: name.value, create_bucket: mayCreate.checked })); });
    },
  }, h("label", { for: "new-key", class: "inline" }, "New key named"), name,
    h("label", { class: "inline" }, mayCreate, "May create buckets"), h("button", { type: "submit" }, "Create key"));
  const secret = created ? h("div", { class: "notice", role: "alert", id: "created-key" },
    h("strong", {}, `Key ${created.name} created. `), "Its secret is shown this once: copy it now.",
    h("dl", { class: "props", style: "margin-top: .6em" }, h("dt", {}, "Access key"), h("dd", {}, h("code", { "data-field": "id" }, created.id)),
      h("dt", {}, "Secret key"), h("dd", {}, h("code", { "data-field": "secret" }, created.secret)))) : "";
  const grantForm = (k) => {
    const bucket = h("select", { "aria-label": `Bucket for ${k.name}` }, buckets.map((b) => h("option", { value: b.name }, b.name)));
    const boxes = ["read", "write", "owner"].map((p) => [p, h("input", { type: "checkbox", "aria-label": `${p} for ${k.name}` })]);
    const change = (verb) => act(async () => {
      const body = { bucket: bucket.value };
      for (const [p, box] of boxes) body[p] = box.checked;
      await adminPost(`keys/${enc(k.id)}/${verb}`, body);
      await keysPage();
    }, verb === "allow" ? "Granted." : "Taken back.");
    return h("div", { class: "row" }, bucket, boxes.map(([p, box]) => h("label", { class: "inline" }, box, p)),
      h("button", { type: "button", class: "secondary", disabled: !buckets.length, onclick: () => change("allow") }, "Allow"),
      h("button", { type: "button", class: "secondary", disabled: !buckets.length, onclick: () => change("deny") }, "Deny"));
  };
  const grants = (k) => (k.buckets.length ? k.buckets.map((g) =>
    h("div", {}, h("code", {}, g.bucket), ": ", ["read", "write", "owner"].filter((p) => g[p]).join(", ") || "nothing")) : h("span", { class: "muted" }, "no grants"));
  const rows = keys.map((k) => h("tr", { "data-key-id": k.id },
    h("td", {}, h("code", {}, k.id)), h("td", {}, k.name), h("td", {}, when(k.created)),
    h("td", {}, k.create_bucket ? "yes" : "no"), h("td", {}, grants(k)), h("td", {}, grantForm(k)),
    h("td", {}, h("button", {
      type: "button", class: "danger", "aria-label": `Delete key ${k.name}`,
      onclick: () => confirm(`Delete key ${k.name} (${k.id})? Clients using it are refused within seconds.`) &&
        act(async () => { await call("DELETE", `/api/admin/keys/${enc(k.id)}`); await keysPage(); }, `Key ${k.name} deleted.`),
    }, "Delete"))));
  page("Access keys",
    h("p", { class: "muted" }, "Keys other than the administrator's (the one in the gateway's config) may use the buckets they are granted, and those they create."),
    secret, create,
    keys.length ? h("table", { id: "keys" }, h("thead", {}, h("tr", {}, h("th", {}, "Access key"), h("th", {}, "Name"), h("th", {}, "Created"),
      h("th", {}, "Creates buckets"), h("th", {}, "Grants"), h("th", {}, "Change a grant"), h("th", {}, ""))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No keys besides the administrator's."));
}

// ---- Start ----

(async () => {
  const r = await fetch("/api/session", { credentials: "same-origin" });
  if (r.ok) {
    session = await r.json();
    start();
  } else {
    const j = await r.json().catch(() => ({}));
    showLogin(j.expired ? j.error : "");
  }
})();
