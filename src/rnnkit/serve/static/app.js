// The explorer's page: every number comes from the JSON API (see app.py); this file only draws.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, trace: null, traceKey: null, unit: 0, selStart: null, matches: [] };

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, params) {
  const res = await fetch(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(params || {}),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}

function run(fn) {  // a click handler: errors go to the error box, never to the console
  return async (event) => {
    showError("");
    try { await fn(event); } catch (e) { showError(e.message); }
  };
}

// -- colours and tooltips ---------------------------------------------------------------------------

function diverging(v, scale) {  // -scale blue, 0 white, +scale red
  const t = Math.max(-1, Math.min(1, v / (scale || 1)));
  const a = Math.round(255 * (1 - Math.abs(t)));
  return t >= 0 ? `rgb(255,${a},${a})` : `rgb(${a},${a},255)`;
}

function showTip(event, lines) {
  const tip = $("tip");
  tip.textContent = lines.join("\n");
  tip.style.whiteSpace = "pre";
  tip.style.left = `${event.clientX + 14}px`;
  tip.style.top = `${event.clientY + 14}px`;
  tip.hidden = false;
}

function hideTip() { $("tip").hidden = true; }

function shown(token) { return token === "\n" ? "⏎\n" : token; }

function topLines(top) {
  return top.map(([tok, p]) => `${JSON.stringify(tok).padEnd(8)} ${(100 * p).toFixed(1)}%`);
}

// -- tabs and set-up ----------------------------------------------------------------------------------

function openTab(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll("section.tab").forEach((s) => { s.hidden = s.id !== `tab-${name}`; });
  $("text-panel").hidden = !["units", "search", "space"].includes(name);
  if (name === "curves") drawCurves().catch((e) => showError(e.message));
}

async function setUp() {
  const info = await api("/api/info");
  state.info = info;
  const model = info.model ? Object.entries(info.model).map(([k, v]) => `${k} ${v}`).join(", ") : "";
  $("run-info").textContent = `${info.run} — ${info.kind} run${model ? ": " + model : ""}`;
  document.querySelectorAll("nav button.lm, section.lm").forEach((b) => { if (info.kind !== "lm") b.remove(); });
  document.querySelectorAll("nav button.seq2seq").forEach((b) => { if (info.kind !== "seq2seq") b.remove(); });
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => openTab(b.dataset.tab)));
  if (info.kind === "lm") {
    for (let k = 0; k < info.layers; k++) $("layer").add(new Option(`${k}`, k));
    for (const f of info.fields) $("field").add(new Option(f, f));
    $("text-source").add(new Option("Romeo and Juliet (a passage)", ""));
    for (const name of info.texts) $("text-source").add(new Option(name, name));
    $("text").value = info.default_text;
    $("unit").max = info.hidden - 1;
    openTab("generate");
  } else {
    openTab(info.kind === "seq2seq" ? "attention" : "curves");
  }
}

// -- generate -----------------------------------------------------------------------------------------

function numberOrNull(id) { const v = $(id).value; return v === "" ? null : Number(v); }

async function generate() {
  const out = $("gen-out");
  out.textContent = "";
  const params = {
    prime: $("prime").value, length: numberOrNull("length"), temperature: numberOrNull("temperature"),
    top_k: numberOrNull("top-k"), top_p: numberOrNull("top-p"), seed: numberOrNull("seed"),
    greedy: $("greedy").checked, top: 8, stream: true,
  };
  const res = await fetch("/api/generate", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(params),
  });
  if (!res.ok) throw new Error((await res.json()).error);
  const prime = document.createElement("b");
  prime.textContent = params.prime;
  out.appendChild(prime);
  const spans = [];
  const reader = res.body.getReader(), decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const event = JSON.parse(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      if (event.done) { attachSteps(spans, event.steps); continue; }
      const span = document.createElement("span");
      span.textContent = event.token;
      span.className = "gen";
      out.appendChild(span);
      spans.push(span);
    }
  }
}

function attachSteps(spans, steps) {
  steps.forEach((step, i) => {
    const span = spans[i];
    span.dataset.p = step.p;
    span.style.background = `rgba(255, 170, 0, ${(1 - step.p_sampled) * 0.6})`;  // surprising draws stand out
    span.addEventListener("mousemove", (e) => showTip(e, [
      `drew ${JSON.stringify(step.token)}: p = ${(100 * step.p).toFixed(1)}% (model), ` +
      `${(100 * step.p_sampled).toFixed(1)}% (after temperature / top-k / top-p)`, ...topLines(step.top)]));
    span.addEventListener("mouseleave", hideTip);
  });
}

