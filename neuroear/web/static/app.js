"use strict";
// The Neuro-Ear page: Files tab (upload → JSON Lines → heat map) and Live tab (microphone →
// AudioWorklet → WebSocket → one detection per hop → bars). No library, nothing from the internet.
// State the browser tests read is kept on window.neuroear.

const $ = (id) => document.getElementById(id);
const state = { config: null, files: [], live: null };
window.neuroear = state;

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function mb(n) { return n >= 10e6 ? `${(n / 1e6).toFixed(0)} MB` : `${(n / 1e6).toPrecision(2)} MB`; }
function oneLine(s) { return String(s || "").split("\n")[0].slice(0, 400); }
// The header's "smoothing" choice: windows (hops) the decision averages over, as `--smooth N`; 1 = off;
// null ("auto", the default) leaves it to the server, which then takes the windows of the last 2 s
// as `analyze` and `listen` do, and says how many it took. Read when a file is added or a live
// session starts; the server checks the range (1-32).
function smoothing() { const n = parseInt($("smooth").value, 10); return n >= 1 ? n : null; }
function smoothNote(n, unit) { return n > 1 ? ` · decided on the mean of the last ${n} ${unit}` : ""; }

// ------------------------------------------------------------------ start-up and tabs

async function init() {
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  try {
    const r = await fetch("/api/config");
    state.config = await r.json();
    $("model").textContent = `model ${state.config.model} · ${state.config.provider}`;
    $("limit").textContent = mb(state.config.max_upload_bytes);
  } catch (e) {
    $("model").textContent = "server not reachable";
  }
  setUpFiles();
  setUpLive();
  if (location.hash === "#live") showTab("live");
}

function showTab(name) {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  $("panel-files").hidden = name !== "files";
  $("panel-live").hidden = name !== "live";
  if (name === "files") state.files.forEach(redraw);
}

// ------------------------------------------------------------------ files

const queue = [];
let busy = false;

function setUpFiles() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  window.addEventListener("resize", () => state.files.forEach(redraw));
}

function addFiles(list) {
  for (const file of Array.from(list || [])) {
    const job = newCard(file);
    state.files.push(job);
    if (state.config && file.size > state.config.max_upload_bytes) {
      fail(job, `${file.name}: ${mb(file.size)} is larger than the server's limit of ${mb(state.config.max_upload_bytes)} (neuroear serve --max-upload-mb)`);
      continue;
    }
    if (file.size === 0) { fail(job, `${file.name}: empty file (0 bytes)`); continue; }
    queue.push(job);
  }
  pump();
}

function newCard(file) {
  const card = document.createElement("div");
  card.className = "card";
  card.innerHTML = `<h2>${esc(file.name)}</h2><div class="status">waiting…</div><progress max="1" value="0"></progress>
    <div class="messages"></div><canvas class="heat" hidden></canvas><div class="segments" hidden></div><div class="links"></div>`;
  $("results").prepend(card);
  const job = {
    file, name: file.name, card, windows: [], warnings: [], error: null, duration: 0, done: false, geom: null,
    status: card.querySelector(".status"), progress: card.querySelector("progress"), canvas: card.querySelector("canvas"),
    t_start: 0, t_end: 0, smooth: smoothing(),
  };
  job.canvas.addEventListener("mousemove", (e) => hover(job, e));
  job.canvas.addEventListener("mouseleave", () => ($("tooltip").hidden = true));
  return job;
}

function message(job, cls, text) {
  const div = document.createElement("div");
  div.className = cls;
  div.textContent = oneLine(text);
  job.card.querySelector(".messages").appendChild(div);
}

function fail(job, text) {
  job.error = oneLine(text);
  job.done = true;
  job.status.textContent = "failed";
  job.progress.hidden = true;
  message(job, "error", job.error);
}

function pump() {
  if (busy || !queue.length) return;
  busy = true;
  upload(queue.shift()).finally(() => { busy = false; pump(); });
}

