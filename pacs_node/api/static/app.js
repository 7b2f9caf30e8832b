// pacs-node dashboard: plain DOM, no framework. Every value is written with textContent.
"use strict";

const REFRESH_MS = 5000;
const state = { token: sessionStorage.getItem("pacs-node-token") || "", cursor: null, pages: 0, jobId: null,
  studyUid: null };
const $ = (selector) => document.querySelector(selector);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function setStatus(text, isError) {
  const status = $("#status");
  status.textContent = text;
  status.className = isError ? "error" : "";
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.token}` }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail; } catch (_) { /* not JSON */ }
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return response;
}

function filterQuery() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("#filters"))) {
    if (!value) continue;
    if (name === "created_from" || name === "created_to") {
      params.set(name, `${value}T00:00:00Z`);
    } else {
      params.set(name, value.trim());
    }
  }
  return params;
}

// The model's quality check: a "review" marker with its reasons, "passed", or nothing (no model ran).
function qualityCell(job) {
  const cell = el("td", null, "quality");
  if (job.needs_review) {
    cell.append(el("span", "review", "review"), el("span", ` ${job.review_reasons.join("; ")}`, "reasons"));
  } else if (job.needs_review === false) {
    cell.textContent = "passed";
  }
  return cell;
}

function jobRow(job) {
  const row = el("tr");
  row.dataset.jobId = job.id;
  row.append(el("td", job.id));
  const cell = el("td");
  cell.append(el("span", job.state, `state ${job.state}`));
  row.append(cell, qualityCell(job));
  for (const value of [new Date(job.created_at).toLocaleString(), job.patient_id, job.accession_number,
    job.calling_ae, job.model_name, job.attempts]) {
    row.append(el("td", value ?? ""));
  }
  row.addEventListener("click", () => openJob(job.id));
  return row;
}

async function loadJobs(append) {
  const params = filterQuery();
  if (append && state.cursor) params.set("cursor", state.cursor);
  try {
    const page = await (await api(`/api/jobs?${params}`)).json();
    const body = $("#jobs tbody");
    if (!append) body.replaceChildren();
    for (const job of page.items) body.append(jobRow(job));
    state.cursor = page.next_cursor;
    state.pages = append ? state.pages + 1 : 1;
    $("#more").hidden = !page.next_cursor;
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function drawChart(days) {
  const svg = $("#chart");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const width = 420, height = 120, pad = 4;
  const maxCount = Math.max(1, ...days.map((d) => d.received));
  const p95 = days.map((d) => (d.turnaround_p95_seconds ?? 0) / 60);
  const maxMinutes = Math.max(1, ...p95);
  const step = (width - 2 * pad) / days.length;
  days.forEach((day, i) => {
    for (const [value, colour] of [[day.received, "#9db4d8"], [day.done, "#4caf50"]]) {
      const bar = document.createElementNS(ns, "rect");
      const h = (value / maxCount) * (height - 2 * pad);
      bar.setAttribute("x", pad + i * step + 1);
      bar.setAttribute("y", height - pad - h);
      bar.setAttribute("width", Math.max(1, step - 2));
      bar.setAttribute("height", h);
      bar.setAttribute("fill", colour);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${day.day}: ${day.received} received, ${day.done} done, ${day.failed} failed`;
      bar.append(title);
      svg.append(bar);
    }
  });
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", p95.map((m, i) =>
    `${pad + (i + 0.5) * step},${height - pad - (m / maxMinutes) * (height - 2 * pad)}`).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#d2691e");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
}

