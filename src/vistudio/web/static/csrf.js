// CSRF token of the web session (docs/security.md): htmx requests carry it through the
// hx-headers of <body>; this adds it to plain form posts and to the pages' own fetch() calls.
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  if (!meta) return;
  var token = meta.getAttribute("content");
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || (form.method || "").toLowerCase() !== "post") return;
    if (form.querySelector('input[name="csrf_token"]')) return;
    var input = document.createElement("input");
    input.type = "hidden";
    input.name = "csrf_token";
    input.value = token;
    form.appendChild(input);
  }, true);
  var plainFetch = window.fetch;
  window.fetch = function (resource, init) {
    init = init || {};
    var method = (init.method || (resource && resource.method) || "GET").toUpperCase();
    var url = new URL(typeof resource === "string" ? resource : resource.url, window.location.href);
    if (url.origin === window.location.origin && ["GET", "HEAD", "OPTIONS"].indexOf(method) < 0) {
      var headers = new Headers(init.headers || (resource && resource.headers) || {});
      headers.set("X-CSRF-Token", token);
      init.headers = headers;
    }
    return plainFetch.call(this, resource, init);
  };
})();
