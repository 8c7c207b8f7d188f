/* Evaluate and Export pages: start jobs through the API, follow them over SSE, swap results in. */
"use strict";

/* The experiment list shows each one's accuracy: fetch the page again and copy the list over. */
async function refreshSidebar() {
  try {
    const resp = await fetch(location.pathname + location.search);
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.querySelector("#eval-experiments");
    const here = document.querySelector("#eval-experiments");
    if (fresh && here) here.innerHTML = fresh.innerHTML;
  } catch (e) { /* the list stays as it was */ }
}

/* A box task's matching IoU and score threshold, when the form has them and they are filled in;
   an anomaly task's fixed threshold, else the criterion that chooses it (threshold_by). */
function thresholds(form) {
  const out = {};
  for (const name of ["iou", "score_threshold"]) {
    const el = form.querySelector("[name=" + name + "]");
    if (el && el.value.trim() !== "") out[name] = parseFloat(el.value);
  }
  const by = form.querySelector("[name=threshold_by]");
  if (by && by.value && out.score_threshold === undefined) out.threshold_by = by.value;
  return out;
}

/* The evaluation form: start, reset, and live progress; the results panel is swapped in after. */
function evaluator(opts) {
  return Object.assign(jobFollower(), {
    evaluated: !!opts.evaluated,
    init() {
      if (opts.jobId) {
        this.status = opts.status || "running";
        this.track(opts.jobId, { end: () => this.refresh() });
      }
    },
    refresh() {
      htmx.ajax("GET", opts.panelUrl, { target: "#eval-panel", swap: "innerHTML" });
      refreshSidebar();
    },
    async start(form) {
      const subsets = [...form.querySelectorAll("input[name=subsets]:checked")].map((x) => x.value);
      if (!subsets.length) { this.error = "Choose at least one subset."; return; }
      this.done = 0; this.total = 0; this.message = ""; this.status = "sending";
      const body = await this.send("/api/v1/evaluations", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          project: opts.project,
          experiment: opts.experiment,
          checkpoint: form.querySelector("[name=checkpoint]").value,
          subsets: subsets,
          batch_size: parseInt(form.querySelector("[name=batch_size]").value, 10) || undefined,
          device: form.querySelector("[name=device]").value,
          labels: form.querySelector("[name=labels]").value,
          ...thresholds(form),
        }),
      });
      if (!body) { this.status = ""; return; }
      this.evaluated = true;
      this.status = body.job.status;
      this.refresh();
      this.track(body.job.id, { end: () => this.refresh() });
    },
    async reset() {
      if (!window.confirm("Delete this evaluation (its results and files)?")) return;
      if (this.source) { this.source.close(); this.source = null; }
      const url = "/api/v1/evaluations/" + encodeURIComponent(opts.project) + "/" + encodeURIComponent(opts.experiment);
      const body = await this.send(url, { method: "DELETE" });
      if (body) { this.evaluated = false; this.busy = false; this.status = ""; this.message = ""; this.done = 0; this.total = 0; }
      this.refresh();
    },
  });
}

/* The export form: experiment → checkpoints, format → opset, start and follow the job. */
function exporter(opts) {
  return Object.assign(jobFollower(), {
    format: "onnx",
    exportId: null,
    async start(form) {
      this.done = 0; this.total = 0; this.message = ""; this.status = "sending";
      const payload = {
        project: opts.project,
        experiment: form.querySelector("[name=experiment]").value,
        checkpoint: form.querySelector("[name=checkpoint]").value,
        format: this.format,
      };
      if (this.format === "onnx") payload.opset = parseInt(form.querySelector("[name=opset]").value, 10);
      const threshold = form.querySelector("[name=score_threshold]");
      if (threshold && threshold.value.trim() !== "") payload.score_threshold = Number(threshold.value);
      const body = await this.send("/api/v1/exports", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(payload),
      });
      if (!body) { this.status = ""; return; }
      this.exportId = body.export.id;
      this.status = body.job.status;
      const resultUrl = opts.base + "/export/" + body.export.id;
      htmx.ajax("GET", opts.base + "/export/list", { target: "#export-list", swap: "innerHTML" });
      this.track(body.job.id, {
        end: () => {
          htmx.ajax("GET", resultUrl, { target: "#export-result", swap: "innerHTML" });
          htmx.ajax("GET", opts.base + "/export/list", { target: "#export-list", swap: "innerHTML" });
        },
      });
    },
  });
}

