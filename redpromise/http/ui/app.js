// The redpromise dashboard: plain DOM and fetch, an inline SVG chart, no build step.
"use strict";

const BASE = location.pathname.replace(/\/ui\/?$/, "");
const API = BASE + "/ui/api";
const COLORS = ["#2f5fd0", "#c2410c", "#1a7f37", "#7c3aed", "#0e7490", "#b91c1c"];
const state = { tab: "recent", cursor: null, session: null, detail: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "onclick") node.addEventListener("click", v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c ?? ""));
  return node;
}

function token() { return sessionStorage.getItem("redpromise-token") || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = "Bearer " + token();
  const resp = await fetch(API + path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await resp.json(); } catch (_) { body = { error: resp.statusText }; }
  if (resp.status === 401) showLocked(true);
  if (!resp.ok) {
    const err = new Error((body && body.error) || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function showError(err) { $("status").textContent = err ? String(err.message || err) : ""; }

// ISO 8601 in UTC ("…Z"): the zone is part of the text, whatever the viewer's zone is.
const fmtTime = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ") : "");
function fmtIdle(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return Math.round(ms / 60000) + " min";
}
const CONSUMER_STATUS = {
  alive: "read or renewed within a lease",
  gone: "stopped reading and renewing: its entries are reclaimed by another worker",
  idle: "holds nothing and has read nothing for a while (Redis before 7.2 cannot tell an idle worker from a stopped one)",
};
const stateBadge = (s) => el("span", { class: "state " + s }, s);
// A pending promise with a failed attempt on record is failing (retried, not settled).
const shownState = (r) => (r.state === "pending" && r.last_error ? "failing" : r.state);
// Each promise has its own address (#/promise/<id>): links, reloads and the back button.
const promiseHash = (id) => "#/promise/" + encodeURIComponent(id);
function promiseLink(id) {
  // Following the address already shown changes no hash: open (refresh) it directly.
  const onclick = (ev) => { if (hashPromise() === id) { ev.preventDefault(); openPromise(id); } };
  return el("a", { href: promiseHash(id), "data-id": id, onclick }, id);
}
function errorText(e) {
  if (!e) return "";
  return e.type + ("message" in e ? ": " + e.message : "");
}
function lastErrorText(e) {
  if (!e) return "";
  return errorText(e) + " (attempt " + e.attempt + (e.at ? ", " + fmtTime(e.at) : "") + ")";
}

// -- session and token ------------------------------------------------------------------

// With a gateway token every /ui/api call needs it: until it is given, the page shows
// nothing but the token form. Without one, a banner says the page is open to anyone.
function showLocked(locked) {
  $("locked").hidden = !locked;
  $("token-form").hidden = !locked;
  document.querySelector("main").hidden = locked;
}

async function loadSession() {
  state.session = await api("/session");
  showLocked(false);
  $("namespace").textContent = "namespace " + state.session.namespace;
  $("unprotected").hidden = state.session.token_required;
  $("mode").hidden = !state.session.token_required;
}

$("token-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("redpromise-token", $("token").value);
  $("token").value = "";
  await refreshAll();
});

// -- groups, chart, workers -------------------------------------------------------------

function rates(history, name) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1].groups[name], b = history[i].groups[name];
    const dt = (history[i].t - history[i - 1].t) / 1000;
    if (!a || !b || a.dispatched === null || b.dispatched === null || dt <= 0) continue;
    out.push({ t: history[i].t, v: Math.max(0, b.dispatched - a.dispatched) / dt });
  }
  return out;
}

