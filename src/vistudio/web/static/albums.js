/* Albums: drag a photo of a manual album onto another to put it just before it (the API's order
   call, then the page again); the ← → buttons do the same without scripts. albumAdder: the
   Dataset page's "Add to album" in the selection bar (uses the sampleEditor scope around it). */
"use strict";

(function () {
  function setup() {
    const grid = document.getElementById("al-photos");
    if (!grid || !grid.dataset.orderUrl) return;
    let dragged = null;
    const error = document.getElementById("al-drag-error");
    grid.addEventListener("dragstart", (e) => {
      dragged = e.target.closest(".al-photo");
      if (!dragged) return;
      dragged.classList.add("is-dragging");
      e.dataTransfer.effectAllowed = "move";
      e.dataTransfer.setData("text/plain", dragged.dataset.sampleId);
    });
    grid.addEventListener("dragend", () => {
      if (dragged) dragged.classList.remove("is-dragging");
      grid.querySelectorAll(".drop-before").forEach((t) => t.classList.remove("drop-before"));
      dragged = null;
    });
    grid.addEventListener("dragover", (e) => {
      const over = e.target.closest(".al-photo");
      if (!dragged || !over || over === dragged) return;
      e.preventDefault();
      grid.querySelectorAll(".drop-before").forEach((t) => t.classList.remove("drop-before"));
      over.classList.add("drop-before");
    });
    grid.addEventListener("drop", async (e) => {
      const over = e.target.closest(".al-photo");
      if (!dragged || !over || over === dragged) return;
      e.preventDefault();
      const body = { sample_id: Number(dragged.dataset.sampleId), before: Number(over.dataset.sampleId) };
      const resp = await fetch(grid.dataset.orderUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (resp.ok) {
        location.reload();
      } else {
        let data = null;
        try { data = await resp.json(); } catch (err) { data = null; }
        error.textContent = (data && data.error && data.error.message) || ("The move failed (" + resp.status + ").");
        error.hidden = false;
      }
    });
  }
  document.addEventListener("DOMContentLoaded", setup);
})();

function albumAdder(opts) {
  return {
    albumId: opts.albums.length ? String(opts.albums[0].id) : "",
    async addToAlbum() {
      const sel = this.selection();
      if (!sel.sample_ids) {
        this.err = "Tick the photos to add (not “all matching”): at most 10,000 at once.";
        return;
      }
      if (!this.albumId) return;
      const url = "/api/v1/projects/" + encodeURIComponent(opts.project) + "/albums/" + this.albumId + "/photos";
      const r = await editCall("POST", url, { add: sel.sample_ids });
      if (!r.ok) {
        this.err = r.error;
        return;
      }
      const name = (opts.albums.find((a) => String(a.id) === this.albumId) || {}).name || "the album";
      const added = r.data.added, already = r.data.already;
      this.msg = added
        ? "Added " + samplesText(added) + " to “" + name + "”" + (already ? " (" + fmtCount(already) + " already in it)." : ".")
        : "Nothing to add: the selected photos are in “" + name + "” already.";
      this.undoId = null;
      this.redoId = null;
    },
  };
}