function upload(job) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    let seen = 0, rest = "";
    job.t_start = performance.now();
    job.url = job.smooth === null ? "/api/analyze" : `/api/analyze?smooth=${job.smooth}`;
    xhr.open("POST", job.url);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        job.progress.value = 0.2 * (e.loaded / e.total);
        job.status.textContent = `uploading ${(100 * e.loaded / e.total).toFixed(0)} %`;
      }
    };
    const take = () => {
      if (xhr.status !== 200) return;
      if (!job.duration) job.duration = parseFloat(xhr.getResponseHeader("X-Neuroear-Duration")) || 0;
      if (job.smooth === null) job.smooth = parseInt(xhr.getResponseHeader("X-Neuroear-Smooth"), 10) || null;
      const text = xhr.responseText;
      const lines = (rest + text.slice(seen)).split("\n");
      seen = text.length;
      rest = lines.pop();
      for (const line of lines) if (line.trim()) onLine(job, line);
      if (job.duration) {
        const last = job.windows.length ? job.windows[job.windows.length - 1].end : 0;
        job.progress.value = 0.2 + 0.8 * Math.min(1, last / job.duration);
        job.status.textContent = `analysing ${Heat.fmtTime(last, job.duration >= 180)} of ${Heat.fmtTime(job.duration, job.duration >= 180)}`;
      }
      scheduleDraw(job);
    };
    xhr.onprogress = take;
    xhr.onload = () => {
      if (xhr.status !== 200) {
        let msg = `${job.name}: server answered ${xhr.status}`;
        try { msg = JSON.parse(xhr.responseText).error || msg; } catch (e) { /* not JSON */ }
        fail(job, msg);
        return resolve();
      }
      take();
      if (rest.trim()) onLine(job, rest);
      finish(job);
      resolve();
    };
    xhr.onerror = () => {
      fail(job, `${job.name}: upload failed (connection closed by the server or lost)`);
      resolve();
    };
    const form = new FormData();
    form.append("file", job.file, job.file.name);
    job.status.textContent = "uploading";
    xhr.send(form);
  });
}

function onLine(job, line) {
  let rec;
  try { rec = JSON.parse(line); } catch (e) { return; }
  if (rec.error) { job.error = oneLine(rec.error); message(job, "error", rec.error); return; }
  if (rec.warning) { job.warnings.push(rec.warning); message(job, "warning", rec.warning); return; }
  if (typeof rec.start === "number") job.windows.push(rec);
}

function finish(job) {
  job.done = true;
  job.t_end = performance.now();
  const secs = (job.t_end - job.t_start) / 1000;
  const dur = job.duration || (job.windows.length ? job.windows[job.windows.length - 1].end : 0);
  job.progress.value = 1;
  job.progress.hidden = true;
  job.status.textContent = `${job.windows.length} windows · ${Heat.fmtTime(dur, dur >= 180)} of audio in ${secs.toFixed(1)} s` +
    (secs > 0 ? ` (${(dur / secs).toFixed(0)}× real time)` : "") + smoothNote(job.smooth, "windows") + (job.error ? " · stopped early" : "");
  job.speed = secs > 0 ? dur / secs : 0;
  redraw(job);
  segments(job);
  links(job);
  job.card.dataset.done = "1";
}

function scheduleDraw(job) {
  if (job.pending) return;
  job.pending = true;
  requestAnimationFrame(() => { job.pending = false; redraw(job); });
}

function redraw(job) {
  if (!job.windows.length || !state.config) return;
  job.canvas.hidden = false;
  const end = job.windows[job.windows.length - 1].end;
  job.geom = Heat.draw(job.canvas, job.windows, { labels: state.config.labels, t0: 0, span: Math.max(job.duration, end) });
}

function hover(job, e) {
  const tip = $("tooltip");
  const r = job.canvas.getBoundingClientRect();
  const i = Heat.hit(job.geom, job.windows, e.clientX - r.left, e.clientY - r.top);
  if (i < 0) { tip.hidden = true; return; }
  const w = job.windows[i];
  const long = job.duration >= 180;
  const rows = state.config.labels.map((lab) => [lab, w.probs[lab]]).sort((a, b) => b[1] - a[1]);
  tip.textContent = `${Heat.fmtTime(w.start, long)} – ${Heat.fmtTime(w.end, long)}   active: ${w.active.join(", ") || "–"}\n` +
    rows.map(([lab, p]) => `${(w.active.includes(lab) ? "● " : "  ") + lab.padEnd(10)} ${p.toFixed(2)}`).join("\n");
  tip.hidden = false;
  tip.style.left = `${Math.min(e.clientX + 14, window.innerWidth - 260)}px`;
  tip.style.top = `${e.clientY + 14}px`;
}

// Consecutive windows with the same active instruments, as "0:00–0:04 violin".
function segmentsOf(windows) {
  const out = [];
  for (const w of windows) {
    const key = w.active.join(", ");
    const last = out[out.length - 1];
    if (last && last.key === key && w.start <= last.end + 1e-6) last.end = Math.max(last.end, w.end);
    else out.push({ key, start: w.start, end: w.end });
  }
  return out;
}

function segments(job) {
  const div = job.card.querySelector(".segments");
  const long = job.duration >= 180;
  const segs = segmentsOf(job.windows);
  div.innerHTML = "<span class=\"muted\">active: </span>" + segs.map((s) =>
    `<span class="seg">${Heat.fmtTime(s.start, long)}–${Heat.fmtTime(s.end, long)} <b>${esc(s.key || "–")}</b></span>`).join("");
  div.hidden = !segs.length;
}