/* Per-class precision / recall / F1 as grouped bars: <canvas data-eval-chart='{"labels", "datasets"}'>. */
const evalColours = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b"];
function initEvalCharts(root) {
  if (typeof Chart === "undefined") return;
  root.querySelectorAll("canvas[data-eval-chart]").forEach((el) => {
    if (el._chart) return;
    const spec = JSON.parse(el.dataset.evalChart);
    spec.datasets.forEach((d, i) => { d.backgroundColor = evalColours[i % evalColours.length]; d.borderRadius = 2; });
    el._chart = new Chart(el, {
      type: "bar",
      data: spec,
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: "bottom" } },
        scales: {
          x: { ticks: { autoSkip: false, maxRotation: 60, callback(v) { const t = this.getLabelForValue(v); return t.length > 14 ? t.slice(0, 13) + "…" : t; } } },
          y: { beginAtZero: true, max: 1 },
        },
      },
    });
    el.dataset.ready = "1";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  initEvalCharts(document);
  document.body.addEventListener("htmx:afterSettle", (e) => initEvalCharts(e.target));
});

/* ---- detection and instance segmentation results -------------------------------------------------
   Each tile and the detail carry their image's predictions (score, outcome tp | fp | ignored, as
   matched at the evaluation's IoU) and ground truth (outcome, and the score of the prediction that
   found it). At a confidence c a prediction counts when its score is ≥ c and keeps its outcome; an
   object is found when the prediction that matched it scores ≥ c, else it is missed. So the
   confidence slider refilters every drawing and count at once, without asking the server. */
const EVAL_COLOURS = { tp: "#16a34a", fp: "#dc2626", fn: "#f97316", ignored: "#94a3b8" };
const boxEval = { conf: null, curve: null, best: null, classes: [] };

/* One image's drawing (short keys, see web/pages/evaluation.drawing): predictions p {b: box px,
   s: score, c: class index, o: outcome, m: RLE mask, r: a rotated box's 4 corners px} and objects
   t {b, c, o, ms: the score that found it, m: mask (RLE or normalised polygons), r}. */
function evalItems(data, c, big) {
  const items = [];
  const w = data.w || 1, h = data.h || 1;
  const names = boxEval.classes || [];
  const name = (k) => names[k] != null ? names[k] : "class " + k;
  const norm = (b) => [b[0] / w, b[1] / h, b[2] / w, b[3] / h];
  const corners = (r) => [r.map((q) => [q[0] / w, q[1] / h])];
  for (const t of data.t || []) {  // ground truth under the predictions, dashed
    const state = t.o === "ignored" ? "ignored" : t.ms != null && t.ms >= c ? "tp" : "fn";
    if (state === "tp" && !big) continue;  // on a tile a found object is its (green) prediction
    const col = EVAL_COLOURS[state];
    const it = Overlay.item({
      hideable: false, cls: t.c, box: norm(t.b), stroke: col, fill: col, dash: [5, 3],
      noFill: true, mask: "outline", lineWidth: state === "fn" ? 2 : 1.25,
      label: big && state === "fn" ? name(t.c) + " · missed" : null, noLabel: !(big && state === "fn"),
    });
    if (t.m && Array.isArray(t.m.polygons)) it.polys = t.m.polygons;
    else if (t.m && Array.isArray(t.m.size)) it.rle = t.m;
    else if (Array.isArray(t.r)) it.polys = corners(t.r);
    items.push(it);
  }
  for (const p of data.p || []) {  // predictions above the confidence: boxes, or filled masks
    if (p.s < c) continue;
    const col = EVAL_COLOURS[p.o] || EVAL_COLOURS.fp;
    const it = Overlay.item({
      hideable: false, cls: p.c, box: norm(p.b), stroke: col, fill: col, noFill: true,
      dash: p.o === "ignored" ? [2, 2] : null, mask: "fill",
      label: big ? name(p.c) + " " + p.s.toFixed(2) : null, noLabel: !big,
    });
    if (p.m && Array.isArray(p.m.size)) it.rle = p.m;
    else if (Array.isArray(p.r)) { it.polys = corners(p.r); it.mask = "outline"; }
    items.push(it);
  }
  return items;
}

