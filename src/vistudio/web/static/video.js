// Library videos in the sample detail (fragments/sample_detail.html): the player starts at its
// keyframe's time (the #t= media fragment, made sure of once the metadata is in), and a click on
// a filmstrip frame seeks there and plays. Loaded by each detail fragment: listen once.
(() => {
  if (window.vistudioVideo) return;
  window.vistudioVideo = true;
  // media events do not bubble: listen in the capture phase
  document.addEventListener("loadedmetadata", (e) => {
    const v = e.target;
    if (!(v instanceof HTMLVideoElement) || !v.dataset.start || v.dataset.started) return;
    v.dataset.started = "1";
    const t = parseFloat(v.dataset.start);
    if (Number.isFinite(t) && Math.abs(v.currentTime - t) > 0.05) v.currentTime = t;
  }, true);
  document.addEventListener("click", (e) => {
    const b = e.target instanceof Element ? e.target.closest("[data-seek]") : null;
    if (!b) return;
    const v = b.closest(".video-player")?.querySelector("video");
    if (!v) return;
    v.dataset.started = "1";
    v.currentTime = parseFloat(b.dataset.seek) || 0;
    for (const f of b.closest(".filmstrip").querySelectorAll(".filmstrip-frame")) {
      f.classList.toggle("is-current", f === b);
      if (f === b) f.setAttribute("aria-current", "true"); else f.removeAttribute("aria-current");
    }
    v.play().catch(() => {}); // autoplay rules may refuse: the frame is shown all the same
  });
})();
