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

/* After an import or an edit the header counts, the class and tag filters and the tags offered for
   tagging (edits.js) change: fetch the page and copy them over. */
async function refreshCounts(base) {
  try {
    const resp = await fetch(location.pathname + location.search);
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    for (const sel of ["#project-meta", "#f-label", "#f-subset", "#f-tag-field", "#edit-tag-list"]) {
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
    if (!dlg) return;
    const wasOpen = dlg.open;
    if (!dlg.open) dlg.showModal();
    detailShown(dlg, wasOpen);
  });
  document.body.addEventListener("htmx:responseError", (e) => {
    showToast("Server error (HTTP " + e.detail.xhr.status + "). See the server log.");
  });
  document.body.addEventListener("htmx:sendError", () => showToast("Could not reach the server."));
  setUpDialogs();
  // a history restore swaps in a fresh body: its dialogs need the same set-up
  document.body.addEventListener("htmx:historyRestore", setUpDialogs);
});

function setUpDialogs() {
  document.querySelectorAll("dialog").forEach((dlg) => {
    if (dlg._setUp) return;
    dlg._setUp = true;
    // a click on the backdrop (outside the dialog box) closes it
    dlg.addEventListener("click", (e) => { if (e.target === dlg) dlg.close(); });
    if (dlg.dataset.urlParam) dlg.addEventListener("close", () => detailClosed(dlg));
  });
  openDetailsOnLoad();
}

/* A page rendered for a detail's own address (/jobs?job=7) opens with that detail shown. */
function openDetailsOnLoad() {
  document.querySelectorAll("dialog[data-open-on-load]").forEach((dlg) => {
    const root = dlg.querySelector("[data-detail-id]");
    if (dlg.open) return;
    if (!root) {  // the address named an item that cannot be shown: say why, in the dialog
      dlg.showModal();
      return;
    }
    history.replaceState({ detail: dlg.dataset.urlParam, id: root.dataset.detailId, direct: true }, "", location.href);
    dlg.showModal();
    detailShown(dlg, true);
  });
}

/* Detail dialogs with their own address: <dialog data-url-param="sample" data-detail-url="…/{id}">
   whose content root carries data-detail-id. Opening one pushes ?sample=ID (a link to share; Back
   closes it); moving to the previous or next item replaces that entry, so one Back always returns
   to the list. With data-step-items (a selector for the list's items) and data-step-attr (the
   attribute holding an item's id), [data-step] buttons and the ←/→ keys walk the list in its order. */
function detailParamUrl(param, id) {
  const url = new URL(location.href);
  if (id == null) url.searchParams.delete(param);
  else url.searchParams.set(param, id);
  return url.pathname + url.search + url.hash;
}

function detailShown(dlg, wasOpen) {
  const param = dlg.dataset.urlParam;
  const root = dlg.querySelector("[data-detail-id]");
  if (!param || !root) return;
  const id = root.dataset.detailId;
  if (new URL(location.href).searchParams.get(param) !== id) {
    const here = history.state && history.state.detail === param ? history.state : null;
    const state = { detail: param, id: id, direct: !!(here && here.direct) };
    if (wasOpen && here) history.replaceState(state, "", detailParamUrl(param, id));
    else history.pushState(state, "", detailParamUrl(param, id));
  }
  updateStepButtons(dlg);
}

function detailClosed(dlg) {
  const param = dlg.dataset.urlParam;
  if (dlg._closedByHistory) { dlg._closedByHistory = false; return; }
  if (!new URL(location.href).searchParams.has(param)) return;
  // opened from the list: go back to the list's entry; opened from a shared link: drop the parameter
  const here = history.state;
  if (here && here.detail === param && !here.direct) history.back();
  else history.replaceState(null, "", detailParamUrl(param, null));
}

function loadDetail(dlg, id) {
  const target = dlg.querySelector(":scope > div");
  if (!dlg.dataset.detailUrl || !target) return;
  htmx.ajax("GET", dlg.dataset.detailUrl.replace("{id}", encodeURIComponent(id)), { target: target, swap: "innerHTML" });
}

function stepItems(dlg) {
  return dlg.dataset.stepItems ? [...document.querySelectorAll(dlg.dataset.stepItems)] : [];
}

function stepIndex(dlg) {
  const root = dlg.querySelector("[data-detail-id]");
  if (!root) return { items: [], at: -1 };
  const items = stepItems(dlg);
  const attr = dlg.dataset.stepAttr;
  return { items: items, at: items.findIndex((el) => el.getAttribute(attr) === root.dataset.detailId) };
}