function links(job) {
  if (!job.windows.length) return;
  const labels = state.config.labels;
  const jsonl = job.windows.map((w) => JSON.stringify(w)).join("\n") + "\n";
  const csv = [["source", "start", "end", ...labels, "active"].join(",")].concat(job.windows.map((w) =>
    [csvCell(w.source), w.start.toFixed(3), w.end.toFixed(3), ...labels.map((l) => w.probs[l].toFixed(4)), csvCell(w.active.join(";"))].join(","))).join("\n") + "\n";
  const stem = job.name.replace(/\.[^.]*$/, "") || "analysis";
  const a = (text, type, ext, label) => {
    const url = URL.createObjectURL(new Blob([text], { type }));
    return `<a href="${url}" download="${esc(stem)}.${ext}">${label}</a>`;
  };
  job.card.querySelector(".links").innerHTML = a(jsonl, "application/x-ndjson", "jsonl", "download JSON Lines") + a(csv, "text/csv", "csv", "download CSV");
}

function csvCell(s) { return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s; }

// ------------------------------------------------------------------ live

const HISTORY_SECONDS = 30;
const LAT_KEEP = 600;

function setUpLive() {
  $("live-start").addEventListener("click", () => (state.live && state.live.running ? stopLive() : startLive()));
  buildBars();
}

function buildBars() {
  const bars = $("bars");
  bars.innerHTML = "";
  const labels = state.config ? state.config.labels : [];
  for (const lab of labels) {
    bars.insertAdjacentHTML("beforeend", `<div class="bar-label" data-label="${esc(lab)}">${esc(lab)}</div>
      <div class="bar-track"><div class="bar-fill" data-label="${esc(lab)}"></div><div class="bar-thr" data-label="${esc(lab)}"></div></div>
      <div class="bar-value" data-label="${esc(lab)}">–</div>`);
  }
}

function liveError(text) {
  const el = $("live-error");
  el.textContent = oneLine(text);
  el.hidden = !text;
  if (state.live) state.live.error = oneLine(text);
}

