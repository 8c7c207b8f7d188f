/* Library panel (Dataset page of library projects): add or remove folders, scan with live progress.
   Uses jobFollower and refreshCounts from app.js; the progress follows the job over SSE like the import. */
"use strict";

function libraryPanel(opts) {
  return Object.assign(jobFollower(), {
    job: null,
    lastGrid: 0,
    init() {
      // a scan started elsewhere (the CLI, another tab) is followed as if started here
      if (opts.active) {
        this.job = opts.active;
        this.status = opts.active.status;
        this.follow(opts.active.id);
      }
    },
    call(method, path, body) {
      const init = { method: method, headers: {} };
      if (body !== undefined) {
        init.headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
      return this.send("/api/v1/library/" + encodeURIComponent(opts.project) + path, init);
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
      this.track(jobId, {
        progress: () => {
          // photos appear as soon as they are probed: refresh the grid now and then while it runs
          if (this.done && Date.now() - this.lastGrid > 3000) {
            this.lastGrid = Date.now();
            this.reloadGrid();
          }
        },
        end: () => {
          this.refresh();
          this.reloadGrid();
        },
      });
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
  });
}