async function loadStats() {
  try {
    const stats = await (await api("/api/stats?days=14")).json();
    const counts = $("#counts");
    counts.replaceChildren();
    for (const [name, value] of Object.entries(stats.counts_by_state)) {
      const item = el("span");
      item.append(el("span", name, `state ${name}`), document.createTextNode(` ${value}`));
      counts.append(item);
    }
    for (const [name, value] of Object.entries(stats.queue_depth)) {
      counts.append(el("span", `${name.replaceAll("_", " ")}: ${value}`));
    }
    drawChart(stats.days);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function fillTable(selector, header, rows) {
  const body = $(`${selector} tbody`);
  body.replaceChildren();
  const head = el("tr");
  for (const name of header) head.append(el("th", name));
  body.append(head);
  for (const values of rows) {
    const row = el("tr");
    for (const value of values) row.append(el("td", value ?? ""));
    body.append(row);
  }
}

async function showOverlay(jobId) {
  const image = $("#overlay");
  const note = $("#overlay-note");
  if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
  image.removeAttribute("src");
  note.textContent = "";
  try {
    const blob = await (await api(`/api/jobs/${jobId}/overlay.png`)).blob();
    image.src = URL.createObjectURL(blob);
  } catch (error) {
    note.textContent = `no overlay (${error.message})`;
  }
}

async function openJob(jobId) {
  state.jobId = jobId;
  $("#action-result").textContent = "";
  try {
    const detail = await (await api(`/api/jobs/${jobId}`)).json();
    const job = detail.job;
    state.studyUid = job.study_instance_uid;
    $("#detail").hidden = false;
    $("#detail-title").textContent = `Job ${job.id} (version ${job.version}): ${job.state}`;
    const facts = $("#detail-facts");
    facts.replaceChildren();
    for (const [name, value] of [["study", job.study_instance_uid], ["patient ID", job.patient_id],
      ["accession", job.accession_number], ["calling AE", job.calling_ae], ["model", job.model_name],
      ["checkpoint", detail.checkpoint_sha256],
      ["quality check", job.needs_review === null ? null
        : job.needs_review ? `low confidence: review (${job.review_reasons.join("; ")})` : "passed"],
      ["trigger", job.trigger], ["requested by", job.requested_by],
      ["compared with prior", job.prior_job_id === null ? null : `job ${job.prior_job_id}`],
      ["reason", job.reason]]) {
      facts.append(el("dt", name), el("dd", value ?? "-"));
    }
    const timeline = $("#timeline");
    timeline.replaceChildren();
    for (const event of detail.events) {
      timeline.append(el("li", `${new Date(event.at).toLocaleString()} [${event.state}] ${event.message}`));
    }
    const errors = $("#errors");
    errors.replaceChildren();
    for (const error of detail.errors) errors.append(el("li", `${error.source}: ${error.message}`, "error"));
    fillTable("#series", ["number", "description", "modality", "role", "instances"],
      detail.series.map((s) => [s.series_number, s.series_description, s.modality, s.role, s.instances]));
    const rows = [];
    for (const result of detail.results) {
      const uid = result.sop_instance_uid || result.control_id;
      if (!result.deliveries.length) rows.push([result.kind, uid, "", "", "", ""]);
      for (const d of result.deliveries) {
        rows.push([result.kind, uid, d.destination, d.state, d.attempts, d.last_status]);
      }
    }
    fillTable("#results", ["kind", "UID / control ID", "destination", "state", "attempts", "last status"], rows);
    fillTable("#acks", ["destination", "state", "ACK", "attempts", "error"],
      detail.hl7_acks.map((a) => [a.destination, a.state, a.last_status, a.attempts, a.last_error]));
    await showOverlay(jobId);
    await loadReview(jobId);
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function act(path, body) {
  const result = $("#action-result");
  try {
    const options = { method: "POST" };
    if (body) {
      options.body = JSON.stringify(body);
      options.headers = { "Content-Type": "application/json" };
    }
    const accepted = await (await api(path, options)).json();
    result.textContent = `${accepted.action}: ${accepted.detail}`;
    result.className = "";
    await Promise.all([loadJobs(false), openJob(state.jobId)]);
  } catch (error) {
    result.textContent = error.message;
    result.className = "error";
  }
}

async function loadRetrievals() {
  try {
    const retrievals = await (await api("/api/retrievals?limit=10")).json();
    fillTable("#retrievals", ["#", "source", "purpose", "by", "state", "sent", "failed", "job", "reason"],
      retrievals.map((r) => [r.id, r.source, r.purpose, r.requested_by, r.state, r.completed, r.failed,
        r.job_id, r.reason]));
  } catch (error) {
    setStatus(error.message, true);
  }
}

async function retrieve(event) {
  event.preventDefault();
  const form = new FormData($("#retrieve"));
  const body = { source: String(form.get("source")).trim() };
  for (const name of ["accession_number", "study_instance_uid"]) {
    const value = String(form.get(name) || "").trim();
    if (value) body[name] = value;
  }
  const result = $("#retrieve-result");
  try {
    const accepted = await (await api("/api/retrievals", {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
    })).json();
    result.textContent = `retrieving: ${accepted.retrievals.map((id) => `#${id}`).join(", ")}`;
    result.className = "";
    await loadRetrievals();
  } catch (error) {
    result.textContent = error.message;
    result.className = "error";
  }
}

// Review (IHE AIRAI): accept, reject or amend each finding of the job's SR, and its SEG.
function percent(rate) {
  return rate === null ? "-" : `${Math.round(rate * 100)}%`;
}

function subjectText(entry) {
  return entry.subject === "segmentation" ? "segmentation" : `${entry.level} ${entry.abnormality}`;
}

function verdictButton(label, item, verdict, amendedValue) {
  const button = el("button", label);
  button.dataset.verdict = verdict;
  button.addEventListener("click", () => giveFeedback(item, verdict, amendedValue));
  return button;
}

function reviewRow(item, cells, amend) {
  const row = el("tr");
  row.dataset.subject = item.segmentation ? "segmentation" : `${item.level} ${item.abnormality}`;
  for (const value of cells) row.append(el("td", value ?? "-"));
  const actions = el("td");
  actions.append(verdictButton("Accept", item, "accept"), verdictButton("Reject", item, "reject"),
    verdictButton(amend.label, item, "amend", amend.value));
  row.append(actions);
  return row;
}

async function loadReview(jobId) {
  const body = $("#review tbody");
  try {
    const calls = await (await api(`/api/jobs/${jobId}/findings`)).json();
    const given = await (await api(`/api/jobs/${jobId}/feedback`)).json();
    const latest = new Map(given.filter((e) => e.job_id === jobId).map((e) => [subjectText(e), e]));
    const verdictOf = (key) => latest.has(key) ? latest.get(key).verdict : null;
    body.replaceChildren();
    const head = el("tr");
    for (const name of ["level", "abnormality", "model", "your verdict", ""]) head.append(el("th", name));
    body.append(head);
    for (const [level, findings] of Object.entries(calls.findings)) {
      for (const [abnormality, present] of Object.entries(findings)) {
        const call = present ? "present" : "absent";
        const other = present ? "absent" : "present";
        body.append(reviewRow({ level, abnormality },
          [level, abnormality, call, verdictOf(`${level} ${abnormality}`)],
          { label: `Amend: ${other}`, value: other }));
      }
    }
    if (calls.segmentation) {
      body.append(reviewRow({ segmentation: true },
        ["all levels", "segmentation", "SEG", verdictOf("segmentation")], { label: "Amend", value: null }));
    }
    fillTable("#feedback", ["when", "by", "job (version)", "model", "subject", "verdict", "value", "comment"],
      given.map((e) => [new Date(e.given_at).toLocaleString(), e.given_by, `${e.job_id} (v${e.job_version})`,
        e.model_name, subjectText(e), e.verdict, e.amended_value, e.comment]));
  } catch (error) {
    const row = el("tr");
    row.append(el("td", `no review (${error.message})`));
    body.replaceChildren(row);
  }
}

async function giveFeedback(item, verdict, amendedValue) {
  const result = $("#review-result");
  const body = { items: [item], verdict };
  const comment = $("#review-comment").value.trim();
  if (comment) body.comment = comment;
  if (verdict === "amend") body.amended_value = amendedValue ?? ($("#review-note").value.trim() || "needs correction");
  try {
    await api(`/api/jobs/${state.jobId}/feedback`, {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
    });
    result.textContent = `${verdict} recorded`;
    result.className = "";
    await Promise.all([loadReview(state.jobId), loadAgreement()]);
  } catch (error) {
    result.textContent = error.message;
    result.className = "error";
  }
}

async function loadAgreement() {
  try {
    const models = await (await api("/api/feedback/summary")).json();
    fillTable("#agreement", ["model", "checkpoint", "findings reviewed", "agreement", "per abnormality",
      "segmentations reviewed", "agreement"],
    models.map((m) => [m.model_name, (m.checkpoint_sha256 || "").slice(0, 12), m.findings.reviewed,
      percent(m.findings.agreement_rate),
      Object.entries(m.by_abnormality).map(([name, t]) => `${name} ${percent(t.agreement_rate)}`).join(", "),
      m.segmentation.reviewed, percent(m.segmentation.agreement_rate)]));
  } catch (error) {
    setStatus(error.message, true);
  }
}

// The OHIF viewer reads DICOMweb with a session cookie holding the token (HttpOnly: set by the node).
async function openViewer() {
  const result = $("#action-result");
  try {
    await api("/api/viewer-session", { method: "POST" });
    window.open(`/viewer/viewer?StudyInstanceUIDs=${encodeURIComponent(state.studyUid)}`, "_blank", "noopener");
  } catch (error) {
    result.textContent = `viewer: ${error.message}`;
    result.className = "error";
  }
}

function refresh() {
  if (!state.token) return;
  loadJobs(false);
  loadStats();
  loadRetrievals();
  loadAgreement();
}

$("#login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("pacs-node-token", state.token);
  refresh();
});
$("#filters").addEventListener("submit", (event) => { event.preventDefault(); loadJobs(false); });
$("#more").addEventListener("click", () => loadJobs(true));
$("#retrieve").addEventListener("submit", retrieve);
$("#retry").addEventListener("click", () => act(`/api/jobs/${state.jobId}/retry`));
$("#open-viewer").addEventListener("click", openViewer);
$("#replay").addEventListener("click", () =>
  act(`/api/jobs/${state.jobId}/replay`, { destination: $("#replay-destination").value.trim() }));
// Live update of the first page; paused while older pages are shown or the tab is hidden.
setInterval(() => { if (!document.hidden && state.pages <= 1) refresh(); }, REFRESH_MS);
refresh();