function drawChart(history, names) {
  const svg = $("chart");
  const W = 480, H = 160, L = 34, R = 8, T = 8, B = 18;
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  // The axis covers the history held (2 to 15 minutes), so a fresh page draws lines too.
  const now = Date.now();
  const oldest = history.length ? history[0].t : now;
  const span = Math.min(15 * 60000, Math.max(2 * 60000, now - oldest)), t0 = now - span;
  const series = [];
  names.forEach((name, i) => {
    const color = COLORS[i % COLORS.length];
    series.push({ label: name + " backlog", color, dash: "", pts: history.filter((h) => h.groups[name]).map((h) => ({ t: h.t, v: h.groups[name].backlog })) });
    series.push({ label: name + " dispatched/s", color, dash: "4 3", pts: rates(history, name) });
  });
  const max = Math.max(1, ...series.flatMap((s) => s.pts.map((p) => p.v)));
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => H - B - (v / max) * (H - T - B);
  for (const f of [0, 0.5, 1]) {
    add("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), stroke: "#e3e6ec" });
    add("text", { x: L - 4, y: y(max * f) + 4, "text-anchor": "end", "font-size": 10, fill: "#687083" }, max * f >= 10 ? Math.round(max * f) : (max * f).toFixed(1));
  }
  for (const f of [1, 2 / 3, 1 / 3, 0]) {
    const m = (span * f) / 60000;
    const label = f ? "-" + (m >= 1 ? Math.round(m) + " min" : Math.round(m * 60) + " s") : "now";
    add("text", { x: x(now - span * f), y: H - 4, "text-anchor": f === 1 ? "start" : f ? "middle" : "end", "font-size": 10, fill: "#687083" }, label);
  }
  for (const s of series) {
    const pts = s.pts.filter((p) => p.t >= t0);
    if (pts.length === 1) add("circle", { cx: x(pts[0].t), cy: y(pts[0].v), r: 2.5, fill: s.color });
    if (pts.length < 2) continue;
    add("polyline", { points: pts.map((p) => x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(" "), fill: "none", stroke: s.color, "stroke-width": 1.8, "stroke-dasharray": s.dash });
  }
  $("chart-legend").textContent = history.length
    ? "solid: backlog · dashed: dispatched per second · sampled every 5 s while this page is open"
    : "collecting samples…";
}

async function loadOverview() {
  const data = await api("/overview");
  const body = $("groups").tBodies[0];
  body.replaceChildren();
  const workers = $("workers").tBodies[0];
  workers.replaceChildren();
  for (const g of data.groups) {
    const r = rates(data.history, g.name);
    const rate = r.length ? r[r.length - 1].v.toFixed(1) : "";
    const count = (st) => (data.counts && data.counts[st] ? data.counts[st][g.name] || 0 : "");
    const alive = g.consumers.filter((c) => c.status === "alive").length;
    body.append(el("tr", { "data-group": g.name }, el("td", {}, g.name), el("td", { class: "num" }, g.backlog), el("td", { class: "num" }, g.in_flight),
      el("td", { class: "num" }, rate), el("td", { class: "num", title: "alive (listed)" }, alive + (alive < g.consumers.length ? " (" + g.consumers.length + ")" : "")),
      ...["pending", "resolved", "rejected", "rejected_canceled", "rejected_timedout"].map((st) => el("td", { class: "num", "data-state": st }, count(st)))));
    for (const c of g.consumers) {
      workers.append(el("tr", { "data-consumer": c.name }, el("td", {}, g.name), el("td", {}, c.name),
        el("td", { title: CONSUMER_STATUS[c.status] || "" }, el("span", { class: "state consumer-" + c.status }, c.status)),
        el("td", { class: "num" }, c.pending), el("td", { class: "num" }, fmtIdle(c.idle_ms))));
    }
  }
  if (!workers.rows.length) workers.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no consumers")));
  $("dead-count").textContent = data.dead;
  const short = data.replicas_short || [];
  $("replicas").hidden = !short.length;
  $("replicas").textContent = short.map((r) => `shard ${r.shard} refuses writes (NOREPLICAS: too few replicas for replicas_ack) since ${new Date(r.since).toISOString()}`).join("; ");
  drawChart(data.history, data.groups.map((g) => g.name));
}

// -- promises, search, dead -------------------------------------------------------------

function filters() {
  const p = new URLSearchParams();
  const tabState = { failed: "rejected", failing: "failing" }[state.tab];
  const st = tabState ? ($("f-state").value || tabState) : $("f-state").value;
  if (st) p.set("state", st);
  for (const [k, id] of [["group", "f-group"], ["function", "f-function"], ["tag", "f-tag"]]) {
    if ($(id).value.trim()) p.set(k, $(id).value.trim());
  }
  return p;
}

async function loadPromises(more = false) {
  const table = $("promises").tBodies[0];
  if (!more) { table.replaceChildren(); state.cursor = null; }
  if (!state.session.search) {
    table.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "search needs redpromise's search indexes")));
    return;
  }
  const p = filters();
  if (more && state.cursor) p.set("cursor", state.cursor);
  const page = await api("/promises?" + p.toString());
  for (const r of page.records) {
    const last = r.last_error ? lastErrorText(r.last_error) : "";
    table.append(el("tr", { "data-id": r.id }, el("td", {}, promiseLink(r.id)), el("td", {}, stateBadge(shownState(r))), el("td", {}, r.function),
      el("td", {}, r.group), el("td", {}, fmtTime(r.created_at)), el("td", {}, fmtTime(r.completed_at)), el("td", { title: last }, last)));
  }
  if (!table.rows.length) table.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no promise matches")));
  state.cursor = page.cursor;
  $("more").hidden = !page.cursor;
}

