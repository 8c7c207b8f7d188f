/* Train page: live training curves (Chart.js) fed by the training job's SSE stream, and the
   overlaid curves of the comparison page. Loaded only by the train templates. */
"use strict";

const trainPalette = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6", "#f97316", "#64748b", "#db2777"];
// The series of the two live charts come from the page (the task's display, ml/tasks TaskDisplay):
// opts.charts = {loss: [[key, legend], …], metric: […]}; these are the classification ones, used
// when a page gives none.
const TRAIN_LOSS_SERIES = [["train_loss_step", "train loss (per step)"], ["train_loss", "train loss (epoch)"], ["val_loss", "val loss"]];
const TRAIN_METRIC_SERIES = [["train_accuracy_step", "train accuracy (running)"], ["val_accuracy", "val accuracy"], ["train_accuracy", "train accuracy"], ["val_f1_macro", "val F1 (macro)"]];

function trainClock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return (h ? h + ":" : "") + mm + ":" + String(r).padStart(2, "0");
}

/* Dashed vertical lines at the epoch boundaries of a step axis: options.plugins.epochLines =
   {every: steps per epoch}. Drawn by hand: the app vendors Chart.js without its annotation plugin.
   Epochs narrower than a few pixels get no lines: they would grey the whole plot. */
const trainEpochLines = {
  id: "epochLines",
  beforeDatasetsDraw(chart, args, opts) {
    const every = opts && opts.every;
    const x = chart.scales.x;
    if (!every || !x || x.max <= every) return;
    const ctx = chart.ctx, area = chart.chartArea;
    if (x.getPixelForValue(every) - x.getPixelForValue(0) < 10) return;
    ctx.save();
    ctx.strokeStyle = "#cbd5e1";
    ctx.setLineDash([3, 3]);
    ctx.lineWidth = 1;
    for (let step = every; step < x.max; step += every) {
      const px = Math.round(x.getPixelForValue(step)) + 0.5;
      if (px <= area.left || px >= area.right) continue;
      ctx.beginPath();
      ctx.moveTo(px, area.top);
      ctx.lineTo(px, area.bottom);
      ctx.stroke();
    }
    ctx.restore();
  },
};

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
  // a score that can go far below 0 (regression's R² early in training) would squash the rest:
  // the axis stops at -100 % and lower points leave the chart
  const y = opts.unit ? { beginAtZero: true, max: 1, ticks: { callback: (v) => Math.round(v * 100) + "%" },
    afterDataLimits: (scale) => { if (scale.min < -1) scale.min = -1; } }
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
      scales: { x: { type: "linear", min: 0, max: opts.maxStep || undefined, title: { display: true, text: opts.xTitle || "step" }, ticks: { precision: 0 } }, y: y },
      plugins: {
        legend: {
          position: "bottom",
          // the datasets' order (which is drawn on top) does not reorder the legend
          labels: { boxWidth: 12, filter: trainLegendShown, sort: opts.legendByIndex ? (a, b) => a.datasetIndex - b.datasetIndex : undefined },
        },
        epochLines: { every: opts.stepsPerEpoch || 0 },
      },
    },
    plugins: [trainEpochLines],
  });
  canvas.dataset.points = String(trainChartPoints(chart));
  return chart;
}

/* A legend entry for every series, except a per-step one that got no point while another per-step
   series of its chart did: the loss components a detector family does not have (an FCOS has no
   objectness loss). Before the first step every entry shows. */
function trainLegendShown(item, data) {
  const sets = data.datasets;
  const ds = sets[item.datasetIndex];
  if (!ds || !ds.key || !ds.key.endsWith("_step") || ds.data.length) return true;
  return !sets.some((d) => d.key && d.key.endsWith("_step") && d.data.length);
}

function trainDatasets(series, specs) {
  let steps = 0;
  return specs.map(([key, label], i) => {
    const perStep = key.endsWith("_step");
    // the first per-step series (the batch loss, the running accuracy) is pale behind the epoch
    // values; further ones (a detector's loss components) take a colour of their own
    const pale = perStep && steps++ === 0;
    const colour = pale ? "#a5b4fc" : trainPalette[i % trainPalette.length];
    return {
      key: key,
      label: label,
      data: trainPoints(series[key]),
      borderColor: colour,
      backgroundColor: colour,
      borderWidth: perStep ? 1.25 : 2,
      // a few step points are dots (a lone first point would be invisible as a line); many, a line
      pointRadius: perStep ? (c) => (c.dataset.data.length <= 40 ? 2 : 0) : 3,
      cubicInterpolationMode: "monotone",
    };
  });
}

