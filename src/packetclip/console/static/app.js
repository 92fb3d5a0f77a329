// packetclip console: hash-routed pages over the console's JSON API and its server-sent event stream.
// Plain DOM + small hand-drawn SVG charts: no framework, no CDN, works offline.
"use strict";

const $ = (id) => document.getElementById(id);
const MISSION_KEYS = { "DoS": "dos", "Reconnaissance": "recon", "Brute Force": "bf" };
const SVGNS = "http://www.w3.org/2000/svg";
const state = { offset: 0, limit: 50, total: 0, samples: [], reloadTimer: null, classes: new Set() };

async function api(path) {
  const r = await fetch(path, { credentials: "same-origin", headers: { "Accept": "application/json" } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function pill(mission) { return el("span", { class: "pill " + String(mission || "").replace(" ", "-") }, mission || "?"); }
function fmt(n, d = 0) { return n == null ? "" : Number(n).toLocaleString(undefined, { maximumFractionDigits: d }); }
function hostOf(ip, any) { return any ? "(many)" : (ip || ""); }

// ---- charts ------------------------------------------------------------------------------------------------
function sparkline(target, series) {
  // series: [{values, cls}] drawn in a 300x60 box, shared y scale
  target.replaceChildren();
  const n = Math.max(...series.map((s) => s.values.length), 2);
  const ymax = Math.max(1e-9, ...series.flatMap((s) => s.values));
  for (const s of series) {
    if (!s.values.length) continue;
    const pts = s.values.map((v, i) => [(i / (n - 1)) * 300, 58 - (v / ymax) * 54]);
    const d = pts.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join(" ");
    target.append(svg("path", { d: d + ` L${pts[pts.length - 1][0].toFixed(1)} 60 L0 60 Z`, class: "area " + s.cls }));
    target.append(svg("path", { d, class: "line " + s.cls }));
  }
}

function drawRates() {
  const s = state.samples.slice(-120);
  sparkline($("chart-pps"), [{ values: s.map((x) => x.packets_per_s), cls: "s-pps" }]);
  sparkline($("chart-fps"), [{ values: s.map((x) => x.flows_per_s), cls: "s-pps" }]);
  sparkline($("chart-alerts"), Object.entries(MISSION_KEYS).map(([m, k]) =>
    ({ values: s.map((x) => (x.alerts_per_s || {})[m] || 0), cls: "s-" + k })));
  const last = s[s.length - 1];
  if (last) { $("k-pps").textContent = fmt(last.packets_per_s); $("k-fps").textContent = fmt(last.flows_per_s, 1); }
}

function timeline(target, tl) {
  // packets as stems: up for the forward side, down for replies; x = seconds since the flow's first packet
  target.replaceChildren();
  if (!tl || !tl.t_s || !tl.t_s.length) {
    const t = svg("text", { x: 300, y: 100, "text-anchor": "middle" }); t.textContent = "no packets kept for this flow";
    target.append(t); return;
  }
  const W = 600, H = 200, mid = 100, left = 40;
  const tmax = Math.max(1e-6, ...tl.t_s), lmax = Math.max(1, ...tl.length);
  target.append(svg("line", { x1: left, y1: mid, x2: W - 5, y2: mid, class: "axis" }));
  tl.t_s.forEach((t, i) => {
    const x = left + (t / tmax) * (W - left - 10), h = (tl.length[i] / lmax) * 90, up = tl.direction[i] === 0;
    target.append(svg("line", { x1: x.toFixed(1), y1: mid, x2: x.toFixed(1), y2: (up ? mid - h : mid + h).toFixed(1),
                                 class: up ? "fwd" : "bwd", "stroke-width": 1.5 }));
  });
  const lab = (x, y, s, a) => { const t = svg("text", { x, y, "text-anchor": a || "start" }); t.textContent = s; target.append(t); };
  lab(2, 14, fmt(lmax) + " B"); lab(2, 196, fmt(lmax) + " B"); lab(left, 112, "0 s"); lab(W - 6, 112, tmax.toPrecision(3) + " s", "end");
  lab(W - 6, 14, tl.t_s.length + " packets", "end");
}

// ---- live page -------------------------------------------------------------------------------------------
function filters() {
  const p = new URLSearchParams({ offset: state.offset, limit: state.limit });
  const m = $("f-mission").value, c = $("f-class").value, h = $("f-host").value.trim();
  if (m) p.set("mission", m); if (c) p.set("class", c); if (h) p.set("host", h);
  return p;
}

async function loadAlerts() {
  try {
    const page = await api("/api/alerts?" + filters());
    state.total = page.total;
    const seen = new Set([...$("alerts-table").tBodies[0].rows].map((r) => r.dataset.id));
    const rows = page.items.map((a) => {
      const tr = el("tr", { "data-id": a.id, "data-mission": a.mission || "", "data-class": a.fine_class || "" },
        el("td", {}, a.id), el("td", {}, (a.time || "").replace("T", " ").slice(0, 23)), el("td", {}, pill(a.mission)),
        el("td", {}, a.fine_class), el("td", {}, hostOf(a.src_ip, a.any_source)),
        el("td", {}, hostOf(a.dest_ip, a.any_destination) + (a.dest_port ? ":" + a.dest_port : "")),
        el("td", {}, a.proto), el("td", {}, fmt(a.score, 3)), el("td", {}, fmt(a.flows)), el("td", {}, fmt(a.packets)));
      if (seen.size && !seen.has(String(a.id))) tr.classList.add("fresh");
      tr.addEventListener("click", () => { location.hash = "#/alert/" + a.id; });
      if (a.fine_class && !state.classes.has(a.fine_class)) addClass(a.fine_class);
      return tr;
    });
    $("alerts-table").tBodies[0].replaceChildren(...rows);
    const to = Math.min(state.offset + state.limit, page.total);
    $("page-info").textContent = page.total ? `${fmt(state.offset + 1)}–${fmt(to)} of ${fmt(page.total)}` : "no alerts yet";
  } catch (e) { $("page-info").textContent = "error: " + e.message; }
}

function addClass(c) {
  state.classes.add(c);
  const sel = $("f-class"), opts = [...state.classes].sort();
  const keep = sel.value;
  sel.replaceChildren(el("option", { value: "" }, "all"), ...opts.map((o) => el("option", { value: o }, o)));
  sel.value = keep;
}

function scheduleReload() {
  if (!$("f-follow").checked || state.offset !== 0 || state.reloadTimer) return;
  state.reloadTimer = setTimeout(() => { state.reloadTimer = null; if (route().page === "live") loadAlerts(); }, 250);
}

function showCounts(c) {
  if (!c) return;
  const pm = c.per_mission || {};
  $("k-dos").textContent = fmt(pm["DoS"] || 0); $("k-recon").textContent = fmt(pm["Reconnaissance"] || 0);
  $("k-bf").textContent = fmt(pm["Brute Force"] || 0);
}

async function refreshStatus() {
  try {
    const s = await api("/api/status");
    showCounts(s.counts);
    if (s.counts.lines !== state.lines) { state.lines = s.counts.lines; scheduleReload(); }   // also without the stream
    (s.classes || []).forEach((c) => { if (!state.classes.has(c)) addClass(c); });
    const d = s.detection, box = $("detect-state");
    if (d) {
      box.textContent = `detection ${d.state} — ${d.sources.join(", ")} — model ${d.model}` +
        (d.error ? " — " + d.error : "") + ` — ${fmt(s.totals.packets)} packets, ${fmt(s.counts.alerts)} alerts`;
      box.className = "state" + (d.state === "failed" ? " failed" : "");
    }
    $("nav-search").classList.toggle("hidden", !s.search);
  } catch (e) { /* shown by the connection badge */ }
}

function connect() {
  const es = new EventSource("/api/stream");
  es.addEventListener("hello", (e) => { $("conn").textContent = "live"; showCounts(JSON.parse(e.data)); });
  es.addEventListener("alerts", (e) => {
    const items = JSON.parse(e.data);
    items.forEach((a) => { if (a.fine_class && !state.classes.has(a.fine_class)) addClass(a.fine_class); });
    scheduleReload();
  });
  es.addEventListener("rates", (e) => {
    const d = JSON.parse(e.data);
    if (d.sample) { state.samples.push(d.sample); if (state.samples.length > 600) state.samples.shift(); drawRates(); }
    showCounts(d.counts);
  });
  es.addEventListener("dropped", () => { $("conn").textContent = "dropped (too slow): reconnecting"; es.close(); setTimeout(connect, 1000); });
  es.onerror = () => { $("conn").textContent = "reconnecting…"; };
}

// ---- alert detail ----------------------------------------------------------------------------------------
async function showAlert(id) {
  $("alert-title").textContent = "alert " + id;
  ["alert-explanation", "alert-definition"].forEach((x) => { $(x).textContent = ""; });
  $("alert-concepts").replaceChildren(); $("alert-kg").replaceChildren(); $("alert-eve").textContent = "";
  $("alert-nearest").tBodies[0].replaceChildren();
  let d;
  try { d = await api("/api/alerts/" + encodeURIComponent(id)); } catch (e) { $("alert-explanation").textContent = e.message; return; }
  const a = d.alert;
  $("alert-title").replaceChildren(pill(a.mission), " ", `${a.fine_class} — ${hostOf(a.src_ip, a.any_source)} → ` +
    `${hostOf(a.dest_ip, a.any_destination)}${a.dest_port ? ":" + a.dest_port : ""} (${a.proto})`);
  $("alert-explanation").textContent = d.explanation || "";
  $("alert-definition").textContent = d.class_definition ? "Class: " + d.class_definition : "";
  timeline($("alert-timeline"), d.timeline);
  $("alert-concepts").replaceChildren(...d.concepts.map((c) => el("li", {}, c.concept + " ",
    c.url ? el("a", { href: c.url, target: "_blank", rel: "noopener noreferrer" }, c.attack_id) : "")));
  $("alert-eve").textContent = JSON.stringify(d.eve, null, 2);
  const nearestBody = $("alert-nearest").tBodies[0];
  if (!d.nearest) nearestBody.replaceChildren(el("tr", {}, el("td", { class: "text", colSpan: 4 }, "start the console with --workspace WS for nearest descriptions")));
  else api(d.nearest).then((r) => nearestBody.replaceChildren(...r.nearest.map((n) => {
    if (n.error) return el("tr", {}, el("td", { class: "text", colSpan: 4 }, n.error));
    const tr = el("tr", {}, el("td", {}, n.flow_id), el("td", {}, n.label || ""), el("td", {}, fmt(n.similarity, 3)),
      el("td", { class: "text" }, n.description || ""));
    tr.addEventListener("click", () => { location.hash = "#/flow/" + n.flow_id; });
    return tr;
  }))).catch((e) => nearestBody.replaceChildren(el("tr", {}, el("td", { class: "text", colSpan: 4 }, e.message))));
  if (a.mission && MISSION_KEYS[a.mission]) {
    $("alert-kg-title").textContent = a.mission + " knowledge graph (concepts that fired outlined in red; click a concept for ATT&CK)";
    const techs = d.concepts.map((c) => c.attack_id).filter(Boolean).join(",");
    try {
      const r = await fetch(`/api/kg/${encodeURIComponent(a.mission)}.svg?highlight=${encodeURIComponent(techs)}`, { credentials: "same-origin" });
      if (r.ok) {
        const doc = new DOMParser().parseFromString(await r.text(), "image/svg+xml");
        $("alert-kg").replaceChildren(document.importNode(doc.documentElement, true));
      }
    } catch (e) { $("alert-kg").textContent = e.message; }
  }
}

// ---- flow detail (workspace) -----------------------------------------------------------------------------
async function showFlow(id) {
  $("flow-title").textContent = "flow " + id; $("flow-tuple").textContent = "";
  $("flow-descriptions").replaceChildren();
  let d;
  try { d = await api("/api/flows/" + encodeURIComponent(id)); } catch (e) { $("flow-tuple").textContent = e.message; return; }
  const f = d.flow;
  $("flow-title").textContent = `flow ${d.flow_id}` + (f.label ? ` — ${f.label}` : "");
  $("flow-tuple").textContent = `${f["Src IP"]}:${f["Src Port"]} → ${f["Dst IP"]}:${f["Dst Port"]} (protocol ${f["Protocol"]})` +
    (f.mission ? ` — mission ${f.mission}` : "");
  timeline($("flow-timeline"), d.timeline);
  $("flow-descriptions").replaceChildren(...d.descriptions.map((t) => el("li", {}, t)));
}

// ---- search ----------------------------------------------------------------------------------------------
async function runSearch(ev) {
  if (ev) ev.preventDefault();
  const q = $("search-q").value.trim();
  if (!q) { $("search-info").textContent = "type what you are looking for"; return; }
  $("search-info").textContent = "searching…";
  try {
    const r = await api(`/api/search?q=${encodeURIComponent(q)}&top=${encodeURIComponent($("search-top").value || 20)}`);
    $("search-results").tBodies[0].replaceChildren(...r.hits.map((h) => {
      const tr = el("tr", { "data-flow": h.flow_id }, el("td", {}, h.flow_id), el("td", {}, fmt(h.similarity, 3)),
        el("td", {}, h.label || ""), el("td", {}, `${h["Src IP"]}:${h["Src Port"]}`), el("td", {}, `${h["Dst IP"]}:${h["Dst Port"]}`),
        el("td", {}, h.time || ""), el("td", { class: "text" }, h.description || ""));
      tr.addEventListener("click", () => { location.hash = "#/flow/" + h.flow_id; });
      return tr;
    }));
    $("search-info").textContent = `${r.hits.length} flows in ${fmt(r.seconds * 1000)} ms`;
  } catch (e) { $("search-info").textContent = "error: " + e.message; }
}

// ---- model -------------------------------------------------------------------------------------------------
async function showModel() {
  let d;
  try { d = await api("/api/model"); } catch (e) { $("model-card").textContent = e.message; return; }
  const card = d.card || {};
  const dl = el("dl", { class: "card-list" });
  for (const [k, v] of Object.entries(card)) {
    dl.append(el("dt", {}, k), el("dd", {}, typeof v === "object" ? el("pre", {}, JSON.stringify(v, null, 1)) : String(v)));
  }
  $("model-card").replaceChildren(dl);
  $("model-report").replaceChildren(d.report ? el("iframe", { src: d.report, class: "report", title: "reproduce report" })
    : el("p", { class: "muted" }, "no reproduce report given (start with --report REPORT_FOLDER)"));
}

// ---- routing ------------------------------------------------------------------------------------------------
function route() {
  const parts = (location.hash || "#/live").slice(2).split("/");
  return { page: parts[0] || "live", arg: parts[1] };
}

function render() {
  const r = route();
  const page = ["live", "alert", "flow", "search", "model"].includes(r.page) ? r.page : "live";
  document.querySelectorAll(".page").forEach((p) => p.classList.toggle("hidden", p.id !== "page-" + page));
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.id === "nav-" + page));
  if (page === "live") loadAlerts();
  else if (page === "alert") showAlert(r.arg);
  else if (page === "flow") showFlow(r.arg);
  else if (page === "model") showModel();
}

function init() {
  $("f-mission").addEventListener("change", () => { state.offset = 0; loadAlerts(); });
  $("f-class").addEventListener("change", () => { state.offset = 0; loadAlerts(); });
  $("f-host").addEventListener("input", () => { state.offset = 0; clearTimeout(state.hostTimer); state.hostTimer = setTimeout(loadAlerts, 250); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); loadAlerts(); });
  $("next").addEventListener("click", () => { if (state.offset + state.limit < state.total) { state.offset += state.limit; loadAlerts(); } });
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  $("search-form").addEventListener("submit", runSearch);
  window.addEventListener("hashchange", render);
  api("/api/rates?last=300").then((r) => { state.samples = r.samples; drawRates(); }).catch(() => {});
  refreshStatus(); setInterval(refreshStatus, 2000);
  connect();
  render();
}

document.addEventListener("DOMContentLoaded", init);
