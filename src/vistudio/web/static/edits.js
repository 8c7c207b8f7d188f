/* Dataset page edits (no build step; uses apiError and refreshCounts from app.js).
   sampleEditor: tick tiles in the grid (a box on each; Shift-click ticks the range from the box
   clicked last, in grid order), or every sample matching the filters, then tag or label them, and
   undo or redo. detailEditor: the sample detail's tags, label and history. Every call says
   x-vistudio-client: web, so that the history names the web pages as the actor. */
"use strict";

const EDIT_HEADERS = { "Content-Type": "application/json", "x-vistudio-client": "web" };

async function editCall(method, url, body) {
  try {
    const resp = await fetch(url, {
      method: method,
      headers: EDIT_HEADERS,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { ok: resp.ok, status: resp.status, data: data, error: resp.ok ? "" : capitalised(apiError(data, resp.status)) };
  } catch (e) {
    return { ok: false, status: 0, data: null, error: "Could not reach the server: " + e };
  }
}

function capitalised(text) { return text ? text.charAt(0).toUpperCase() + text.slice(1) : text; }
function fmtCount(n) { return Number(n || 0).toLocaleString("en-US"); }
function samplesText(n) { return fmtCount(n) + (n === 1 ? " sample" : " samples"); }
function quoted(name) { return "“" + name + "”"; }

/* After an edit: the grid again with its filters (the page's own address, as the filter form asks
   for it), and the counts and tag lists beside it. */
function refreshEditedGrid() {
  const url = new URL(location.href);
  url.searchParams.delete("sample");
  htmx.ajax("GET", url.pathname + url.search, { target: "#grid", swap: "outerHTML" });
  refreshCounts();
}

function gridTiles() {
  return [...document.querySelectorAll("#grid .tile[data-sample-id]")];
}

function sampleEditor(opts) {
  // outside Alpine's reactive state: a selection may hold thousands of ids
  const ids = new Set();   // the ticked samples' ids (text), when not "all matching"
  let anchor = null;        // the sample whose box was clicked last: where a Shift-click range starts
  let grid = null;          // the #grid element seen last (a new one: the grid was swapped)
  let filterKey = null;     // its filters (data-filter); others clear the selection
  const api = "/api/v1/projects/" + encodeURIComponent(opts.project);
  return {
    count: 0,
    all: false,        // every sample matching `filter` is selected
    filter: null,
    total: 0,
    busy: false,
    msg: "",
    err: "",
    undoId: null,      // the change the message's Undo takes back
    redoId: null,
    tagName: "",
    labelName: "",
    init() {
      const root = this.$el;
      const select = document.getElementById("edit-label");
      if (select) this.labelName = select.value;
      this.adopt();
      root.addEventListener("click", (e) => this.boxClicked(e));
      // Shift-click would select the text between the two boxes
      root.addEventListener("mousedown", (e) => {
        if (e.shiftKey && e.target.matches && e.target.matches(".tile-check")) e.preventDefault();
      });
      // the page-wide listeners end with this component (a history restore brings a new one)
      const stop = new AbortController();
      const live = () => {
        if (!root.isConnected) stop.abort();
        return root.isConnected;
      };
      // new tiles (Load more) or a new grid (filters, a refresh after an edit): once per swap
      let queued = false;
      const swapped = () => {
        if (queued || !live()) return;
        queued = true;
        Promise.resolve().then(() => { queued = false; this.adopt(); });
      };
      for (const name of ["htmx:afterSettle", "htmx:load"]) {
        document.body.addEventListener(name, swapped, { signal: stop.signal });
      }
      document.addEventListener("keydown", (e) => {
        if (e.key !== "Escape" || !this.count || !live() || document.querySelector("dialog[open]")) return;
        if (isTyping(e.target)) return;
        this.clear();
      }, { signal: stop.signal });
    },
    adopt() {
      const g = document.getElementById("grid");
      if (!g) return;
      if (g !== grid) {
        const key = g.dataset.filter == null ? "" : g.dataset.filter;
        if (grid !== null && key !== filterKey) this.clear();
        grid = g;
        filterKey = key;
        this.total = parseInt(g.dataset.total || "0", 10);
      }
      this.paint();
    },
    paint() {
      for (const tile of gridTiles()) {
        const on = this.all || ids.has(tile.dataset.sampleId);
        tile.classList.toggle("is-selected", on);
        const box = tile.querySelector(".tile-check");
        if (box) box.checked = on;
      }
      this.count = this.all ? this.total : ids.size;
    },
    boxClicked(e) {
      const box = e.target.closest && e.target.closest(".tile-check");
      if (!box) return;
      const id = box.closest(".tile").dataset.sampleId;
      const on = box.checked;  // the click has toggled it already
      const order = gridTiles().map((t) => t.dataset.sampleId);
      if (this.all) {
        // out of "all matching" (the API takes a filter or ids, not a filter less some ids): the
        // loaded tiles stay ticked, and this one goes as clicked
        this.all = false;
        this.filter = null;
        order.forEach((sid) => ids.add(sid));
      }
      const from = anchor === null ? -1 : order.indexOf(anchor);
      const to = order.indexOf(id);
      if (e.shiftKey && from >= 0 && to >= 0) {
        for (let i = Math.min(from, to); i <= Math.max(from, to); i++) {
          if (on) ids.add(order[i]);
          else ids.delete(order[i]);
        }
      } else if (on) ids.add(id);
      else ids.delete(id);
      anchor = id;
      this.paint();
    },
    selectAll() {
      const g = document.getElementById("grid");
      if (!g || g.dataset.filter == null) return;
      this.filter = JSON.parse(g.dataset.filter);
      this.all = true;
      ids.clear();
      this.paint();
    },
    clear() {
      ids.clear();
      anchor = null;
      this.all = false;
      this.filter = null;
      this.paint();
    },
    fmt: fmtCount,
    selectedText() {
      return this.all ? "All " + fmtCount(this.total) + " matching samples selected" : fmtCount(this.count) + " selected";
    },
    selection() {
      return this.all ? { filter: this.filter } : { sample_ids: [...ids].map(Number) };
    },
    async call(path, body) {
      this.busy = true;
      this.err = "";
      const r = await editCall("POST", api + path, body);
      this.busy = false;
      if (!r.ok) {
        this.err = r.error;
        return null;
      }
      return r.data;
    },
    edited(result, text) {
      this.msg = text;
      this.undoId = result.change_id;
      this.redoId = null;
      if (this.all) this.clear();  // the samples matching the filters may be others now
      if (result.change_id) refreshEditedGrid();
    },
    async editTags(op) {
      const name = this.tagName.trim();
      if (!name) {
        this.err = "Type a tag first.";
        document.getElementById("edit-tag").focus();
        return;
      }
      const body = Object.assign(this.selection(), op === "add" ? { add: [name] } : { remove: [name] });
      const r = await this.call("/tags", body);
      if (!r) return;
      const rest = r.selected - r.changed;
      let text;
      if (!r.changed) {
        text = op === "add" ? "Nothing to change: the selected samples already have " + quoted(name) + "."
          : "Nothing to change: none of the selected samples has " + quoted(name) + ".";
      } else if (op === "add") {
        text = "Tagged " + samplesText(r.changed) + " " + quoted(name) + (rest ? " (" + fmtCount(rest) + " already had it)." : ".");
      } else {
        text = "Removed " + quoted(name) + " from " + samplesText(r.changed) + (rest ? " (" + fmtCount(rest) + " did not have it)." : ".");
      }
      this.edited(r, text);
    },
    async setLabel() {
      const name = this.labelName;
      if (!name) return;
      const r = await this.call("/labels", Object.assign(this.selection(), { set: [name] }));
      if (!r) return;
      const rest = r.selected - r.changed;
      const text = !r.changed ? "Nothing to change: the selected samples are labelled " + quoted(name) + " already."
        : "Labelled " + samplesText(r.changed) + " " + quoted(name) + (rest ? " (" + fmtCount(rest) + " already were)." : ".");
      this.edited(r, text);
    },
    /* the message's Undo and Redo: that change, by its id */
    async undoChange() {
      const id = this.undoId;
      const r = await this.call("/undo", { change_id: id });
      if (!r) return;
      this.msg = "Change " + id + " undone (" + samplesText(r.changed) + ").";
      this.undoId = null;
      this.redoId = id;
      refreshEditedGrid();
    },
    async redoChange() {
      const id = this.redoId;
      const r = await this.call("/redo", { change_id: id });
      if (!r) return;
      this.msg = "Change " + id + " redone (" + samplesText(r.changed) + ").";
      this.redoId = null;
      this.undoId = id;
      refreshEditedGrid();
    },
    /* the bar's Undo and Redo: the project's last edit (or undo) still in effect, whoever made it */
    async revert(word) {
      const r = await this.call("/" + word, {});
      if (!r) return;
      const id = r.request && r.request[word];
      this.msg = "Change " + id + (word === "undo" ? " undone (" : " redone (") + samplesText(r.changed) + ").";
      this.undoId = word === "redo" ? id : null;
      this.redoId = word === "undo" ? id : null;
      refreshEditedGrid();
    },
  };
}

let focusDetailTag = false;  // after adding a tag, the re-rendered detail's tag box takes the focus

function detailEditor(opts) {
  let root = null;  // the detail (this.$el is the element whose directive calls a method)
  return {
    busy: false,
    err: "",
    stale: false,   // a 409: the sample changed since the detail was rendered
    init() {
      root = this.$el;
      root.dataset.ready = "1";  // its handlers are bound: a freshly swapped detail can be used
      if (focusDetailTag) {
        focusDetailTag = false;
        // after htmx settled the swap: it focuses the [autofocus] close button first, then says htmx:load
        root.addEventListener("htmx:load", () => { if (this.$refs.tag) this.$refs.tag.focus(); }, { once: true });
      }
    },
    reload() {
      const dlg = root.closest("dialog[data-detail-url]");
      const target = dlg && dlg.querySelector(":scope > div");
      if (!target) return;
      htmx.ajax("GET", dlg.dataset.detailUrl.replace("{id}", encodeURIComponent(opts.id)), { target: target, swap: "innerHTML" });
    },
    async patch(body) {
      this.busy = true;
      this.err = "";
      this.stale = false;
      const r = await editCall("PATCH", "/api/v1/samples/" + encodeURIComponent(opts.id), body);
      this.busy = false;
      if (!r.ok) {
        this.err = r.error;
        const details = r.data && r.data.error && r.data.error.details;
        const now = details && details.current && details.current[String(opts.id)];
        if (r.status === 409 && now) {
          this.stale = true;
          this.err = "Not saved: this sample’s labels changed since they were loaded; they are now "
            + (now.length ? now.map(quoted).join(", ") : "none") + ".";
        }
        return false;
      }
      this.reload();
      refreshEditedGrid();
      return true;
    },
    async addTag() {
      const box = this.$refs.tag;
      const name = box.value.trim();
      if (!name) return;
      focusDetailTag = true;
      if (!(await this.patch({ add_tags: [name] }))) focusDetailTag = false;
    },
    removeTag(name) {
      this.patch({ remove_tags: [name] });
    },
    // the user's caption (empty: the model's shows again); kept over every model's run
    async saveCaption() {
      this.busy = true;
      this.err = "";
      const url = "/api/v1/samples/" + encodeURIComponent(opts.id) + "/caption";
      const r = await editCall("PUT", url, { text: this.$refs.caption.value });
      this.busy = false;
      if (!r.ok) {
        this.err = r.error;
        return;
      }
      this.reload();
    },
    async setLabel(value) {
      // the labels this detail shows: had they changed meanwhile, the edit is refused (409)
      const ok = await this.patch({ labels: value ? [value] : [], expected_labels: opts.labels });
      if (!ok) {
        const select = root.querySelector("#detail-label");
        if (select) select.selectedIndex = [...select.options].findIndex((o) => o.defaultSelected);
      }
    },
  };
}
