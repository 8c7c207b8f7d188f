/* Train page: live training curves (Chart.js) fed by the training job's SSE stream, and the
   overlaid curves of the comparison page. Loaded only by the train templates. */
"use strict";

const trainPalette = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6", "#f97316", "#64748b", "#db2777"];
const TRAIN_LOSS_SERIES = [["train_loss_step", "train loss (per step)"], ["train_loss", "train loss (epoch)"], ["val_loss", "val loss"]];
const TRAIN_METRIC_SERIES = [["val_accuracy", "val accuracy"], ["train_accuracy", "train accuracy"], ["val_f1_macro", "val F1 (macro)"]];

function trainPoints(s) {
  if (!s) return [];
  return s.step.map((x, i) => ({ x: x, y: s.value[i] }));
}

function trainChartPoints(chart) {
  return chart.data.datasets.reduce((n, d) => n + d.data.length, 0);
}

function trainLineChart(canvas, datasets, opts) {
  opts = opts || {};
  // losses on a log scale: a first epoch's loss can be 100× the later ones
  const y = opts.unit ? { beginAtZero: true, max: 1, ticks: { callback: (v) => Math.round(v * 100) + "%" } }
    : { type: "logarithmic" };  // Chart.js labels the 1-2-5 ticks of a log axis
  const chart = new Chart(canvas, {
    type: "line",
    data: { datasets: datasets },
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      parsing: false,
      normalized: true,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      scales: { x: { type: "linear", min: 0, title: { display: true, text: opts.xTitle || "step" }, ticks: { precision: 0 } }, y: y },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
    },
  });
  canvas.dataset.points = String(trainChartPoints(chart));
  return chart;
}

function trainDatasets(series, specs) {
  return specs.map(([key, label], i) => {
    const perStep = key.endsWith("_step");
    return {
      key: key,
      label: label,
      data: trainPoints(series[key]),
      borderColor: perStep ? "#a5b4fc" : trainPalette[i % trainPalette.length],
      backgroundColor: perStep ? "#a5b4fc" : trainPalette[i % trainPalette.length],
      borderWidth: perStep ? 1.25 : 2,
      pointRadius: perStep ? 0 : 3,
      cubicInterpolationMode: "monotone",
    };
  });
}

