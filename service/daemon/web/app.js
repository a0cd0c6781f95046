// The live page of notaryd: jobs from the control API, live over GET /v1/events.
// Served as a file (the Content-Security-Policy allows no inline script). Every value from
// the daemon is put in the page as text, never as HTML.
"use strict";

const TERMINAL = new Set(["accepted", "invalid", "rejected", "failed", "cancelled"]);
const RESUMABLE = new Set(["failed", "cancelled"]);
const VERDICTS = new Set(["accepted", "invalid", "rejected"]);
const jobs = new Map();     // id -> latest snapshot
const reports = new Set();  // ids whose notary log was asked for
let csrfToken = null;
let events = null;

const $ = (id) => document.getElementById(id);

function show(element, visible) { element.hidden = !visible; }

function humanBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function etaText(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  const pad = (v) => String(v).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

async function api(method, path) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken;
  const response = await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) { loggedOut(); throw new Error("logged out"); }
  if (!response.ok) throw new Error(body.error ? `${body.error}${body.hint ? ` (${body.hint})` : ""}` : `HTTP ${response.status}`);
  return body;
}

function problem(text) {
  $("problem").textContent = text || "";
  show($("problem"), Boolean(text));
}

function loggedOut() {
  if (events) { events.close(); events = null; }
  jobs.clear();
  $("job-list").replaceChildren();
  show($("jobs"), false);
  show($("login"), true);
}

function card(job) {
  let element = document.querySelector(`article[data-job-id="${CSS.escape(job.id)}"]`);
  if (!element) {
    element = $("job-template").content.firstElementChild.cloneNode(true);
    element.dataset.jobId = job.id;
    element.querySelector(".cancel").addEventListener("click", () => act(job.id, "cancel"));
    element.querySelector(".resume").addEventListener("click", () => act(job.id, "resume"));
    const list = $("job-list");
    const newer = [...list.children].find((other) => jobs.get(other.dataset.jobId).created_at < job.created_at);
    list.insertBefore(element, newer || null);
  }
  return element;
}

function render(job) {
  jobs.set(job.id, job);
  show($("no-jobs"), false);
  const element = card(job);
  const field = (selector) => element.querySelector(selector);
  const total = job.bytes_total || 0;
  const done = job.state === "hashing" ? job.bytes_hashed : job.bytes_done;
  field(".name").textContent = job.name || job.path.split("/").pop();
  field(".state").textContent = job.state;
  element.dataset.state = job.state;
  field(".path").textContent = job.path;
  const bar = field(".bar");
  bar.max = total || 1;
  bar.value = Math.min(done, total || 1);
  field(".percent").textContent = total ? `${Math.floor((100 * done) / total)} %` : "";
  field(".stage").textContent = job.state;
  field(".rate").textContent = job.rate_bytes_per_second ? `${humanBytes(job.rate_bytes_per_second)}/s` : "-";
  field(".eta").textContent = etaText(job.eta_seconds);
  field(".retries").textContent = String(job.retries ?? 0);
  field(".submission").textContent = job.submission_id || "-";
  const verdict = field(".verdict");
  verdict.textContent = job.notary_status && job.notary_status !== "In Progress" ? job.notary_status : "";
  verdict.className = `verdict ${verdict.textContent}`;
  field(".error").textContent = job.error || "";
  show(field(".error"), Boolean(job.error));
  show(field(".cancel"), !TERMINAL.has(job.state));
  show(field(".resume"), RESUMABLE.has(job.state));
  if (VERDICTS.has(job.state) && !reports.has(job.id)) {
    reports.add(job.id);
    loadReport(job.id, element).catch((error) => problem(`notary log of ${job.id}: ${error.message}`));
  }
}

async function loadReport(id, element) {
  const log = await api("GET", `/v1/jobs/${encodeURIComponent(id)}/log`);
  const report = element.querySelector(".report");
  const summary = log.summary || {};
  report.querySelector(".summary").textContent = summary.summary || log.report || "";
  const list = report.querySelector(".issues");
  list.replaceChildren();
  for (const group of summary.issues || []) {
    const item = document.createElement("li");
    item.className = `issue ${group.severity}`;
    const message = document.createElement("div");
    message.textContent = `${group.severity}: ${group.message}`;
    item.append(message);
    for (const where of group.locations || []) {
      const place = document.createElement("div");
      place.className = "where";
      place.textContent = where.architecture ? `${where.path} [${where.architecture}]` : where.path;
      item.append(place);
    }
    if (group.doc_url && /^https:\/\//.test(group.doc_url)) {
      const link = document.createElement("a");
      link.href = group.doc_url;
      link.rel = "noreferrer noopener";
      link.textContent = "what to do";
      item.append(link);
    }
    list.append(item);
  }
  show(report, true);
}

async function act(id, action) {
  try {
    const job = await api("POST", `/v1/jobs/${encodeURIComponent(id)}/${action}`);
    problem("");
    render(job);
  } catch (error) {
    problem(`${action} ${id}: ${error.message}`);
  }
}

function follow() {
  events = new EventSource("/v1/events");
  events.addEventListener("open", () => { $("connection").textContent = "live"; });
  events.addEventListener("job", (event) => render(JSON.parse(event.data)));
  events.addEventListener("error", () => { $("connection").textContent = "reconnecting…"; });
}

async function start() {
  const params = new URLSearchParams(location.search);
  show($("login-failed"), params.get("login") === "failed");
  const session = await fetch("/ui/session", { credentials: "same-origin", cache: "no-store" }).then((r) => r.json());
  $("version").textContent = `version ${session.version}`;
  if (!session.logged_in) { loggedOut(); return; }
  csrfToken = session.csrf_token;
  show($("login"), false);
  show($("jobs"), true);
  const listed = await api("GET", "/v1/jobs");
  show($("no-jobs"), listed.jobs.length === 0);
  for (const job of listed.jobs.slice().reverse()) render(job);
  follow();
}

document.addEventListener("DOMContentLoaded", () => {
  start().catch((error) => problem(`cannot load the jobs: ${error.message}`));
});
