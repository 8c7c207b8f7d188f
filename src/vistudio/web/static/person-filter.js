/* The People filter of the Dataset and Search pages: type a name, pick people from the project's
   people list (GET /api/v1/projects/P/people?q=…, 20 at a time, so it scales to any number of
   people), shown as removable chips. Each chip carries a hidden <input name="person" value=ID> in
   the filter form, so the form's own htmx request sends ?person=ID&person=ID (photos showing all
   of them) and pushes that address: links are shareable, reload and back/forward keep the filter.
   A history restore renders the page afresh from its address, chips included. */
"use strict";

function personLabel(p) {
  // as the People pages call a person (pages/dataset.person_label)
  return p.name || "Unnamed person #" + p.id;
}

function personFilter(opts) {
  const LISTED = 20;
  let root = null; // the control (kept out of Alpine's reactive state: a proxied element cannot dispatch)
  return {
    chosen: opts.chosen || [], // [{id, label}], in the order picked
    query: "",
    results: [],
    more: false,
    active: -1,
    open: false,
    loading: false,
    error: "",
    seq: 0,
    init() {
      // the grid (or the results) swapped in: tell in its empty state that the people filter is why
      const stop = new AbortController();
      root = this.$el;
      document.body.addEventListener("htmx:afterSettle", () => {
        if (!root || !root.isConnected) { stop.abort(); return; }
        this.markEmpty();
      }, { signal: stop.signal });
      this.markEmpty();
    },
    summary() {
      const names = this.chosen.map((p) => p.label);
      if (!names.length) return "";
      return names.length === 1 ? "Photos with " + names[0] : "Photos with all of: " + names.join(", ");
    },
    async search() {
      const mine = ++this.seq;
      this.loading = true;
      this.error = "";
      const url = new URL(opts.api, location.origin);
      url.searchParams.set("limit", String(LISTED + this.chosen.length));
      const q = this.query.trim();
      if (q) url.searchParams.set("q", q);
      try {
        const resp = await fetch(url);
        const body = await resp.json().catch(() => null);
        if (mine !== this.seq) return; // an older answer, overtaken by the newer query
        if (!resp.ok) { this.error = apiError(body, resp.status); this.results = []; return; }
        const taken = new Set(this.chosen.map((p) => String(p.id)));
        this.results = body.items.filter((p) => !taken.has(String(p.id))).slice(0, LISTED);
        this.more = body.total > body.items.length;
        this.active = this.results.length ? 0 : -1;
      } catch (e) {
        if (mine === this.seq) this.error = "Could not reach the server: " + e;
      } finally {
        if (mine === this.seq) this.loading = false;
      }
    },
    show() {
      if (!this.open) {
        this.open = true;
        this.search();
      }
    },
    hide() {
      this.open = false;
      this.active = -1;
    },
    move(step) {
      if (!this.open) { this.show(); return; }
      const n = this.results.length;
      if (!n) return;
      this.active = (this.active + step + n) % n;
      const el = document.getElementById(this.optionId(this.results[this.active]));
      if (el) el.scrollIntoView({ block: "nearest" });
    },
    optionId(p) {
      return opts.prefix + "-opt-" + p.id;
    },
    enter() {
      if (this.open && this.active >= 0 && this.results[this.active]) this.pick(this.results[this.active]);
    },
    pick(p) {
      if (!this.chosen.some((c) => String(c.id) === String(p.id))) {
        this.chosen.push({ id: String(p.id), label: personLabel(p) });
      }
      this.query = "";
      this.hide();
      this.changed();
      this.$nextTick(() => this.$refs.input && this.$refs.input.focus());
    },
    remove(id) {
      this.chosen = this.chosen.filter((p) => String(p.id) !== String(id));
      this.changed();
      this.$nextTick(() => this.$refs.input && this.$refs.input.focus());
    },
    clearAll() {
      if (!this.chosen.length) return;
      this.chosen = [];
      this.changed();
    },
    changed() {
      // once the hidden inputs are there: the filter form asks for the grid (and pushes the address)
      this.$nextTick(() => root.dispatchEvent(new Event("change", { bubbles: true })));
    },
    markEmpty() {
      const box = document.querySelector(opts.empty);
      if (!box || box.querySelector(".person-empty") || !this.chosen.length) return;
      const note = document.createElement("p");
      note.className = "person-empty";
      note.setAttribute("data-testid", "person-filter-empty");
      const names = this.chosen.map((p) => p.label);
      const text = document.createElement("span");
      text.className = "break";
      text.textContent = names.length === 1
        ? "No photo of " + names[0] + " matches the other filters."
        : "No photo shows all of: " + names.join(", ") + ".";
      const btn = document.createElement("button");
      btn.type = "button";
      btn.className = "btn btn-sm";
      btn.setAttribute("data-testid", "person-filter-clear-empty");
      btn.textContent = names.length === 1 ? "Clear the person filter" : "Clear the people filter";
      btn.addEventListener("click", () => this.clearAll());
      note.append(text, btn);
      box.append(note);
    },
  };
}
