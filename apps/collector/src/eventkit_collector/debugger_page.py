"""The debugger's page: one HTML document with its script and style, nothing loaded elsewhere.

Every value from an event is put in the page with ``textContent`` (never as HTML): events are
written by anyone who can reach the collector.
"""

from __future__ import annotations

from typing import Final

PAGE: Final = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>eventkit debugger</title>
<link rel="icon" href="data:,">
<style>
body { font: 13px system-ui, sans-serif; margin: 1em; color: #222; }
header { display: flex; gap: 1em; align-items: center; flex-wrap: wrap; }
#state { padding: 2px 8px; border-radius: 4px; background: #eee; }
body[data-state="open"] #state { background: #cfc; }
section.stream { margin-top: 1em; border-top: 2px solid #ccc; }
table { border-collapse: collapse; width: 100%; margin-top: .3em; }
td, th { border-bottom: 1px solid #eee; padding: 2px 6px; text-align: left; vertical-align: top; }
td.details { font-family: monospace; color: #555; max-width: 40em; overflow-wrap: anywhere; }
tr.dead_letter { background: #fee; }
td.reason { color: #a00; font-weight: bold; }
#notice { color: #a60; }
</style>
</head>
<body data-state="connecting">
<header>
  <strong>eventkit debugger</strong>
  <span id="state">connecting</span>
  <label>stream <select id="f-stream"><option value="">all</option></select></label>
  <label>type <select id="f-type"><option value="">all</option></select></label>
  <label>user <input id="f-user" placeholder="user or anonymous id"></label>
  <span id="count"></span>
  <span id="notice"></span>
</header>
<main id="streams"></main>
<script>
"use strict";
const KEEP = 100;  // rows kept per stream and kind
const streams = new Map();
const seen = { stream: new Set(), type: new Set() };
const el = (id) => document.getElementById(id);
let received = 0, skipped = 0;

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
}

function table(section, kind, heads) {
  const h = document.createElement("h3");
  h.textContent = kind === "event" ? "events" : "dead letters";
  const t = document.createElement("table");
  t.className = kind === "event" ? "events" : "dead-letters";
  const head = document.createElement("tr");
  for (const name of heads) { const th = document.createElement("th"); th.textContent = name; head.appendChild(th); }
  const body = document.createElement("tbody");
  t.appendChild(head); t.appendChild(body);
  section.appendChild(h); section.appendChild(t);
  return body;
}

function streamSection(name) {
  let s = streams.get(name);
  if (s) return s;
  const section = document.createElement("section");
  section.className = "stream";
  section.dataset.stream = name;
  const h = document.createElement("h2");
  h.textContent = "stream " + name;
  section.appendChild(h);
  s = {
    section,
    event: table(section, "event", ["received", "type", "event", "user", "anonymous id", "worker", "message id", "properties / traits"]),
    dead_letter: table(section, "dead_letter", ["received", "type", "reason", "user", "anonymous id", "worker", "message id", "payload"]),
  };
  streams.set(name, s);
  el("streams").appendChild(section);
  addOption("stream", name);
  return s;
}

function addOption(which, value) {
  if (value == null || value === "" || seen[which].has(value)) return;
  seen[which].add(value);
  const o = document.createElement("option");
  o.value = value; o.textContent = value;
  el("f-" + which).appendChild(o);
}

function matches(tr) {
  const stream = el("f-stream").value, type = el("f-type").value;
  const user = el("f-user").value.trim().toLowerCase();
  if (stream && tr.dataset.stream !== stream) return false;
  if (type && tr.dataset.type !== type) return false;
  if (user && !tr.dataset.user.toLowerCase().includes(user)) return false;
  return true;
}

function applyFilters() {
  let shown = 0;
  for (const s of streams.values()) {
    let any = false;
    for (const tr of s.section.querySelectorAll("tr.item")) {
      tr.hidden = !matches(tr);
      if (!tr.hidden) { any = true; shown++; }
    }
    s.section.hidden = !any;
  }
  el("count").textContent = shown + " shown of " + received + " received";
}

function add(r) {
  if (r.kind === "skipped") {
    skipped += r.count;
    el("notice").textContent = skipped + " items not shown (the debugger samples under load)";
    return;
  }
  received++;
  const s = streamSection(r.stream);
  addOption("type", r.type);
  const tr = document.createElement("tr");
  tr.className = "item " + r.kind;
  tr.dataset.stream = r.stream;
  tr.dataset.type = r.type || "";
  tr.dataset.user = [r.user_id || "", r.anonymous_id || ""].join(" ");
  tr.dataset.worker = r.worker == null ? "" : String(r.worker);
  cell(tr, r.received_at);
  cell(tr, r.type);
  if (r.kind === "event") cell(tr, r.event);
  else cell(tr, r.reason_code + ": " + r.reason, "reason");
  cell(tr, r.user_id, "user");
  cell(tr, r.anonymous_id);
  cell(tr, r.worker, "worker");
  cell(tr, r.message_id, "message-id");
  cell(tr, r.details, "details");
  const body = s[r.kind];
  body.insertBefore(tr, body.firstChild);
  while (body.children.length > KEEP) body.removeChild(body.lastChild);
  tr.hidden = !matches(tr);
  if (!tr.hidden) s.section.hidden = false;
  applyFilters();
}

for (const id of ["f-stream", "f-type", "f-user"]) {
  el(id).addEventListener("input", applyFilters);
  el(id).addEventListener("change", applyFilters);
}

const token = new URLSearchParams(location.search).get("token");
const url = "debugger/events" + (token ? "?token=" + encodeURIComponent(token) : "");
const source = new EventSource(new URL(url, location.href.replace(/\\/debugger.*$/, "/")));
source.addEventListener("open", () => { document.body.dataset.state = "open"; el("state").textContent = "live"; });
source.addEventListener("error", () => {
  const closed = source.readyState === EventSource.CLOSED;
  document.body.dataset.state = closed ? "closed" : "connecting";
  el("state").textContent = closed ? "refused (token?)" : "reconnecting";
});
source.addEventListener("item", (e) => add(JSON.parse(e.data)));
applyFilters();
</script>
</body>
</html>
"""
