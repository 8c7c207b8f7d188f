/* Semantic segmentation results on the Evaluate page: the opacity of the mask layers laid over the
   images (the grid's tiles and the detail share it) and the detail's layer toggles — prediction,
   ground truth, error map. The choice holds across grid pages, filters and details (the grid and
   the detail are swapped in by htmx: the state lives here, and is applied after each swap). */
"use strict";

const segEval = { opacity: 0.55, layers: { prediction: true, truth: false, error: false } };

function segApply(root) {
  document.documentElement.style.setProperty("--seg-opacity", String(segEval.opacity));
  root.querySelectorAll("input[data-seg-opacity]").forEach((input) => {
    if (Math.abs(parseFloat(input.value) - segEval.opacity) > 1e-6) input.value = String(segEval.opacity);
  });
  root.querySelectorAll("[data-seg-stage] img.seg-layer[data-layer]").forEach((img) => {
    img.hidden = !segEval.layers[img.dataset.layer];
  });
  root.querySelectorAll("button[data-seg-layer]").forEach((b) => {
    b.setAttribute("aria-pressed", segEval.layers[b.dataset.segLayer] ? "true" : "false");
  });
}

document.addEventListener("input", (e) => {
  const input = e.target.closest && e.target.closest("input[data-seg-opacity]");
  if (!input) return;
  const v = parseFloat(input.value);
  segEval.opacity = isFinite(v) ? Math.max(0, Math.min(1, v)) : 0.55;
  segApply(document);
});

document.addEventListener("click", (e) => {
  const b = e.target.closest && e.target.closest("button[data-seg-layer]");
  if (!b) return;
  const layer = b.dataset.segLayer;
  segEval.layers[layer] = !segEval.layers[layer];
  segApply(document);
});

document.addEventListener("DOMContentLoaded", () => {
  segApply(document);
  document.body.addEventListener("htmx:afterSettle", () => segApply(document));
});
