"use strict";
/* People pages: choosing people to merge (the grid), faces to move (a person's page), and the
   review's keys (Y yes, N no, → skip, U undo: the buttons marked data-key). */
document.addEventListener("alpine:init", () => {
  // names: person id → name shown in the "Merge into" list
  Alpine.data("peopleGrid", (names) => ({
    picked: [],
    names,
    // the first named person chosen keeps their name by default
    defaultInto() {
      return this.picked.find((id) => !String(this.names[id] || "").startsWith("Unnamed person #")) || this.picked[0];
    },
  }));

  Alpine.data("faceGrid", () => ({
    selected: [],
    last: null,
    ids() {
      return [...this.$root.querySelectorAll("[data-face]")].map((el) => el.dataset.face);
    },
    toggle(event, id) {
      const ids = this.ids();
      if (event.shiftKey && this.last !== null && ids.includes(this.last)) {
        // Shift+click: every face from the last one clicked to this one
        const [a, b] = [ids.indexOf(this.last), ids.indexOf(id)].sort((x, y) => x - y);
        const range = ids.slice(a, b + 1);
        this.selected = [...new Set([...this.selected, ...range])];
      } else if (this.selected.includes(id)) {
        this.selected = this.selected.filter((x) => x !== id);
      } else {
        this.selected = [...this.selected, id];
      }
      this.last = id;
    },
    all() {
      this.selected = this.ids();
    },
    clear() {
      this.selected = [];
      this.last = null;
    },
  }));
});

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented || e.repeat) return;
  const body = document.getElementById("review-body");
  const el = e.target;
  if (!body || document.querySelector("dialog[open]")) return;
  if (el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName))) return;
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  const button = body.querySelector(`[data-key="${key}"]`);
  // One answer at a time: a key does nothing while the last answer is on its way, nor while the
  // next suggestion is settling in (htmx-added) — it is not ready yet, nor seen.
  if (!button || button.disabled || body.classList.contains("htmx-added") || body.querySelector(".htmx-request")) return;
  e.preventDefault();
  button.click();
});

// A message carried by the address (?merged=1 after a merge) is said once: the address loses it,
// so that a reload does not say it again.
document.addEventListener("DOMContentLoaded", () => {
  const once = document.querySelector("[data-said-once]");
  if (!once) return;
  const url = new URL(location.href);
  url.searchParams.delete(once.dataset.saidOnce);
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
});