// -- the traced text: units, search, state space -------------------------------------------------------

async function pickText() {
  const name = $("text-source").value;
  if (!name) { $("text").value = state.info.default_text; return; }
  const got = await api("/api/text", { name });
  $("text").value = got.text;
  $("trace-status").textContent = got.cut || "";
}

async function ensureTrace() {
  const key = JSON.stringify([$("text").value, $("layer").value, $("field").value]);
  if (state.traceKey === key) return state.trace;
  $("trace-status").textContent = "tracing…";
  const t0 = performance.now();
  const trace = await api("/api/trace", {
    text: $("text").value, layers: [Number($("layer").value)], fields: [$("field").value], top: 5,
  });
  state.trace = trace;
  state.traceKey = key;
  const values = trace.layers[0][$("field").value];
  state.values = values;
  state.scale = Math.max(1e-6, ...values.map((row) => Math.max(...row.map(Math.abs))));
  $("trace-status").textContent =
    `${trace.tokens.length} tokens traced in ${((performance.now() - t0) / 1000).toFixed(2)} s`;
  return trace;
}

function tokenSpans(container, onHover, onClick) {
  container.textContent = "";
  return state.trace.tokens.map((tok, i) => {
    const span = document.createElement("span");
    span.textContent = shown(tok);
    span.dataset.i = i;
    span.addEventListener("mousemove", (e) => showTip(e, onHover(i)));
    span.addEventListener("mouseleave", hideTip);
    if (onClick) span.addEventListener("click", (e) => onClick(i, e));
    container.appendChild(span);
    return span;
  });
}

function colourUnit() {
  const unit = Number($("unit").value);
  const field = $("field").value;
  const hover = (i) => [`token ${i} ${JSON.stringify(state.trace.tokens[i])}`,
    `${field}[${unit}] = ${state.values[i][unit]}`, "next:", ...topLines(state.trace.predictions[i])];
  const spans = tokenSpans($("units-text"), hover);
  spans.forEach((s, i) => { s.style.background = diverging(state.values[i][unit], field === "c" ? state.scale : 1); });
}

async function traceAndColour() {
  await ensureTrace();
  const H = state.values[0].length;
  if (!(Number($("unit").value) < H)) $("unit").value = 0;
  colourUnit();
  drawSearchText();
}

async function rankUnits() {
  await ensureTrace();
  const sort = $("sort").value;
  const r = await api("/api/units", {
    text: $("text").value, layer: Number($("layer").value), field: $("field").value,
    pattern: $("pattern").value, sort, count: 30,
  });
  const list = $("unit-list");
  list.textContent = "";
  for (const u of r.top) {
    const li = document.createElement("li");
    li.textContent = `unit ${u}: ${sort} ${fmt(r[sort][u])}`;
    li.dataset.unit = u;
    li.addEventListener("click", () => { $("unit").value = u; colourUnit(); });
    list.appendChild(li);
  }
  if (r.top.length) { $("unit").value = r.top[0]; colourUnit(); }
}

function drawSearchText() {
  const hover = (i) => [`token ${i} ${JSON.stringify(state.trace.tokens[i])}`, "click: span start; shift-click: end"];
  const click = (i, e) => {
    if (e.shiftKey) $("sel-end").value = i + 1;
    else { $("sel-start").value = i; $("sel-end").value = i + 1; }
    markSearch();
  };
  state.searchSpans = tokenSpans($("search-text"), hover, click);
  markSearch();
}

function markSearch() {
  const a = Number($("sel-start").value), b = Number($("sel-end").value);
  state.searchSpans.forEach((s, i) => {
    s.classList.toggle("sel", i >= a && i < b);
    s.classList.toggle("match", state.matches.some((m) => i >= m.start && i < m.end));
  });
}

async function search() {
  await ensureTrace();
  if (!state.searchSpans || state.searchSpans.length !== state.trace.tokens.length) drawSearchText();
  const r = await api("/api/search", {
    text: $("text").value, layer: Number($("layer").value), field: $("field").value,
    start: Number($("sel-start").value), end: Number($("sel-end").value), threshold: Number($("threshold").value),
    left: Number($("left").value), right: Number($("right").value), agree: Number($("agree").value), count: 30,
  });
  $("search-units").textContent = r.units.length
    ? `${r.units.length} units on in ${JSON.stringify(r.selection)}: ${r.units.join(", ")}`
    : `no unit is on (≥ threshold) all through ${JSON.stringify(r.selection)} and off before it: lower the threshold`;
  state.matches = r.matches;
  const list = $("search-matches");
  list.textContent = "";
  for (const m of r.matches) {
    const li = document.createElement("li");
    li.textContent = `${JSON.stringify(m.text)} [${m.start}, ${m.end}) extra units ${m.extra}` +
      (m.selected ? " (the selection)" : "");
    li.addEventListener("click", () => state.searchSpans[m.start].scrollIntoView({ block: "center" }));
    list.appendChild(li);
  }
  markSearch();
}

