/* Embedding map page (templates/map.html): the Alpine component round the scatter (scatter.js) —
   which map, computing it (a job followed over SSE, see jobFollower in app.js), colours and legend,
   the tooltip and the clicked image, the selection and its tagging (one undoable change).
   Keys (no text field focused): L lasso, B box, V pan, F fit, Esc clears the selection. */
"use strict";

function mapPage(cfg) {
  let map = null;  // the ScatterMap: kept out of Alpine's reactive proxies (100,000 points)
  let data = null;  // the API's last answer
  const names = new Map();  // sample id → {name, labels}, for the tooltip
  let nameTimer = 0;
  const known = JSON.parse((document.getElementById("map-classes") || {}).textContent || "{}");
  const knownNames = known.names || [];
  const knownColours = known.colours || [];
  const api = (path) => "/api/v1/projects/" + encodeURIComponent(cfg.project) + path;

  return Object.assign(jobFollower(), {
    meta: cfg.meta || null,
    ready: !!cfg.ready,
    searchable: !!cfg.searchable,
    method: cfg.meta && ["umap", "pca"].includes(cfg.meta.method) ? cfg.meta.method : "auto",
    state: cfg.computed ? "loading" : "empty",
    colourBy: "class",
    colourTag: (cfg.tags || [])[0] || "",
    colourOutcome: (cfg.evaluated || [])[0] || "",
    tagList: (cfg.tags || []).slice(),
    legend: [],
    tool: "pan",
    zoom: 100,
    selected: 0,
    tagName: "",
    editing: false,
    msg: "",
    err: "",
    undoId: null,
    gridUrl: "",
    lastTag: "",
    point: null,

    init() {
      map = new ScatterMap(this.$refs.canvas, {
        selection: (n) => { this.selected = n; },
        view: (z) => { this.zoom = Math.round(z * 100); },
        hover: (i, sx, sy, changed) => this.showTip(i, sx, sy, changed),
        pick: (i) => this.pick(i),
      });
      window.vistudioMap = map;
      document.addEventListener("keydown", (e) => this.onKey(e));
      // a map being recomputed: show the one there is meanwhile
      if (cfg.computed) this.load();
      if (cfg.job) this.follow(cfg.job);
    },

    chooseSource(value) {
      const q = new URLSearchParams();
      if (value === "embeddings") q.set("source", "embeddings");
      else { q.set("source", "experiment"); q.set("experiment", value.slice("experiment:".length)); }
      location.href = cfg.base + "/map?" + q.toString();
    },

    query(extra) {
      const q = new URLSearchParams({ source: cfg.source });
      if (cfg.source === "experiment") q.set("experiment", cfg.experiment);
      for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
      return api("/map?" + q.toString());
    },

    async fetchJson(url, init) {
      const resp = await fetch(url, init);
      let body = null;
      try { body = await resp.json(); } catch (e) { body = null; }
      return { ok: resp.ok, status: resp.status, body: body };
    },

    /* ---- computing and loading ---- */

    async compute() {
      const body = { source: cfg.source, method: this.method };
      if (cfg.source === "experiment") body.experiment = cfg.experiment;
      const got = await this.send(api("/map"), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (got && got.job) this.follow(got.job.id);
    },

    follow(jobId) {
      this.message = "Queued…";
      this.track(jobId, {
        end: (job) => {
          if (job.status !== "succeeded") return;
          this.meta = Object.assign({}, job.result || {}, { computed_at: "just now" });
          this.load();
        },
      });
    },

    async load() {
      this.state = "loading";
      const extra = this.colourExtra();
      let got;
      try {
        got = await this.fetchJson(this.query(extra));
      } catch (e) {
        this.state = "empty";
        this.error = "Could not reach the server: " + e;
        return;
      }
      if (!got.ok && extra && got.status !== 404) {
        // the colouring asked for is gone (a tag removed, an evaluation reset): colour by class
        this.err = apiError(got.body, got.status);
        this.colourBy = "class";
        return this.load();
      }
      if (!got.ok) {
        this.state = "empty";
        if (got.status !== 404) this.error = apiError(got.body, got.status);
        return;
      }
      data = got.body;
      if (data.tagged) data.tag = this.colourTag;
      if (data.outcome) data.outcomeOf = this.colourOutcome;
      map.setData(data.ids, data.x, data.y);
      if (this.meta) this.meta.points = data.points;
      this.state = data.points ? "ready" : "none";
      this.applyColours();
    },

    colourExtra() {
      if (this.colourBy === "tag" && this.colourTag) return { tag: this.colourTag };
      if (this.colourBy === "outcome" && this.colourOutcome) return { outcome: this.colourOutcome };
      return null;
    },

    /** Colour by another thing: class colours are in hand; a tag or an outcome asks the server. */
    async recolour() {
      if (!data) return;
      const extra = this.colourExtra();
      const have = this.colourBy === "tag" ? data.tagged && data.tag === this.colourTag
        : this.colourBy === "outcome" ? data.outcome && data.outcomeOf === this.colourOutcome : true;
      if (extra && !have) {
        const got = await this.fetchJson(this.query(extra));
        if (!got.ok) {
          this.err = apiError(got.body, got.status);
          return;
        }
        const fresh = got.body;
        const same = fresh.ids.length === data.ids.length && fresh.ids.every((id, k) => id === data.ids[k]);
        if (!same) {  // the map changed meanwhile (recomputed, images deleted): take it whole
          data = fresh;
          map.setData(data.ids, data.x, data.y);
          this.state = data.points ? "ready" : "none";
        }
        if (fresh.tagged) { data.tagged = fresh.tagged; data.tag = this.colourTag; }
        if (fresh.outcome) { data.outcome = fresh.outcome; data.outcomeOf = this.colourOutcome; }
      }
      this.applyColours();
    },

    applyColours() {
      if (!data) return;
      const n = data.ids.length;
      const colour = new Uint16Array(n);
      let palette, rows;
      if (this.colourBy === "tag" && data.tagged) {
        palette = ["#c3c8d4", "#4f46e5"];
        for (let i = 0; i < n; i++) colour[i] = data.tagged[i] ? 1 : 0;
        rows = [
          { key: "tagged", label: "tagged “" + this.colourTag + "”", index: 1 },
          { key: "untagged", label: "not tagged", index: 0 },
        ];
      } else if (this.colourBy === "outcome" && data.outcome) {
        palette = ["#c9ced8", "#dc2626", "#16a34a"];
        for (let i = 0; i < n; i++) colour[i] = data.outcome[i] + 1;
        rows = [
          { key: "right", label: "right", index: 2 },
          { key: "wrong", label: "wrong", index: 1 },
          { key: "none", label: "not evaluated", index: 0 },
        ];
      } else {
        // palette 0: no label; then each class of the map, coloured as the server coloured it
        palette = [MAP_GREY];
        rows = [];
        (data.classes || []).forEach((name, k) => {
          const at = knownNames.indexOf(name);
          palette.push(at >= 0 && knownColours[at] ? knownColours[at] : mapClassColour(at >= 0 ? at : knownNames.length + k));
          rows.push({ key: "class:" + name, label: name, index: k + 1 });
        });
        for (let i = 0; i < n; i++) colour[i] = data.label[i] + 1;
        rows.push({ key: "unlabelled", label: "no label", index: 0 });
      }
      const counts = new Array(palette.length).fill(0);
      for (let i = 0; i < n; i++) counts[colour[i]]++;
      this.legend = rows
        .map((r) => Object.assign(r, { colour: palette[r.index], count: counts[r.index] }))
        .filter((r) => r.count || r.key.startsWith("class:"));
      map.setColours(colour, palette);
    },

    selectLegend(row) {
      map.selectColour(row.index, false);
    },

    /* ---- view and tools ---- */

    setTool(tool) {
      this.tool = tool;
      map.setTool(tool);
    },

    fit() { map.fit(); },

    onKey(e) {
      if (e.altKey || e.ctrlKey || e.metaKey || isTyping(e.target) || document.querySelector("dialog[open]")) return;
      const k = e.key;
      if (k === "l" || k === "L") this.setTool("lasso");
      else if (k === "b" || k === "B") this.setTool("box");
      else if (k === "v" || k === "V") this.setTool("pan");
      else if (k === "f" || k === "F") this.fit();
      else if (k === "Escape") { if (this.point) this.unpick(); else this.clearSelection(); }
      else if (!(e.target === this.$refs.canvas && map.key(e))) return;
      e.preventDefault();
    },

    /* ---- tooltip and the clicked image ---- */

    what(i) {
      if (!data || i < 0) return "";
      const parts = [];
      const label = data.label[i];
      parts.push(label >= 0 ? data.classes[label] : "no label");
      if (this.colourBy === "tag" && data.tagged) parts.push(data.tagged[i] ? "tagged “" + this.colourTag + "”" : "not tagged");
      if (this.colourBy === "outcome" && data.outcome) parts.push(["not evaluated", "wrong", "right"][data.outcome[i] + 1]);
      return parts.join(" · ");
    },

    showTip(i, sx, sy, changed) {
      const tip = this.$refs.tip;
      if (i < 0 || !data) { tip.hidden = true; return; }
      const id = data.ids[i];
      if (changed) {
        this.$refs.tipImg.hidden = false;
        this.$refs.tipImg.src = "/api/v1/samples/" + id + "/thumbnail";
        this.$refs.tipName.textContent = names.has(id) ? names.get(id).name : "sample " + id;
        this.$refs.tipWhat.textContent = this.what(i);
        if (!names.has(id)) {
          clearTimeout(nameTimer);
          nameTimer = setTimeout(() => this.fetchName(id).then((info) => {
            if (info && map.hover === i) this.$refs.tipName.textContent = info.name;
          }), 80);
        }
      }
      tip.hidden = false;
      // beside the cursor, flipped to stay inside the view
      const view = this.$refs.view, pad = 14;
      const w = tip.offsetWidth, h = tip.offsetHeight;
      let x = sx + pad, y = sy + pad;
      if (x + w > view.clientWidth - 4) x = sx - pad - w;
      if (y + h > view.clientHeight - 4) y = sy - pad - h;
      tip.style.transform = "translate(" + Math.max(4, x) + "px, " + Math.max(4, y) + "px)";
    },

    async fetchName(id) {
      if (names.has(id)) return names.get(id);
      const got = await this.fetchJson("/api/v1/samples/" + id).catch(() => null);
      if (!got || !got.ok) return null;
      const info = { name: got.body.sample.name, labels: got.body.sample.labels };
      if (names.size > 2000) names.clear();
      names.set(id, info);
      return info;
    },

    async pick(i) {
      const id = data.ids[i];
      map.pin(i);
      const q = new URLSearchParams({ sample: String(id) });
      this.point = {
        id: id,
        name: names.has(id) ? names.get(id).name : "",
        what: this.what(i),
        thumb: "/api/v1/samples/" + id + "/thumbnail",
        detail: cfg.base + "?" + q.toString(),
        similar: cfg.base + "/search?" + q.toString(),
      };
      const info = await this.fetchName(id);
      if (info && this.point && this.point.id === id) this.point.name = info.name;
    },

    unpick() {
      this.point = null;
      map.pin(-1);
    },

    /* ---- the selection ---- */

    clearSelection() { map.clearSelection(); },

    /** Tags the selected images (one undoable change); ``open``: then shows them in the grid. */
    async tagSelection(open) {
      const name = this.tagName.trim() || (open ? "map-selection" : "");
      this.err = "";
      if (!name) { this.err = "Name the tag to add to the selected images."; return; }
      const ids = map.selectedIds();
      if (!ids.length) return;
      if (ids.length > 100000) { this.err = "Select at most 100,000 images to tag at once."; return; }
      this.editing = true;
      try {
        const got = await this.fetchJson(api("/tags"), {
          method: "POST",
          headers: { "content-type": "application/json", "x-vistudio-client": "web" },
          body: JSON.stringify({ sample_ids: ids, add: [name] }),
        });
        if (!got.ok) { this.err = apiError(got.body, got.status); return; }
        const changed = got.body.changed || 0;
        const already = ids.length - changed;
        const noun = (k) => k.toLocaleString() + (k === 1 ? " image" : " images");
        this.msg = "Tagged " + noun(changed) + " “" + name + "”." + (already > 0 ? " " + noun(already) + " had it already." : "");
        this.undoId = got.body.change_id || null;
        this.lastTag = name;
        this.gridUrl = cfg.base + "?" + new URLSearchParams({ tag: name }).toString();
        if (!this.tagList.includes(name)) this.tagList = [...this.tagList, name].sort();
        if (!this.colourTag) this.colourTag = name;
        this.tagChanged(name);
        if (open) window.open(this.gridUrl, "_blank", "noopener");
      } catch (e) {
        this.err = "Could not reach the server: " + e;
      } finally {
        this.editing = false;
      }
    },

    async undo() {
      if (!this.undoId) return;
      this.editing = true;
      try {
        const got = await this.fetchJson(api("/undo"), {
          method: "POST",
          headers: { "content-type": "application/json", "x-vistudio-client": "web" },
          body: JSON.stringify({ change_id: this.undoId }),
        });
        if (!got.ok) { this.err = apiError(got.body, got.status); return; }
        const n = Number(got.body.changed || 0);
        this.msg = "Undone: “" + this.lastTag + "” taken off " + n.toLocaleString() + (n === 1 ? " image." : " images.");
        this.undoId = null;
        this.gridUrl = "";
        this.tagChanged(this.lastTag);
      } catch (e) {
        this.err = "Could not reach the server: " + e;
      } finally {
        this.editing = false;
      }
    },

    tagChanged(name) {
      // the tag colouring is stale when it shows this tag
      if (data && data.tag === name) data.tagged = null;
      if (this.colourBy === "tag" && this.colourTag === name) this.recolour();
    },
  });
}
