/* Curation pages (no build step; uses jobFollower, apiError, isTyping and showToast from app.js).
   labelErrors: the Likely label errors page — start the search and follow its job, walk the list
   with the keyboard, accept (relabel), reject, and undo the last accept, all through the API.
   evalTagger: the Evaluate grid's "Tag these images" — tags every result that passes the grid's
   filters (not only the page shown), with Undo. Every call says x-vistudio-client: web, so that
   the edit history names the web pages as the actor. */
"use strict";

const CURATION_HEADERS = { "Content-Type": "application/json", "x-vistudio-client": "web" };

async function curationCall(method, url, body) {
  try {
    const resp = await fetch(url, {
      method: method,
      headers: CURATION_HEADERS,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    const error = resp.ok ? "" : apiError(data, resp.status);
    return { ok: resp.ok, status: resp.status, data: data, error: error && error.charAt(0).toUpperCase() + error.slice(1) };
  } catch (e) {
    return { ok: false, status: 0, data: null, error: "Could not reach the server: " + e };
  }
}

function curationQuoted(name) { return "“" + name + "”"; }
function curationCount(n, noun) {
  return Number(n || 0).toLocaleString("en-US") + " " + noun + (n === 1 ? "" : "s");
}
/* A sample's name as a message says it: its file name, not its folders. */
function curationShort(name) {
  const parts = String(name || "").split("/");
  return parts[parts.length - 1];
}

function labelErrors(opts) {
  return Object.assign(jobFollower(), {
    searched: !!opts.searched,
    msg: "",
    msgKind: "ok",
    undoable: null,   // the last accept: { changeId, name, given, suggested }
    more: false,
    moreText: "",
    loading: false,
    pending: false,   // a decision on its way: keys wait for it
    init() {
      const root = this.$el;
      if (opts.jobId) {
        this.status = opts.status || "running";
        this.track(opts.jobId, { end: (job) => this.finished(job) });
      }
      this.sync();
      root.addEventListener("click", (e) => {
        const button = e.target.closest && e.target.closest("[data-decide]");
        const row = e.target.closest && e.target.closest(".le-row");
        if (row) this.point(row, false);
        if (button) this.decide(row, button.dataset.decide === "accept");
      });
      // the page-wide listeners end with this component (a history restore brings a new one)
      const stop = new AbortController();
      const live = () => {
        if (!root.isConnected) stop.abort();
        return root.isConnected;
      };
      document.body.addEventListener("htmx:afterSettle", () => { if (live()) this.sync(); }, { signal: stop.signal });
      document.addEventListener("keydown", (e) => { if (live()) this.key(e); }, { signal: stop.signal });
    },
    list() { return document.getElementById("le-list"); },
    rows() {
      const list = this.list();
      return list ? [...list.querySelectorAll(".le-row:not(.is-leaving)")] : [];
    },
    current() { return this.rows().find((r) => r.classList.contains("is-current")) || null; },
    /* After a swap or a change of the rows: Load more's state, and a row for the keys. */
    sync() {
      const list = this.list();
      const shown = list ? list.querySelectorAll(".le-row:not(.is-leaving)").length : 0;
      const total = list ? parseInt(list.dataset.total || "0", 10) : 0;
      this.more = !!list && shown < total;
      this.moreText = this.more ? "(" + (total - shown).toLocaleString("en-US") + " more)" : "";
      if (!this.current()) {
        const rows = this.rows();
        const open = rows.find((r) => !r.classList.contains("is-decided")) || rows[0];
        if (open) open.classList.add("is-current");
      }
    },
    point(row, scroll) {
      if (!row) return;
      this.rows().forEach((r) => r.classList.toggle("is-current", r === row));
      if (scroll) {
        row.scrollIntoView({ block: "nearest" });
        row.focus({ preventScroll: true });
      }
    },
    move(step) {
      const rows = this.rows();
      if (!rows.length) return;
      const at = rows.indexOf(this.current());
      const next = at < 0 ? 0 : Math.max(0, Math.min(rows.length - 1, at + step));
      this.point(rows[next], true);
      if (step > 0 && at === rows.length - 1 && this.more) this.loadMore();
    },
    key(e) {
      if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
      if (isTyping(e.target) || document.querySelector("dialog[open]")) return;
      const k = e.key;
      if (k === "j" || k === "ArrowDown") { e.preventDefault(); this.move(1); }
      else if (k === "k" || k === "ArrowUp") { e.preventDefault(); this.move(-1); }
      else if (k === "a" || k === "r") { e.preventDefault(); this.decide(this.current(), k === "a"); }
      else if (k === "u") { e.preventDefault(); this.undo(); }
    },
    say(text, kind) {
      this.msg = text;
      this.msgKind = kind || "ok";
    },
    setCount(key, delta) {
      document.querySelectorAll("#le-body [data-count=" + key + "]").forEach((el) => {
        const n = parseInt(el.textContent.replace(/,/g, ""), 10) || 0;
        el.textContent = Math.max(0, n + delta).toLocaleString("en-US");
      });
    },
    async decide(row, accept) {
      if (!row || this.pending || row.classList.contains("is-decided")) return;
      this.pending = true;
      row.classList.add("is-busy");
      const r = await curationCall("POST", opts.api + "/" + encodeURIComponent(row.dataset.sampleId), { accept: accept });
      this.pending = false;
      row.classList.remove("is-busy");
      const name = curationShort(row.dataset.name);
      if (!r.ok) { this.say(r.error, "error"); return; }
      if (accept) {
        this.undoable = {
          changeId: r.data.change_id, sampleId: row.dataset.sampleId, name: name,
          given: row.dataset.given, suggested: row.dataset.suggested,
        };
        this.say("Relabelled " + name + " to " + curationQuoted(row.dataset.suggested) + ".");
      } else {
        this.say("Kept " + curationQuoted(row.dataset.given) + " for " + name + ".");
      }
      this.showUndo = accept;
      this.setCount("decided", 1);
      const list = this.list();
      if (list && list.dataset.decided === "true") {
        // every flagged image is listed: the row stays, with its decision
        row.classList.add("is-decided");
        const actions = row.querySelector(".cur-actions");
        if (actions) {
          actions.innerHTML = "";
          const badge = document.createElement("span");
          badge.className = "badge le-decision le-" + (accept ? "accepted" : "rejected");
          badge.dataset.decision = accept ? "accepted" : "rejected";
          badge.textContent = accept ? "relabelled" : "kept";
          actions.appendChild(badge);
        }
        this.move(1);
        return;
      }
      // the to-do list: the row leaves; the next one becomes the current row
      const rows = this.rows();
      const at = rows.indexOf(row);
      const next = rows[at + 1] || rows[at - 1] || null;
      row.classList.add("is-leaving");
      if (list) list.dataset.total = String(Math.max(0, parseInt(list.dataset.total || "1", 10) - 1));
      this.setCount("listed", -1);
      if (next) this.point(next, true);
      setTimeout(() => {
        row.remove();
        this.sync();
        if (!this.rows().length) {
          if (this.more) this.loadMore();
          else this.refresh();
        }
      }, 180);
    },
    async undo() {
      const u = this.undoable;
      if (!u || this.pending) return;
      this.pending = true;
      const r = await curationCall("POST", opts.undoUrl, { change_id: u.changeId });
      this.pending = false;
      if (!r.ok) { this.say(r.error, "error"); return; }
      this.undoable = null;
      this.showUndo = false;
      this.say("Undone: " + u.name + " is labelled " + curationQuoted(u.given) + " again.");
      // its suggestion is open again: the list shows it back among those to decide
      this.refresh();
    },
    async loadMore() {
      const list = this.list();
      if (!list || this.loading) return;
      this.loading = true;
      try {
        const shown = list.querySelectorAll(".le-row").length;
        const resp = await fetch(list.dataset.rowsUrl + "&offset=" + shown);
        if (!resp.ok) { this.say("Could not load more images (HTTP " + resp.status + ").", "error"); return; }
        const html = await resp.text();
        const seen = new Set([...list.querySelectorAll(".le-row")].map((r) => r.dataset.sampleId));
        const box = document.createElement("template");
        box.innerHTML = html;
        box.content.querySelectorAll(".le-row").forEach((r) => { if (!seen.has(r.dataset.sampleId)) list.appendChild(r); });
        const total = resp.headers.get("X-Total");
        if (total !== null) list.dataset.total = total;
      } catch (e) {
        this.say("Could not reach the server: " + e, "error");
      } finally {
        this.loading = false;
        this.sync();
      }
    },
    bodyUrl() {
      const el = document.querySelector("#le-body [data-body-url]");
      return el ? el.dataset.bodyUrl : opts.bodyUrl;
    },
    refresh() {
      htmx.ajax("GET", this.bodyUrl(), { target: "#le-body", swap: "innerHTML" });
    },
    async search(form) {
      this.done = 0; this.total = 0; this.message = ""; this.status = "sending";
      const folds = parseInt(form.querySelector("[name=folds]").value, 10);
      const body = await this.send(opts.api, {
        method: "POST",
        headers: CURATION_HEADERS,
        body: JSON.stringify({
          checkpoint: form.querySelector("[name=checkpoint]").value,
          ...(isFinite(folds) ? { folds: folds } : {}),
        }),
      });
      if (!body) { this.status = ""; return; }
      this.status = body.job.status;
      this.track(body.job.id, { end: (job) => this.finished(job) });
    },
    finished(job) {
      // a search that went well says so in the summary it brings: the progress box closes
      if (job.status === "succeeded") { this.searched = true; this.status = ""; }
      // a new search replaces the results: the last accept is still undoable from the Dataset
      this.undoable = null;
      this.showUndo = false;
      this.msg = "";
      this.refresh();
    },
    showUndo: false,
  });
}

/* Small thumbnails (a 32-pixel digit) drawn at 128 px stay sharp. */
document.addEventListener("load", (e) => {
  const img = e.target;
  if (img && img.classList && img.classList.contains("cur-img") && img.naturalWidth && img.naturalWidth < img.clientWidth) {
    img.classList.add("pixelated");
  }
}, true);

/* The Evaluate grid's "Tag these images": opts = { url, undoUrl, datasetUrl, filters }. */
function evalTagger(opts) {
  return {
    name: "review",
    total: opts.total || 0,
    busy: false,
    msg: "",
    err: "",
    changeId: null,
    showUrl: "",
    async tag() {
      const name = this.name.trim();
      if (!name) { this.err = "Give the tag a name."; return; }
      this.busy = true; this.err = ""; this.msg = "";
      const r = await curationCall("POST", opts.url, { add: [name], ...opts.filters });
      this.busy = false;
      if (!r.ok) { this.err = r.error; return; }
      this.changeId = r.data.change_id;
      this.showUrl = opts.datasetUrl + "?tag=" + encodeURIComponent(name);
      this.msg = r.data.changed
        ? "Tagged " + curationCount(r.data.changed, "image") + " " + curationQuoted(name) + "."
        : "These images all have " + curationQuoted(name) + " already.";
    },
    async undo() {
      if (!this.changeId || this.busy) return;
      this.busy = true;
      const r = await curationCall("POST", opts.undoUrl, { change_id: this.changeId });
      this.busy = false;
      if (!r.ok) { this.err = r.error; return; }
      this.changeId = null;
      this.showUrl = "";
      this.msg = "Undone: the tag was taken off again.";
    },
  };
}