function updateStepButtons(dlg) {
  const { items, at } = stepIndex(dlg);
  const more = document.querySelector(dlg.dataset.stepMore || "#no-more-items");
  dlg.querySelectorAll("[data-step]").forEach((b) => {
    const step = parseInt(b.dataset.step, 10);
    const next = at + step;
    b.disabled = at < 0 || next < 0 || (next >= items.length && !(step > 0 && more));
  });
}

function stepDetail(dlg, step) {
  const { items, at } = stepIndex(dlg);
  if (at < 0) return;
  const next = items[at + step];
  if (next) {
    loadDetail(dlg, next.getAttribute(dlg.dataset.stepAttr));
    return;
  }
  // past the last loaded item: load the next page of the list, then step into it
  const more = step > 0 && document.querySelector(dlg.dataset.stepMore || "#no-more-items");
  if (!more) return;
  document.body.addEventListener("htmx:afterSettle", () => stepDetail(dlg, step), { once: true });
  more.click();
}

window.addEventListener("popstate", () => {
  document.querySelectorAll("dialog[data-url-param]").forEach((dlg) => {
    const id = new URL(location.href).searchParams.get(dlg.dataset.urlParam);
    const root = dlg.querySelector("[data-detail-id]");
    if (id && !(dlg.open && root && root.dataset.detailId === id)) loadDetail(dlg, id);
    else if (!id && dlg.open) {
      dlg._closedByHistory = true;
      dlg.close();
    }
  });
});

function isTyping(el) {
  return !!el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
}

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
  const dlg = document.querySelector("dialog[open][data-step-items]");
  if (dlg && (e.key === "ArrowLeft" || e.key === "ArrowRight") && !isTyping(e.target)) {
    e.preventDefault();
    stepDetail(dlg, e.key === "ArrowLeft" ? -1 : 1);
    return;
  }
  /* "/" jumps to the page's search box (input[data-shortcut="/"]). While typing in another box the
     key types a "/" as usual; in the search box itself, when it is empty or wholly selected (where
     the shortcut leaves it), pressing it again must not type a "/" there either. */
  if (e.key !== "/" || document.querySelector("dialog[open]")) return;
  const box = document.querySelector("input[data-shortcut='/']");
  if (!box) return;
  if (e.target === box) {
    const all = box.value === "" || (box.selectionStart === 0 && box.selectionEnd === box.value.length);
    if (all) { e.preventDefault(); box.select(); }
    return;
  }
  if (isTyping(e.target)) return;
  e.preventDefault();
  box.focus();
  box.select();
});

document.addEventListener("click", (e) => {
  const btn = e.target.closest && e.target.closest("dialog [data-step]");
  if (btn && !btn.disabled) stepDetail(btn.closest("dialog"), parseInt(btn.dataset.step, 10));
});

/* Scroll boxes say which side hides more (data-more="right", "below" or both; app.css fades it). */
function markScrollHints(root) {
  (root || document).querySelectorAll(".table-wrap, .scroll-box").forEach(markScrollHint);
}
function markScrollHint(box) {
  const more = [];
  if (box.scrollLeft + box.clientWidth < box.scrollWidth - 2) more.push("right");
  if (box.scrollTop + box.clientHeight < box.scrollHeight - 2) more.push("below");
  if (more.length) box.setAttribute("data-more", more.join(" "));
  else box.removeAttribute("data-more");
}
document.addEventListener("DOMContentLoaded", () => {
  markScrollHints(document);
  document.body.addEventListener("htmx:afterSettle", () => markScrollHints(document));
  window.addEventListener("resize", () => markScrollHints(document));
  // scroll events do not bubble: listen in the capture phase for every box at once
  document.addEventListener("scroll", (e) => {
    const box = e.target;
    if (box.matches && box.matches(".table-wrap, .scroll-box")) markScrollHint(box);
  }, true);
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

/* Saved views (Dataset page): save the filter form's values under a name, then go to the view. */
function savedViews(opts) {
  return Object.assign(jobFollower(), {
    async save(ev) {
      const name = ev.target.querySelector("[name=name]").value.trim();
      const form = document.getElementById("filters");
      const query = {};
      for (const [key, value] of new FormData(form).entries()) {
        if (typeof value === "string" && value.trim()) query[key] = value.trim();
      }
      if ("person" in query) {
        // views keep the grid's other filters only: better say so than save a view that shows more
        this.error = "A saved view cannot keep the People filter yet: remove the people to save the other filters.";
        return;
      }
      this.busy = true;
      const body = await this.send("/api/v1/projects/" + encodeURIComponent(opts.project) + "/views", {
        method: "POST",
        headers: { "Content-Type": "application/json", "x-vistudio-client": "web" },
        body: JSON.stringify({ name: name, query: query }),
      });
      this.busy = false;
      if (body && body.view) location.href = body.view.url;
    },
  });
}
