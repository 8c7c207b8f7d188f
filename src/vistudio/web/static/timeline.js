/* Timeline page: marks in the scrubber the month being looked at (the last month heading that
   scrolled past the top), including months that infinite scroll (htmx) adds later. */
(function () {
  "use strict";
  function current() {
    const headings = document.querySelectorAll("#tl-grid .tl-month[data-month]");
    let month = null;
    for (const h of headings) {
      if (h.getBoundingClientRect().top > 80) break;
      month = h.dataset.month;
    }
    if (month === null && headings.length) month = headings[0].dataset.month;
    for (const a of document.querySelectorAll("#tl-scrubber .tl-jump")) {
      const on = a.dataset.month === month;
      a.classList.toggle("current", on);
      if (on) a.setAttribute("aria-current", "true"); else a.removeAttribute("aria-current");
    }
  }
  let queued = false;
  function schedule() {
    if (queued) return;
    queued = true;
    requestAnimationFrame(function () { queued = false; current(); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    if (!document.getElementById("tl-grid")) return;
    window.addEventListener("scroll", schedule, { passive: true });
    document.body.addEventListener("htmx:afterSettle", schedule);
    current();
  });
})();
