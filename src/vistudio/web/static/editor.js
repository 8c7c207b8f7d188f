/* The sample detail's annotation editor (no build step): the toolbar, the save and the keys around
   editorCore (editor-canvas.js), with editCall and refreshEditedGrid from edits.js and isTyping,
   stepDetail and updateStepButtons from app.js.

   "Edit objects" turns the detail's image into the editor's canvas; Save sends every ground-truth
   object of the kinds the task edits (masks unchanged) with the revision loaded, as one undoable
   change (PUT /api/v1/samples/{id}/annotations): a class that does not exist yet is created once
   asked, a stale save (409) offers Reload. The editor's own steps undo and redo until the save
   (Ctrl+Z, Ctrl+Shift+Z / Ctrl+Y); after it, "Undo save" takes the change back through the
   project's undo. While editing, the arrows nudge the selection instead of walking the samples and
   Escape never closes the detail; when not editing, N and P walk the samples as → and ← do. */
"use strict";

const EDITOR_NOTES = new Map();  // sample id → what the detail says after a save, across its re-render
let editorActive = null;         // the editor being edited in (one detail at a time), for the keys

/* The Alpine component: the toolbar, the save, and the note after a save. */
function objectEditor() {
  let core = null;  // outside Alpine's reactive state: it holds every point of every object
  let data = null, root = null, dlg = null, guard = null;
  return {
    editing: false,
    tool: "select",
    className: "",
    current: "",
    dirty: false,
    canUndo: false,
    canRedo: false,
    busy: false,
    err: "",
    stale: false,
    status: "",
    hint: "",
    zoomText: "",
    note: null,
    init() {
      root = this.$el;
      data = JSON.parse(root.querySelector("script[data-editor]").textContent);
      dlg = root.closest("dialog");
      const note = EDITOR_NOTES.get(data.id);
      EDITOR_NOTES.clear();  // a note is for the detail it was made for, shown once
      if (note) { this.note = note; EDITOR_NOTES.set(data.id, note); }
    },
    destroy() { this.leave(); if (core) core.destroy(); core = null; },
    live() {
      if (root && root.isConnected) return true;
      this.destroy();
      return false;
    },
    edit() {
      if (!core) {
        core = editorCore({
          data: data,
          canvas: root.querySelector("canvas.ed-canvas"),
          img: root.querySelector(".stage img"),
          sync: (st) => {
            Object.assign(this, st);
            if (document.activeElement !== this.$refs.cls) this.className = st.current !== undefined ? st.current : this.className;
          },
        });
      }
      // the palette in the class colours (known once overlay.js read the page's classes)
      root.querySelectorAll("[data-class-pick]").forEach((el) => {
        const sw = el.querySelector(".ov-swatch");
        if (sw) sw.style.background = Overlay.colour(Overlay.classIndex(el.dataset.classPick), 0);
      });
      this.err = "";
      this.stale = false;
      this.note = null;
      this.editing = true;
      if (dlg) dlg.scrollTop = 0;
      editorActive = this;
      const detail = root.closest(".detail");
      if (detail) detail.classList.add("is-editing");
      // while editing the detail stays: no stepping to another sample, no closing without asking
      guard = new AbortController();
      if (dlg) {
        dlg.querySelectorAll("[data-step]").forEach((b) => { b.disabled = true; });
        let pressed = null;  // where the click began: a drag from the canvas ending outside is no backdrop click
        dlg.addEventListener("pointerdown", (e) => { pressed = e.target; }, { capture: true, signal: guard.signal });
        dlg.addEventListener("cancel", (e) => { if (this.editing) e.preventDefault(); }, { signal: guard.signal });
        dlg.addEventListener("click", (e) => {
          const closing = (e.target === dlg && pressed === dlg) || (e.target.closest && e.target.closest("form[method=dialog] button"));
          if (e.target === dlg && pressed !== dlg) { e.preventDefault(); e.stopImmediatePropagation(); return; }
          if (!closing || !this.editing) return;
          if (this.dirty && !window.confirm("Discard your unsaved changes to the objects?")) {
            e.preventDefault();
            e.stopImmediatePropagation();
            return;
          }
          this.leave();
        }, { capture: true, signal: guard.signal });
        dlg.addEventListener("close", () => this.leave(), { signal: guard.signal });
      }
      window.addEventListener("beforeunload", (e) => {
        if (this.editing && this.dirty) { e.preventDefault(); e.returnValue = ""; }
      }, { signal: guard.signal });
      this.$nextTick(() => {
        // the detail can be swapped out (a step, a reload after a save) before this tick: its core is gone
        if (!core || !this.editing) return;
        core.load();
        core.resize();
        core.fit();
        root.querySelector("canvas.ed-canvas").focus({ preventScroll: true });
      });
    },
    leave() {
      if (!this.editing) return;
      this.editing = false;
      if (editorActive === this) editorActive = null;
      if (guard) { guard.abort(); guard = null; }
      const detail = root && root.closest(".detail");
      if (detail) detail.classList.remove("is-editing");
      if (dlg && typeof updateStepButtons === "function") updateStepButtons(dlg);
    },
    cancel() {
      if (this.dirty && !window.confirm("Discard your unsaved changes to the objects?")) return;
      this.err = "";
      this.leave();
    },
    focusCanvas() { const c = root.querySelector("canvas.ed-canvas"); if (c) c.focus({ preventScroll: true }); },
    setTool(t) { core.setTool(t); this.focusCanvas(); },
    undo() { core.undo(); },
    redo() { core.redo(); },
    fit() { core.fit(); },
    zoom(f) { core.zoom(f); },
    applyClass() {
      const name = this.className.trim();
      if (!name) { this.className = core.current(); return; }
      core.setClass(name);
    },
    revertClass() { this.className = core.current(); },
    pickClass(name) { core.setClass(name); this.focusCanvas(); },
    keydown(e) {
      if (!this.live() || !this.editing) return;
      if (document.querySelector("dialog[open]") !== dlg) return;
      const k = e.key, mod = (e.ctrlKey || e.metaKey) && !e.altKey;
      if (mod && k.toLowerCase() === "s") {  // saves from the class box too, with what it holds
        e.preventDefault();
        if (e.target === this.$refs.cls) this.applyClass();
        this.save();
        return;
      }
      if (isTyping(e.target)) return;  // the class box keeps its other keys
      if (mod) {
        const lower = k.toLowerCase();
        if (lower === "z") { e.preventDefault(); if (e.shiftKey) core.redo(); else core.undo(); }
        else if (lower === "y") { e.preventDefault(); core.redo(); }
        return;
      }
      if (e.altKey) return;
      // a focused button keeps Space and Enter (they press it)
      const onButton = e.target && e.target.closest && e.target.closest("button, a");
      if (onButton && (k === " " || (k === "Enter" && !core.drafting()))) return;
      if (core.key(e)) e.preventDefault();
    },
    keyup(e) {
      if (!this.editing || isTyping(e.target)) return;
      if (core.keyup(e)) e.preventDefault();
    },
    reloadDetail() {
      const target = dlg && dlg.querySelector(":scope > div");
      if (!target || !dlg.dataset.detailUrl) return;
      htmx.ajax("GET", dlg.dataset.detailUrl.replace("{id}", encodeURIComponent(data.id)), { target: target, swap: "innerHTML" });
    },
    reload() { this.leave(); this.reloadDetail(); },
    async save(create) {
      if (this.busy || !core) return;
      core.finish();
      const body = core.payload();
      this.busy = true;
      this.err = "";
      this.stale = false;
      const r = await editCall("PUT", "/api/v1/samples/" + encodeURIComponent(data.id) + "/annotations", {
        objects: body.objects, revision: data.revision, create_classes: !!create,
      });
      this.busy = false;
      if (r.ok) {
        const id = r.data.change_id;
        const made = r.data.created_classes || [];
        const text = !id ? "Nothing to save: the objects are as they were."
          : "Objects saved (change " + id + ")" + (made.length ? "; new " + (made.length === 1 ? "class " : "classes ") + made.map(quoted).join(", ") : "") + ".";
        this.note = id ? { text: text, undoId: id } : { text: text };
        EDITOR_NOTES.set(data.id, this.note);
        this.leave();
        if (id) { this.reloadDetail(); refreshEditedGrid(); }
        return;
      }
      const details = (r.data && r.data.error && r.data.error.details) || {};
      const unknown = details.unknown_classes;
      if (r.status === 422 && Array.isArray(unknown) && unknown.length && !create) {
        const names = unknown.map(quoted).join(", ");
        if (window.confirm((unknown.length === 1 ? "Create class " : "Create classes ") + names + "?")) return this.save(true);
        this.err = "Not saved: the project has no " + (unknown.length === 1 ? "class " : "classes ") + names + ". Choose another class, or save again and create it.";
        return;
      }
      if (r.status === 409) {
        this.stale = true;
        this.err = "Someone changed this image’s objects since you opened it. Reload to see them (your changes here are dropped).";
        return;
      }
      // "object 5 ring 1: …" counts the objects as sent (a polygon's box too): select that one instead
      const message = (r.data && r.data.error && r.data.error.message) || "";
      const m = /^object (\d+)(?: ring \d+| rotated box)?:?\s*/i.exec(message);
      if (m && body.from[+m[1] - 1] !== undefined) {
        core.selectObject(body.from[+m[1] - 1]);
        this.err = "Not saved: " + message.slice(m[0].length) + " (the object now selected).";
      } else this.err = "Not saved: " + r.error;
    },
    async revert(word) {
      const id = word === "undo" ? this.note.undoId : this.note.redoId;
      this.busy = true;
      this.err = "";
      const r = await editCall("POST", "/api/v1/projects/" + encodeURIComponent(data.project) + "/" + word, { change_id: id });
      this.busy = false;
      if (!r.ok) { this.err = r.error; return; }
      this.note = word === "undo" ? { text: "Save undone (change " + id + ").", redoId: id } : { text: "Save redone (change " + id + ").", undoId: id };
      EDITOR_NOTES.set(data.id, this.note);
      this.reloadDetail();
      refreshEditedGrid();
    },
  };
}

/* Keys: the editing detail's first (capture phase: before app.js's ←/→ and the dialog's Escape);
   otherwise N and P walk the detail's samples as → and ← do. */
document.addEventListener("keydown", (e) => {
  if (editorActive && editorActive.live() && editorActive.editing) { editorActive.keydown(e); return; }
  if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented || isTyping(e.target)) return;
  const k = e.key.toLowerCase();
  if (k !== "n" && k !== "p") return;
  const dlg = document.querySelector("dialog[open][data-step-items]");
  if (!dlg || !dlg.querySelector("[data-detail-id]")) return;
  e.preventDefault();
  stepDetail(dlg, k === "n" ? 1 : -1);
}, true);
document.addEventListener("keyup", (e) => {
  if (editorActive && editorActive.live()) editorActive.keyup(e);
}, true);