async function loadDead(more = false) {
  const table = $("dead").tBodies[0];
  if (!more) { table.replaceChildren(); state.deadCursor = null; }
  const data = await api("/dead?limit=100" + (more && state.deadCursor ? "&cursor=" + encodeURIComponent(state.deadCursor) : ""));
  for (const r of data.records) {
    let action;
    if (r.requeued_as) action = el("span", {}, "requeued as ", promiseLink(r.requeued_as));
    else if (r.requeueable) {
      action = el("button", { class: "requeue", "data-key": r.key, onclick: () => requeue(r.key) }, "Requeue");
    } else action = el("span", { class: "muted" }, "cannot requeue");
    table.append(el("tr", { "data-key": r.key }, el("td", {}, fmtTime(r.recorded_at)), el("td", {}, r.id ? promiseLink(r.id) : el("span", { class: "muted" }, "none")),
      el("td", {}, r.group), el("td", { title: r.reason }, r.reason), el("td", {}, action)));
  }
  if (!table.rows.length) table.append(el("tr", {}, el("td", { colspan: 5, class: "muted" }, "no dead records")));
  state.deadCursor = data.cursor;
  $("dead-more").hidden = !data.cursor;
}

async function requeue(key) {
  try {
    const res = await api("/requeue?key=" + encodeURIComponent(key), { method: "POST" });
    await loadDead();
    await openPromise(res.id);
  } catch (err) { showError(err); }
}

async function loadSchedules() {
  const table = $("schedules").tBodies[0];
  const data = await api("/schedules");
  table.replaceChildren();
  for (const s of data.schedules) {
    table.append(el("tr", { "data-id": s.id }, el("td", {}, s.id), el("td", {}, s.kind), el("td", {}, el("code", {}, s.cron)),
      el("td", {}, s.function || ""), el("td", {}, s.group || ""), el("td", {}, fmtTime(s.next_run_at)), el("td", {}, fmtTime(s.last_run_at))));
  }
  if (!table.rows.length) table.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no schedules")));
}

async function loadList() {
  $("promises").hidden = state.tab === "dead";
  $("search").hidden = state.tab === "dead";
  $("dead").hidden = state.tab !== "dead";
  $("more").hidden = true;
  $("dead-more").hidden = true;
  if (state.tab === "dead") await loadDead();
  else await loadPromises();
}

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", async () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    state.tab = tab.dataset.tab;
    try { await loadList(); showError(null); } catch (err) { showError(err); }
  });
}

$("search").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const id = $("f-id").value.trim();
    if (id) location.hash = promiseHash(id);
    else await loadPromises();
    showError(null);
  } catch (err) { showError(err); }
});
$("more").addEventListener("click", () => loadPromises(true).catch(showError));
$("dead-more").addEventListener("click", () => loadDead(true).catch(showError));

// -- one promise ------------------------------------------------------------------------

function show(value) { return el("pre", {}, JSON.stringify(value, null, 1)); }