function evalCounts(data, c) {
  let tp = 0, fp = 0, fn = 0;
  for (const p of data.p || []) {
    if (p.s < c) continue;
    if (p.o === "tp") tp++; else if (p.o === "fp") fp++;
  }
  for (const t of data.t || []) {
    if (t.o !== "ignored" && !(t.ms != null && t.ms >= c)) fn++;
  }
  return { tp: tp, fp: fp, fn: fn };
}

function showCounts(box, counts) {
  if (!box) return;
  for (const k of ["tp", "fp", "fn"]) {
    const el = box.querySelector("[data-count=" + k + "]");
    if (el) el.textContent = counts[k];
  }
}

function setUpEvalCanvases(root) {
  if (typeof Overlay === "undefined") return;
  const drawings = {};
  document.querySelectorAll("script.eval-drawings").forEach((s) => {
    try {
      const d = JSON.parse(s.textContent);
      if (d.classes) boxEval.classes = d.classes;
      Object.assign(drawings, d.images || {});
    } catch (e) { /* a damaged block: its images stay undrawn */ }
  });
  root.querySelectorAll("canvas[data-eval]").forEach((cv) => {
    if (cv._evalData) return;
    const data = drawings[cv.dataset.eval];
    if (!data) return;
    cv._evalData = data;
    cv._build = () => ({ w: data.w, h: data.h, items: evalItems(data, boxEval.conf, cv.clientWidth >= 220) });
    Overlay.observe(cv);
  });
}

function setConf(value) {
  // the slider's steps are 0.01; the evaluation's own threshold is kept exact
  const c = Math.max(0, Math.min(1, isFinite(value) ? value : 0));
  boxEval.conf = c;
  document.querySelectorAll("#eval-conf, [data-conf-slider]").forEach((s) => {
    if (Math.abs(parseFloat(s.value) - c) >= 0.005) s.value = c.toFixed(2);
  });
  document.querySelectorAll("#eval-conf-value, [data-conf-value]").forEach((o) => { o.textContent = c.toFixed(2); });
  document.querySelectorAll("canvas[data-eval]").forEach((cv) => {
    if (cv._evalData) showCounts(cv.closest(".eval-box-tile"), evalCounts(cv._evalData, c));
  });
  const detail = document.querySelector(".eval-box-detail");
  if (detail) {
    const cv = detail.querySelector("canvas[data-eval]");
    if (cv && cv._evalData) showCounts(detail.querySelector(".eval-detail-counts"), evalCounts(cv._evalData, c));
    let shown = 0;
    detail.querySelectorAll("tr[data-pred]").forEach((tr) => {
      const on = parseFloat(tr.dataset.score) >= c;
      tr.hidden = !on;
      shown += on ? 1 : 0;
    });
    const n = detail.querySelector("[data-shown-count]");
    if (n) n.textContent = shown + " at ≥ " + c.toFixed(2);
    detail.querySelectorAll("tr[data-truth]").forEach((tr) => {
      const cell = tr.querySelector("[data-outcome]");
      if (tr.dataset.ignored === "true") { cell.textContent = "ignored"; return; }
      const m = tr.dataset.matched === "" ? null : parseFloat(tr.dataset.matched);
      const found = m != null && m >= c;
      cell.textContent = found ? "tp" : "fn";
      tr.className = found ? "o-tp" : "o-fn";
    });
  }
  const curve = boxEval.curve;
  if (curve && curve.confidence && curve.confidence.length) {
    const k = Math.max(0, Math.min(curve.confidence.length - 1, Math.round(c * (curve.confidence.length - 1))));
    for (const key of ["precision", "recall", "f1"]) {
      const el = document.querySelector("[data-conf-stat=" + key + "]");
      if (el && curve[key]) el.textContent = curve[key][k].toFixed(3);
    }
  }
  const f1 = document.getElementById("f1-chart");
  if (f1 && f1._chart) {
    const marker = f1._chart.data.datasets.find((d) => d._marker);
    if (marker) { marker.data = [{ x: c, y: 0 }, { x: c, y: 1 }]; f1._chart.update("none"); }
  }
  if (typeof Overlay !== "undefined") Overlay.refresh();
}