/* The experiment panel (Alpine): charts from the recorded series, then live points over SSE. */
function trainLive(opts) {
  // Chart instances, the stream and the seen-point set stay out of Alpine's reactive proxies:
  // Chart.js objects wrapped in proxies recurse without end.
  const live = { charts: [], es: null, seen: new Set() };
  const run = opts.live || {};
  return {
    active: !!opts.active,
    step: run.step || 0,
    totalSteps: run.total_steps || 0,
    stepsPerEpoch: run.steps_per_epoch || 0,
    liveEpoch: run.epoch || 0,
    ips: run.images_per_s || null,
    eta: run.eta_s === undefined ? null : run.eta_s,
    elapsed: run.elapsed_s === undefined ? null : run.elapsed_s,
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
      const axis = { maxStep: this.axisEnd(), stepsPerEpoch: this.stepsPerEpoch };
      const charts = opts.charts || {};
      live.charts = [
        trainLineChart(this.$refs.loss, trainDatasets(series, charts.loss || TRAIN_LOSS_SERIES), axis),
        trainLineChart(this.$refs.metric, trainDatasets(series, charts.metric || TRAIN_METRIC_SERIES), Object.assign({ unit: true }, axis)),
      ];
      this.count();
      if (opts.active && opts.jobId) this.follow();
    },
    destroy() {
      if (live.es) live.es.close();
      live.charts.forEach((c) => c.destroy());
    },
    fmt(key) {
      // as the server writes it (ml/tasks format_metric): percent, decimal (mAP) or loss
      const v = this.best[key];
      if (v === undefined || v === null) return "";
      const f = (opts.formats || {})[key] || (key.endsWith("loss") ? "loss" : "percent");
      if (f === "percent") return (v * 100).toFixed(1) + "%";
      return f === "decimal" ? v.toFixed(3) : v.toFixed(4);
    },
    stepText() { return this.totalSteps ? this.step.toLocaleString() + " / " + this.totalSteps.toLocaleString() : "—"; },
    epochText() {
      // the epoch in progress while it runs; afterwards the epochs it finished
      if (!this.active) return this.epoch + " / " + this.epochs;
      return this.liveEpoch ? this.liveEpoch + " / " + this.epochs : "—";
    },
    speedText() {
      if (!this.ips) return "—";
      return (this.ips >= 10 ? Math.round(this.ips).toLocaleString() : this.ips.toFixed(1)) + " img/s";
    },
    etaText() {
      if (!this.active) return this.elapsed === null ? "—" : trainClock(this.elapsed);
      return this.eta === null ? "—" : trainClock(this.eta);
    },
    axisEnd() {
      // while it runs, the x axis reaches the end of the epoch in progress: the first epoch's
      // points spread over the whole plot instead of a sliver of a long run's axis
      if (!this.active || !this.stepsPerEpoch || !this.liveEpoch) return undefined;
      return Math.min(this.totalSteps || Infinity, this.liveEpoch * this.stepsPerEpoch);
    },
    axis(total, every) {
      this.totalSteps = total || this.totalSteps;
      this.stepsPerEpoch = every || this.stepsPerEpoch;
      const end = this.axisEnd();
      live.charts.forEach((c) => {
        if (c.options.scales.x.max === end && c.options.plugins.epochLines.every === this.stepsPerEpoch) return;
        c.options.scales.x.max = end;
        c.options.plugins.epochLines.every = this.stepsPerEpoch;
        c.update("none");
      });
    },
    progress(run) {
      this.step = run.step;
      this.liveEpoch = run.epoch;
      this.ips = run.images_per_s;
      this.eta = run.eta_s;
      this.elapsed = run.elapsed_s;
      this.axis(run.total_steps, run.steps_per_epoch);
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
    trim(step) {
      // drop what an interrupted attempt drew after the checkpoint a resumed run continues from
      live.charts.forEach((c) => {
        c.data.datasets.forEach((d) => {
          d.data = d.data.filter((p) => p.x <= step);
        });
        c.update("none");
      });
      live.seen = new Set([...live.seen].filter((key) => +key.slice(key.lastIndexOf("@") + 1) <= step));
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
        if (d.attempt !== undefined && d.attempt > this.attempt) {
          // a new attempt: one resumed from a checkpoint keeps the points up to its step; one
          // that starts over (nothing to resume from) starts the curves over
          this.attempt = d.attempt;
          const from = d.scope === "start" ? d.resumed_from_step : null;
          if (typeof from === "number") this.trim(from); else this.reset();
        }
        if (d.scope === "start") { this.total = d.total_steps; this.status = "running"; this.axis(d.total_steps, d.steps_per_epoch); }
        else if (d.scope === "progress") { this.progress(d.live); }
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

/* Comparison page: every canvas[data-compare] holds {"metric", "series": {experiment: {step, value}}}.
   One line per experiment, each in its own colour and named in the legend. Two experiments with the
   same history (the same data, settings and seed train alike) would draw one line exactly over the
   other, as if one were missing: the later one is drawn dashed on top, and its legend says whose
   curve it repeats. */
const TRAIN_COMPARE_DASHES = [[6, 4], [2, 3], [10, 3, 2, 3]];

function trainSameSeries(a, b) {
  if (!a || !b || a.step.length !== b.step.length) return false;
  return a.step.every((x, i) => x === b.step[i] && a.value[i] === b.value[i]);
}

function trainCompareCharts(root) {
  if (typeof Chart === "undefined") return;
  root.querySelectorAll("canvas[data-compare]").forEach((el) => {
    if (el._chart) return;
    const spec = JSON.parse(el.dataset.compare);
    const names = Object.keys(spec.series);
    const short = (name) => (name.length > 40 ? name.slice(0, 39) + "…" : name);
    let repeats = 0;
    const datasets = names.map((name, i) => {
      const colour = trainPalette[i % trainPalette.length];
      const twin = names.slice(0, i).find((other) => trainSameSeries(spec.series[other], spec.series[name]));
      const d = {
        label: twin ? short(name) + " (same curve as " + short(twin) + ")" : short(name),
        data: trainPoints(spec.series[name]),
        borderColor: colour,
        backgroundColor: colour,
        borderWidth: 2,
        pointRadius: 2,
        cubicInterpolationMode: "monotone",
      };
      if (twin) {
        // drawn over the curve it repeats (a lower order is drawn later), so both colours show
        d.borderDash = TRAIN_COMPARE_DASHES[repeats++ % TRAIN_COMPARE_DASHES.length];
        d.order = -repeats;
        d.pointStyle = "rectRot";
        d.pointRadius = 3;
      }
      return d;
    });
    // the page says which metrics are scores (0-100 %) and which losses (log scale)
    const unit = spec.unit === undefined ? !spec.metric.endsWith("loss") : !!spec.unit;
    el._chart = trainLineChart(el, datasets, { unit: unit, legendByIndex: true });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  // htmx "settles" a swap by giving elements with the same id their old width/height/style for a
  // moment: on a swapped-in chart canvas that wipes what Chart.js drew. Classes still settle.
  if (window.htmx) htmx.config.attributesToSettle = ["class"];
  trainCompareCharts(document);
});

/* The form's "frozen backbone" box follows the chosen model's default (on for the DINOv3 models:
   option[data-frozen="yes"]), as the CLI and the API do, until the user ticks or unticks it. */
document.addEventListener("DOMContentLoaded", () => {
  const model = document.getElementById("tf-model");
  const box = document.getElementById("tf-freeze");
  if (!model || !box) return;
  let byHand = false;
  box.addEventListener("change", () => { byHand = true; });  // scripts setting .checked fire no change
  const follow = () => {
    const option = model.selectedOptions[0];
    if (!byHand) box.checked = !!option && option.dataset.frozen === "yes";
  };
  model.addEventListener("change", follow);
  follow();  // the model the browser restored on a reload
});
