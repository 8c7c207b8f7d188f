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
          batch_size: parseInt(form.querySelector("[name=batch_size]").value, 10) || 64,
          device: form.querySelector("[name=device]").value,
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
const evalColours = ["#4f46e5", "#0ea5e9", "#10b981"];
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