function charClass(tok) {
  if (/^\s+$/.test(tok)) return tok.includes("\n") ? ["newline", "#222"] : ["space", "#999"];
  if (/^[aeiouAEIOU]$/.test(tok)) return ["vowel", "#d62728"];
  if (/^[A-Z]/.test(tok)) return ["capital", "#9467bd"];
  if (/^\p{L}/u.test(tok)) return ["letter", "#1f77b4"];
  return ["punctuation", "#2ca02c"];
}

async function project() {
  const r = await api("/api/pca", { text: $("text").value, layer: Number($("layer").value), field: $("field").value });
  const n = r.points.length;
  const byChar = $("pca-color").value === "character";
  const colors = r.tokens.map((t, i) => byChar ? charClass(t)[1] : `hsl(${Math.round(260 * i / Math.max(1, n - 1))},75%,45%)`);
  const labels = r.tokens.map((t, i) => `${i}: ${JSON.stringify(t)}` + (byChar ? ` (${charClass(t)[0]})` : ""));
  $("pca-plot").textContent = "";
  trajectory($("pca-plot"), r.points, colors, labels, {
    title: `${$("field").value}, layer ${$("layer").value}: PC1 (${(100 * r.explained[0]).toFixed(0)}%) ` +
      `vs PC2 (${(100 * (r.explained[1] || 0)).toFixed(0)}%)`,
  });
  $("pca-note").textContent = byChar
    ? "red vowels, blue other letters, purple capitals, grey spaces, black newlines, green punctuation"
    : "colour runs from the first token (purple-blue) to the last (red)";
}

// -- curves and attention ------------------------------------------------------------------------------

async function drawCurves() {
  const m = await api("/api/metrics");
  const box = $("curves");
  box.textContent = "";
  if (!m.train.step || !m.train.step.length) { $("curves-note").textContent = "no training steps logged yet"; return; }
  const k = m.bits ? 1 / Math.LN2 : 1, unit = m.bits ? "bits per token" : "loss";
  const scale = (ys) => ys.map((y) => (y === null ? null : y * k));
  lineChart(box, [
    { x: m.train.step, y: scale(m.train.loss), color: "#1f77b4", label: "train" },
    { x: m.valid.step, y: scale(m.valid.valid_loss), color: "#d62728", label: "validation", width: 2 },
  ], { title: unit, xlabel: "step" });
  lineChart(box, [{ x: m.train.step, y: m.train.grad_norm, color: "#2ca02c" }],
    { title: "gradient norm (before clipping)", xlabel: "step", logY: true });
  lineChart(box, [{ x: m.train.step, y: m.train.lr, color: "#9467bd" }], { title: "learning rate", xlabel: "step" });
  const last = m.train.step[m.train.step.length - 1];
  $("curves-note").textContent = `step ${last}; updated ${new Date(m.mtime * 1000).toLocaleTimeString()}`;
}

async function translate() {
  const r = await api("/api/translate", { text: $("source").value, beam: numberOrNull("beam") });
  $("translation").textContent = `${r.text} → ${r.translation}`;
  $("attention-plot").textContent = "";
  if (r.weights) heatmap($("attention-plot"), r.weights, r.output, r.source);
  else $("attention-plot").textContent = "this model has no attention";
}

// -- wiring -------------------------------------------------------------------------------------------

$("generate-btn").addEventListener("click", run(generate));
$("trace-btn").addEventListener("click", run(traceAndColour));
$("text-source").addEventListener("change", run(pickText));
$("layer").addEventListener("change", run(traceAndColour));
$("field").addEventListener("change", run(traceAndColour));
$("unit").addEventListener("change", run(async () => { await ensureTrace(); colourUnit(); }));
$("rank-btn").addEventListener("click", run(rankUnits));
$("search-btn").addEventListener("click", run(search));
$("sel-start").addEventListener("change", () => state.searchSpans && markSearch());
$("sel-end").addEventListener("change", () => state.searchSpans && markSearch());
$("pca-btn").addEventListener("click", run(project));
$("pca-color").addEventListener("change", run(project));
$("translate-btn").addEventListener("click", run(translate));
setInterval(() => {
  const tab = $("tab-curves");
  if (tab && !tab.hidden && $("live").checked) drawCurves().catch((e) => showError(e.message));
}, 5000);
setUp().catch((e) => showError(e.message));
