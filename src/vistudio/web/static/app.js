/* vistudio web UI: small behaviours on top of htmx and Alpine (no build step). */
"use strict";

function apiError(body, status) {
  if (body && body.error && body.error.message) return body.error.message;
  return "Request failed (HTTP " + status + ")";
}

/* A job's live state for Alpine components: busy, status, done/total, message, error; track()
   follows the job's server-sent events, send() calls the API and keeps its error message. */
function jobFollower() {
  return {
    busy: false,
    error: "",
    status: "",
    done: 0,
    total: 0,
    message: "",
    source: null,
    pct() {
      if (!this.total) return this.busy ? 100 : 0;
      return Math.min(100, Math.round((100 * this.done) / this.total));
    },
    track(jobId, on) {
      on = on || {};
      if (this.source) this.source.close();
      this.busy = true;
      const es = new EventSource("/api/v1/jobs/" + jobId + "/events");
      this.source = es;
      es.addEventListener("progress", (e) => {
        const d = JSON.parse(e.data);
        this.done = d.done || 0;
        this.total = d.total || 0;
        this.message = d.message || "";
        if (on.progress) on.progress(d);
      });
      es.addEventListener("status", (e) => {
        const d = JSON.parse(e.data);
        if (d.status) this.status = d.status;
        if (d.error) this.message = d.error;
      });
      es.addEventListener("end", (e) => {
        const job = JSON.parse(e.data);
        es.close();
        this.source = null;
        this.busy = false;
        this.status = job.status;
        if (job.progress && job.progress.total != null) {
          this.done = job.progress.done;
          this.total = job.progress.total;
        }
        this.message = job.status === "succeeded" ? "done" : (job.error && job.error.message) || job.status;
        if (job.status === "failed" || job.status === "dead") this.error = this.message;
        if (on.end) on.end(job);
      });
      es.onerror = () => {
        // the browser reconnects on its own unless the stream was closed for good
        if (es.readyState === EventSource.CLOSED) {
          this.busy = false;
          this.error = "Lost the connection to the progress stream; see the Jobs page.";
        }
      };
    },
    async send(url, init) {
      this.error = "";
      try {
        const resp = await fetch(url, init);
        let body = null;
        try { body = await resp.json(); } catch (e) { body = null; }
        if (!resp.ok) { this.error = apiError(body, resp.status); return null; }
        return body;
      } catch (e) {
        this.error = "Could not reach the server: " + e;
        return null;
      }
    },
  };
}

/* Import panel: upload a zip or name a server folder, then follow the job over SSE. */
function importer(opts) {
  return Object.assign(jobFollower(), {
    panel: false,
    job: null,
    reset() {
      this.error = "";
      this.job = null;
      this.status = "";
      this.done = 0;
      this.total = 0;
      this.message = "";
      const report = document.getElementById("import-report");
      if (report) report.innerHTML = "";
    },
    async start(url, init) {
      this.reset();
      this.busy = true;
      this.status = "sending";
      const body = await this.send(url, init);
      if (!body || !body.job) {
        if (body) this.error = apiError(body, 200);
        this.busy = false;
        this.status = "";
        return;
      }
      this.job = body.job;
      this.status = body.job.status;
      this.track(body.job.id, {
        end: () => {
          htmx.ajax("GET", opts.base + "/imports/" + body.job.id, { target: "#import-report", swap: "innerHTML" });
          // the filter form reloads the grid (and its counts) with the current filters
          htmx.ajax("GET", location.pathname + location.search, { target: "#grid", swap: "outerHTML" });
          refreshCounts(opts.base);
        },
      });
    },
    upload(ev) {
      const form = ev.target;
      const data = new FormData();
      const file = form.querySelector("input[type=file]").files[0];
      if (!file) { this.error = "Choose a .zip file first."; return; }
      data.append("file", file);
      data.append("project", opts.project);
      const fmt = form.querySelector("select[name=format]").value;
      if (fmt) data.append("format", fmt);
      this.start("/api/v1/imports/upload", { method: "POST", body: data });
    },
    fromFolder(ev) {
      const form = ev.target;
      const body = {
        project: opts.project,
        source: form.querySelector("[name=source]").value.trim(),
        mode: form.querySelector("[name=mode]").value,
      };
      const fmt = form.querySelector("[name=format]").value;
      if (fmt) body.format = fmt;
      this.start("/api/v1/imports", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    },
  });
}

/* After an import the header counts and the class filter change: fetch the page and copy them over. */
async function refreshCounts(base) {
  try {
    const resp = await fetch(location.pathname + location.search);
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    for (const sel of ["#project-meta", "#f-label", "#f-subset"]) {
      const fresh = doc.querySelector(sel);
      const here = document.querySelector(sel);
      if (fresh && here) here.innerHTML = fresh.innerHTML;
    }
  } catch (e) { /* counts stay as they were */ }
}

/* Split page: three ratio sliders that always sum to 1. */
function ratioSliders(initial) {
  return {
    r: { train: initial[0], val: initial[1], test: initial[2] },
    set(key, value) {
      value = Math.max(0, Math.min(1, Math.round(parseFloat(value) * 100) / 100));
      const others = Object.keys(this.r).filter((k) => k !== key);
      const rest = others.reduce((a, k) => a + this.r[k], 0);
      const left = Math.round((1 - value) * 100) / 100;
      let first = rest > 0 ? Math.round(((this.r[others[0]] / rest) * left) * 100) / 100 : Math.round((left / 2) * 100) / 100;
      first = Math.min(first, left);
      this.r[key] = value;
      this.r[others[0]] = first;
      this.r[others[1]] = Math.round((left - first) * 100) / 100;
    },
    fmt(v) { return v.toFixed(2); },
    joined() { return [this.r.train, this.r.val, this.r.test].map((v) => v.toFixed(2)).join(","); },
  };
}

/* Charts: any <canvas data-chart='{"labels":…,"datasets":…}'> swapped in becomes a stacked bar chart. */
const chartColours = ["#4f46e5", "#0ea5e9", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#14b8a6", "#f97316"];
function initCharts(root) {
  if (typeof Chart === "undefined") return;
  root.querySelectorAll("canvas[data-chart]").forEach((el) => {
    if (el._chart) return;
    const spec = JSON.parse(el.dataset.chart);
    spec.datasets.forEach((d, i) => { d.backgroundColor = chartColours[i % chartColours.length]; d.borderRadius = 3; });
    el._chart = new Chart(el, {
      type: "bar",
      data: spec,
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { position: "bottom" } },
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } },
      },
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  initCharts(document);
  document.body.addEventListener("htmx:afterSettle", (e) => initCharts(e.target));
  document.body.addEventListener("htmx:afterSwap", (e) => {
    const dlg = e.target.closest && e.target.closest("dialog");
    if (dlg && !dlg.open) dlg.showModal();
  });
  document.body.addEventListener("htmx:responseError", (e) => {
    showToast("Server error (HTTP " + e.detail.xhr.status + "). See the server log.");
  });
  document.body.addEventListener("htmx:sendError", () => showToast("Could not reach the server."));
  document.querySelectorAll("dialog").forEach((dlg) => {
    // a click on the backdrop (outside the dialog box) closes it
    dlg.addEventListener("click", (e) => { if (e.target === dlg) dlg.close(); });
  });
});

function showToast(text) {
  let box = document.getElementById("toast");
  if (!box) {
    box = document.createElement("div");
    box.id = "toast";
    box.className = "toast";
    box.setAttribute("role", "alert");
    document.body.appendChild(box);
  }
  box.textContent = text;
  box.classList.add("show");
  setTimeout(() => box.classList.remove("show"), 5000);
}