function initBoxEval(root) {
  const card = document.getElementById("eval-conf-card");
  if (card && !card._setUp) {
    card._setUp = true;
    const spec = JSON.parse(card.dataset.evalConf || "{}");
    boxEval.curve = spec.curve || null;
    boxEval.best = spec.best;
    boxEval.conf = typeof spec.threshold === "number" ? spec.threshold : 0.5;
    card.querySelector("#eval-conf").addEventListener("input", (e) => setConf(parseFloat(e.target.value)));
    const best = card.querySelector("#eval-conf-best");
    if (best) best.addEventListener("click", () => setConf(boxEval.best || 0));
    if (typeof Overlay !== "undefined") Overlay.settings.opacity = 0.45;
  }
  if (boxEval.conf == null) return;
  root.querySelectorAll("[data-conf-slider]").forEach((s) => {
    if (s._setUp) return;
    s._setUp = true;
    s.addEventListener("input", () => setConf(parseFloat(s.value)));
  });
  initCurveCharts(root);
  setUpEvalCanvases(root);
  setConf(boxEval.conf);
}

function initCurveCharts(root) {
  if (typeof Chart === "undefined") return;
  const colour = (i) => (typeof Overlay !== "undefined" ? Overlay.colour(i, 0) : evalColours[i % evalColours.length]);
  const axes = (x, y) => ({
    x: { type: "linear", min: 0, max: 1, title: { display: true, text: x } },
    y: { min: 0, max: 1, title: { display: true, text: y } },
  });
  root.querySelectorAll("canvas[data-eval-pr]").forEach((el) => {
    if (el._chart) return;
    const curves = JSON.parse(el.dataset.evalPr);
    // the curves' AP is at the evaluation's IoU: "AP50" at 0.5, "AP75" at 0.75, else "AP@0.6"
    const iou = parseFloat(el.dataset.evalIou);
    const pct = Math.round(iou * 100);
    const apName = !isFinite(iou) ? "AP" : pct % 5 === 0 && Math.abs(iou * 100 - pct) < 1e-6 ? "AP" + pct : "AP@" + iou;
    el._chart = new Chart(el, {
      type: "line",
      data: {
        datasets: curves.map((c, i) => ({
          label: c["class"] + (c.ap != null ? " · " + apName + " " + c.ap.toFixed(2) : " · no object"),
          data: c.recall.map((r, k) => ({ x: r, y: c.precision[k] })),
          borderColor: colour(i), backgroundColor: colour(i), pointRadius: 0, borderWidth: 2, stepped: "after",
        })),
      },
      options: { responsive: true, maintainAspectRatio: false, animation: false, parsing: true, scales: axes("recall", "precision"), plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } },
    });
    el.dataset.ready = "1";
  });
  root.querySelectorAll("canvas[data-eval-f1]").forEach((el) => {
    if (el._chart) return;
    const f = JSON.parse(el.dataset.evalF1);
    const line = (key, col, width) => ({
      label: key, data: (f.confidence || []).map((c, k) => ({ x: c, y: f[key][k] })),
      borderColor: col, backgroundColor: col, pointRadius: 0, borderWidth: width,
    });
    const marker = { label: "confidence", data: [], borderColor: "#111827", backgroundColor: "#111827", borderDash: [4, 3], pointRadius: 0, borderWidth: 1.5, _marker: true };
    el._chart = new Chart(el, {
      type: "line",
      data: { datasets: [line("f1", "#4f46e5", 2.5), line("precision", "#0ea5e9", 1.5), line("recall", "#10b981", 1.5), marker] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, scales: axes("confidence", ""), plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } },
    });
    el.dataset.ready = "1";
  });
}

document.addEventListener("DOMContentLoaded", () => {
  initBoxEval(document);
  document.body.addEventListener("htmx:afterSettle", (e) => {
    // a new panel (after a run or a reset) starts again from its own threshold
    const card = document.getElementById("eval-conf-card");
    if (card && !card._setUp) boxEval.conf = null;
    initBoxEval(e.target.closest && e.target.closest("dialog") ? e.target : document);
  });
});