/* The experiment panel (Alpine): charts from the recorded series, then live points over SSE. */
function trainLive(opts) {
  // Chart instances, the stream and the seen-point set stay out of Alpine's reactive proxies:
  // Chart.js objects wrapped in proxies recurse without end.
  const live = { charts: [], es: null, seen: new Set() };
  return {
    status: opts.status,
    epoch: opts.epoch,
    epochs: opts.epochs,
    done: opts.done || 0,
    total: opts.total || 0,
    message: opts.message || "",
    attempt: opts.attempt || 0,
    points: 0,
    best: opts.best || {},
    saved: "",
    stopping: !!opts.stopping,
    lost: false,
    init() {
      const raw = this.$el.querySelector("script.train-series");
      const series = raw ? JSON.parse(raw.textContent) : {};
      for (const [name, s] of Object.entries(series)) s.step.forEach((st) => live.seen.add(name + "@" + st));
      if (typeof Chart === "undefined") return;
      live.charts = [
        trainLineChart(this.$refs.loss, trainDatasets(series, TRAIN_LOSS_SERIES), {}),
        trainLineChart(this.$refs.metric, trainDatasets(series, TRAIN_METRIC_SERIES), { unit: true }),
      ];
      this.count();
      if (opts.active && opts.jobId) this.follow();
    },
    destroy() {
      if (live.es) live.es.close();
      live.charts.forEach((c) => c.destroy());
    },
    fmt(key) {
      const v = this.best[key];
      if (v === undefined || v === null) return "";
      return key.endsWith("loss") ? v.toFixed(4) : (v * 100).toFixed(1) + "%";
    },
    pct() {
      if (!this.total) return this.status === "running" ? 100 : 0;
      return Math.min(100, Math.round((100 * this.done) / this.total));
    },
    count() {
      this.points = live.charts.reduce((n, c) => n + trainChartPoints(c), 0);
      live.charts.forEach((c) => { c.canvas.dataset.points = String(trainChartPoints(c)); });
    },
    reset() {
      live.seen = new Set();
      live.charts.forEach((c) => { c.data.datasets.forEach((d) => { d.data = []; }); c.update("none"); });
      this.count();
    },
    add(metrics, step) {
      let changed = false;
      for (const chart of live.charts) {
        for (const ds of chart.data.datasets) {
          const value = metrics[ds.key];
          const key = ds.key + "@" + step;
          if (value === undefined || value === null || live.seen.has(key)) continue;
          live.seen.add(key);
          ds.data.push({ x: step, y: value });
          changed = true;
        }
        if (changed) chart.update("none");
      }
      if (changed) this.count();
    },
    follow() {
      const es = new EventSource("/api/v1/jobs/" + opts.jobId + "/events");
      live.es = es;
      es.addEventListener("metrics", (e) => {
        const d = JSON.parse(e.data);
        if (d.attempt !== undefined && d.attempt < this.attempt) return; // an earlier, interrupted attempt
        if (d.attempt !== undefined && d.attempt > this.attempt) { this.attempt = d.attempt; this.reset(); }
        if (d.scope === "start") { this.total = d.total_steps; this.status = "running"; }
        else if (d.scope === "checkpoint") { this.saved = d.kind + " checkpoint saved at epoch " + d.epoch + ", step " + d.step; }
        else if (d.scope === "step" || d.scope === "epoch") {
          this.add(d.metrics, d.step);
          this.status = "running";
          if (d.scope === "epoch") {
            this.epoch = d.epoch;
            if (d.best) this.best = Object.assign({ epoch: d.epoch }, d.metrics);
          }
        }
      });
      es.addEventListener("progress", (e) => {
        const d = JSON.parse(e.data);
        if (d.total) { this.done = d.done || 0; this.total = d.total; }
        if (d.message) this.message = d.message;
      });
      es.addEventListener("status", (e) => {
        const d = JSON.parse(e.data);
        if (d.cancel_requested) this.stopping = true;
        if (d.status === "running" || d.status === "queued") this.status = d.status;
      });
      es.addEventListener("end", () => {
        es.close();
        live.es = null;
        // the final state (status, best metrics, checkpoints) comes from the server
        htmx.ajax("GET", opts.detailUrl, { target: "#experiment-detail", swap: "outerHTML" });
        htmx.ajax("GET", opts.listUrl, { target: "#experiments-list", swap: "outerHTML" });
      });
      es.onerror = () => { if (es.readyState === EventSource.CLOSED) this.lost = true; };
    },
  };
}

/* Comparison page: every canvas[data-compare] holds {"metric", "series": {experiment: {step, value}}}. */
function trainCompareCharts(root) {
  if (typeof Chart === "undefined") return;
  root.querySelectorAll("canvas[data-compare]").forEach((el) => {
    if (el._chart) return;
    const spec = JSON.parse(el.dataset.compare);
    const names = Object.keys(spec.series);
    const datasets = names.map((name, i) => ({
      label: name.length > 40 ? name.slice(0, 39) + "…" : name,
      data: trainPoints(spec.series[name]),
      borderColor: trainPalette[i % trainPalette.length],
      backgroundColor: trainPalette[i % trainPalette.length],
      borderWidth: 2,
      pointRadius: 2,
      cubicInterpolationMode: "monotone",
    }));
    const unit = !spec.metric.endsWith("loss");
    el._chart = trainLineChart(el, datasets, { unit: unit });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  // htmx "settles" a swap by giving elements with the same id their old width/height/style for a
  // moment: on a swapped-in chart canvas that wipes what Chart.js drew. Classes still settle.
  if (window.htmx) htmx.config.attributesToSettle = ["class"];
  trainCompareCharts(document);
});