// The promise the address names (#/promise/<id>), or null.
function hashPromise() {
  const m = /^#\/promise\/(.+)$/.exec(location.hash);
  if (!m) return null;
  try { return decodeURIComponent(m[1]); } catch (_) { return null; }
}

async function openPromise(id) {
  if (hashPromise() !== id) { location.hash = promiseHash(id); return; }  // hashchange opens it
  let d;
  try { d = await api("/promise?id=" + encodeURIComponent(id)); } catch (err) { showError(err); return; }
  state.detail = d;
  $("d-link").setAttribute("href", promiseHash(d.id));
  const fresh = $("detail-section").hidden;
  $("detail-section").hidden = false;
  if (fresh) $("detail-section").scrollIntoView({ block: "nearest" });
  $("d-id").textContent = d.id;
  $("d-state").replaceWith(Object.assign(stateBadge(shownState(d)), { id: "d-state" }));
  const fields = $("d-fields");
  fields.replaceChildren();
  const row = (k, v) => fields.append(el("dt", {}, k), el("dd", {}, v));
  row("function", d.function);
  row("group", d.group || "(latent)");
  row("attempt", d.attempt);
  if (d.last_error) {
    row("last error", lastErrorText(d.last_error));
    if (d.last_error.next_retry_at) row("next retry", fmtTime(d.last_error.next_retry_at));
  }
  row("version", d.version);
  if (d.owner) row("owner", d.owner);
  if (Object.keys(d.tags || {}).length) row("tags", show(d.tags));
  if (d.args !== null && d.args !== undefined) {
    row("arguments", show(d.args.args || d.args));
    if (d.args.kwargs && Object.keys(d.args.kwargs).length) row("keyword arguments", show(d.args.kwargs));
  }
  if (d.result !== null) row("result", show(d.result));
  if (d.error) row("error", (d.error.type ? d.error.type + ": " : "") + d.error.message);
  const tl = $("d-timeline");
  tl.replaceChildren();
  tl.append(el("li", {}, "created " + fmtTime(d.created_at)));
  for (const s of d.steps) {
    const what = (s.kind || "step") + " " + (s.name || "#" + s.seq) + (s.at ? " at " + fmtTime(s.at) : "");
    tl.append(el("li", { class: s.ok === false ? "bad" : "ok" }, "step " + s.seq + ": " + what));
  }
  if (d.state === "pending") tl.append(el("li", {}, "pending; times out " + fmtTime(d.timeout_at)));
  else tl.append(el("li", { class: d.state === "resolved" ? "ok" : "bad" }, d.state + " " + fmtTime(d.completed_at) + (d.completed_by ? " by execution version " + d.completed_by : " from outside")));
  const kids = $("d-children");
  kids.replaceChildren();
  for (const c of d.children) kids.append(el("li", {}, promiseLink(c.id), " ", stateBadge(c.state)));
  if (!d.children.length) kids.append(el("li", { class: "muted" }, "none"));
  const pending = d.state === "pending";
  for (const node of document.querySelectorAll(".needs-pending")) node.disabled = !pending;
  showError(null);
}

async function act(path, body) {
  const d = state.detail;
  if (!d) return;
  try {
    await api(path + "?id=" + encodeURIComponent(d.id), { method: "POST", body, headers: { "Content-Type": "application/json" } });
    await openPromise(d.id);
  } catch (err) { showError(err); }
}
$("d-cancel").addEventListener("click", () => act("/cancel", ""));
$("d-resolve").addEventListener("click", () => act("/resolve", $("d-value").value));

// -- refresh ----------------------------------------------------------------------------

async function refreshAll() {
  if (document.body.dataset.tokenRequired && !token()) { showLocked(true); return; }
  try {
    await loadSession();
    await loadOverview();
    await loadList();
    await loadSchedules();
    const id = hashPromise();  // the detail's own address: /ui#/promise/<id>
    if (id) await openPromise(id);
    showError(null);
  } catch (err) { showError(err); }
}

window.addEventListener("hashchange", () => {
  const id = hashPromise();
  if (id && state.session) openPromise(id);
});

refreshAll();
setInterval(() => {
  if (state.session) loadOverview().then(loadSchedules).then(() => showError(null), showError);
}, 5000);