async function startLive() {
  liveError("");
  const hop = parseFloat($("live-hop").value);
  const smooth = smoothing();
  const L = {
    running: true, hop, smooth, rate: 0, sent: 0, log: [], hops: [], latencies: [], server_ms: [], active: [], firstShown: {},
    t_audio0: null, t_ready: null, level: -120, dropped: 0, error: null, ws: null, ctx: null, stream: null, pending: null,
  };
  state.live = L;
  $("live-start").textContent = "Stop";
  $("live-start").classList.add("stop");
  $("live-status").textContent = "asking for the microphone…";
  try {
    L.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    L.ctx = new AudioContext(); // the browser's own rate: the server resamples whatever it is
    await L.ctx.audioWorklet.addModule("/static/worklet.js");
  } catch (e) {
    liveError(`microphone unavailable: ${e && e.message ? e.message : e}`);
    return stopLive(true);
  }
  L.rate = L.ctx.sampleRate;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/api/live`);
  ws.binaryType = "arraybuffer";
  L.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify(smooth === null ? { rate: L.rate, channels: 1, hop } : { rate: L.rate, channels: 1, hop, smooth }));
  ws.onmessage = (e) => onLiveMessage(L, JSON.parse(e.data));
  ws.onclose = () => { if (L.running) { if (!L.error) liveError("the server closed the connection"); stopLive(true); } };
  const src = L.ctx.createMediaStreamSource(L.stream);
  const node = new AudioWorkletNode(L.ctx, "neuroear-capture", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
  const mute = L.ctx.createGain();
  mute.gain.value = 0; // pulls the graph without playing the microphone back
  src.connect(node).connect(mute).connect(L.ctx.destination);
  node.port.onmessage = (e) => onAudio(L, e.data);
  L.node = node;
  $("live-status").textContent = `capturing at ${L.rate} Hz`;
}

function onAudio(L, block) {
  if (!L.running) return;
  const now = performance.now();
  if (L.ws && L.ws.readyState === WebSocket.OPEN) {
    if (L.t_audio0 === null) L.t_audio0 = now;
    L.ws.send(block.buffer);
    L.sent += block.length;
    L.log.push([L.sent, now]);
    if (L.log.length > 4000) L.log.splice(0, L.log.length - 3000);
  }
  let s = 0;
  for (let i = 0; i < block.length; i++) s += block[i] * block[i];
  const db = 10 * Math.log10(Math.max(s / block.length, 1e-12));
  L.level = Math.max(db, L.level - 1.5); // fast attack, slow release
  $("level-bar").style.width = `${Math.max(0, Math.min(100, (L.level + 60) / 60 * 100))}%`;
  $("level-text").textContent = `${L.level.toFixed(0)} dBFS`;
}

// When the page got the input frame `n` (1-based count of frames sent): ms on performance.now()'s clock.
function captureTime(L, n) {
  const log = L.log;
  let lo = 0, hi = log.length - 1, best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (log[mid][0] >= n) { best = mid; hi = mid - 1; } else lo = mid + 1;
  }
  if (best < 0) return null;
  return log[best][1] - ((log[best][0] - n) / L.rate) * 1000;
}

function onLiveMessage(L, m) {
  if (m.type === "ready") {
    L.t_ready = performance.now();
    L.labels = m.labels;
    L.thresholds = m.thresholds;
    for (const lab of m.labels) {
      const el = document.querySelector(`.bar-thr[data-label="${lab}"]`);
      if (el) el.style.left = `${100 * m.thresholds[lab]}%`;
    }
    if (m.smooth) L.smooth = m.smooth;
    $("live-status").textContent = `listening at ${L.rate} Hz · a decision every ${m.hop} s${smoothNote(L.smooth, "hops")} · model ${m.model}`;
  } else if (m.type === "hop") {
    L.hops.push(m);
    if (L.hops.length > 4 * HISTORY_SECONDS / L.hop) L.hops.splice(0, L.hops.length - 2 * HISTORY_SECONDS / L.hop);
    L.dropped = m.dropped;
    L.server_ms.push(m.latency_ms);
    const t_cap = captureTime(L, m.in_frames);
    L.pending = { m, t_cap };
    requestAnimationFrame(() => paintLive(L));
  } else if (m.type === "status") {
    L.dropped = m.dropped;
  } else if (m.type === "error") {
    liveError(m.error);
  }
}

function paintLive(L) {
  const p = L.pending;
  if (!p || !L.running) return;
  L.pending = null;
  const m = p.m;
  const on = new Set(m.active);
  L.active = m.active;
  for (const lab of L.labels) {
    const v = m.probs[lab];
    const fill = document.querySelector(`.bar-fill[data-label="${lab}"]`);
    fill.style.width = `${(100 * v).toFixed(1)}%`;
    fill.classList.toggle("on", on.has(lab));
    document.querySelector(`.bar-label[data-label="${lab}"]`).classList.toggle("on", on.has(lab));
    document.querySelector(`.bar-value[data-label="${lab}"]`).textContent = v.toFixed(2);
  }
  $("live-active").textContent = m.active.length ? m.active.join(", ") : "–";
  const now = performance.now();
  for (const lab of m.active) if (!(lab in L.firstShown)) L.firstShown[lab] = now;
  // history strip: the last HISTORY_SECONDS of hops, newest on the right
  const tEnd = m.end;
  Heat.draw($("live-history"), L.hops, { labels: L.labels, t0: Math.max(0, tEnd - HISTORY_SECONDS), span: HISTORY_SECONDS });
  if (p.t_cap !== null) {
    L.latencies.push(now - p.t_cap);
    if (L.latencies.length > LAT_KEEP) L.latencies.shift();
  }
  const q = (a, f) => { if (!a.length) return NaN; const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(f * s.length))]; };
  const last = L.latencies[L.latencies.length - 1];
  $("live-latency").textContent = `latency, microphone sample reaching the page → bar drawn: last ${fmtMs(last)}, median ${fmtMs(q(L.latencies, 0.5))}, ` +
    `p95 ${fmtMs(q(L.latencies, 0.95))} over ${L.latencies.length} hops (server model+policy median ${fmtMs(q(L.server_ms, 0.5))}) · dropped ${L.dropped}`;
}

function fmtMs(v) { return Number.isFinite(v) ? `${v.toFixed(0)} ms` : "–"; }

function stopLive(quiet) {
  const L = state.live;
  if (!L) return;
  L.running = false;
  try { if (L.ws && L.ws.readyState === WebSocket.OPEN) { L.ws.send(JSON.stringify({ type: "stop" })); L.ws.close(); } } catch (e) { /* gone */ }
  try { if (L.stream) L.stream.getTracks().forEach((t) => t.stop()); } catch (e) { /* gone */ }
  try { if (L.ctx) L.ctx.close(); } catch (e) { /* gone */ }
  $("live-start").textContent = "Start listening";
  $("live-start").classList.remove("stop");
  if (!quiet || !L.error) $("live-status").textContent = "stopped";
  else $("live-status").textContent = "stopped";
}

init();
