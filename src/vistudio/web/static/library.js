/* Library panel (Dataset page of library projects): add or remove folders, scan with live progress.
   Uses apiError and refreshCounts from app.js; the progress follows the job over SSE like the import. */
"use strict";

function libraryPanel(opts) {
  return {
    busy: false,
    error: "",
    job: null,
    status: "",
    done: 0,
    total: 0,
    message: "",
    source: null,
    lastGrid: 0,
    init() {
      // a scan started elsewhere (the CLI, another tab) is followed as if started here
      if (opts.active) {
        this.job = opts.active;
        this.status = opts.active.status;
        this.busy = true;
        this.follow(opts.active.id);
      }
    },
    pct() {
      if (!this.total) return this.busy ? 100 : 0;
      return Math.min(100, Math.round((100 * this.done) / this.total));
    },
    url(path) {
      return "/api/v1/library/" + encodeURIComponent(opts.project) + path;
    },
    async call(method, path, body) {
      this.error = "";
      const init = { method: method, headers: {} };
      if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      let resp;
      try {
        resp = await fetch(this.url(path), init);
      } catch (e) {
        this.error = "Could not reach the server: " + e;
        return null;
      }
      let data = null;
      try { data = await resp.json(); } catch (e) { data = null; }
      if (!resp.ok) {
        this.error = apiError(data, resp.status);
        return null;
      }
      return data;
    },
    async add(ev) {
      const input = ev.target.querySelector("[name=path]");
      const path = input.value.trim();
      if (!path) { this.error = "Type the folder's path first."; return; }
      if (await this.call("POST", "/roots", { paths: [path] })) {
        input.value = "";
        this.refresh();
      }
    },
    async remove(id, path) {
      const question = "Remove " + path + " from the library?\n\nIts photos leave this project. "
        + "The folder and its files are not touched.";
      if (!window.confirm(question)) return;
      if (await this.call("DELETE", "/roots/" + id)) {
        this.refresh();
        this.reloadGrid();
      }
    },
    async scan() {
      this.job = null;
      this.done = 0;
      this.total = 0;
      this.message = "";
      this.busy = true;
      this.status = "sending";
      const data = await this.call("POST", "/scan", {});
      if (!data || !data.job) {
        this.busy = false;
        this.status = "";
        return;
      }
      this.job = data.job;
      this.status = data.job.status;
      this.follow(data.job.id);
    },
    follow(jobId) {
      if (this.source) this.source.close();
      const es = new EventSource("/api/v1/jobs/" + jobId + "/events");
      this.source = es;
      es.addEventListener("progress", (e) => {
        const d = JSON.parse(e.data);
        this.done = d.done || 0;
        this.total = d.total || 0;
        this.message = d.message || "";
        // photos appear as soon as they are probed: refresh the grid now and then while it runs
        if (this.done && Date.now() - this.lastGrid > 3000) {
          this.lastGrid = Date.now();
          this.reloadGrid();
        }
      });
      es.addEventListener("status", (e) => {
        const d = JSON.parse(e.data);
        if (d.status) this.status = d.status;
        if (d.error) this.message = d.error;
      });
      es.addEventListener("end", (e) => {
        const d = JSON.parse(e.data);
        es.close();
        this.source = null;
        this.busy = false;
        this.status = d.status;
        if (d.progress && d.progress.total != null) {
          this.done = d.progress.done;
          this.total = d.progress.total;
        }
        this.message = d.status === "succeeded" ? "done" : (d.error && d.error.message) || d.status;
        this.refresh();
        this.reloadGrid();
      });
      es.onerror = () => {
        if (es.readyState === EventSource.CLOSED) {
          this.busy = false;
          this.error = "Lost the connection to the progress stream; see the Jobs page.";
        }
      };
    },
    async refresh() {
      // fetched directly rather than with htmx.ajax: htmx queues its requests and keeps only the
      // last one waiting, so this would be dropped behind a grid reload
      try {
        const resp = await fetch(opts.base + "/library", { headers: { "HX-Request": "true" } });
        const body = document.getElementById("library-body");
        if (body) body.innerHTML = await resp.text();
      } catch (e) {
        this.error = "Could not reach the server: " + e;
      }
    },
    reloadGrid() {
      htmx.ajax("GET", location.pathname + location.search, { target: "#grid", swap: "outerHTML" });
      refreshCounts(opts.base);
    },
  };
}
