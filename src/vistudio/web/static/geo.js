/* Map page (templates/geo.html): a Leaflet map (vendored) of where the project's photos were taken.
   Under everything the vendored world outline (Natural Earth 1:110m), so the map is never blank;
   over it OpenStreetMap's tiles when the workspace is online. The clusters are counted by the
   server for the area in view at the current zoom (/api/v1/projects/{p}/geo/clusters), never
   computed here: a library of a million photos is a few hundred clusters. A click on a cluster
   zooms in; one photo is a marker whose popup shows its thumbnail. "Select area" (or Shift-drag)
   draws a rectangle, and the photos inside are listed below the map (an htmx fragment). */
(function () {
  "use strict";

  function wrapLon(x) { return (((x + 180) % 360) + 360) % 360 - 180; }
  function num(v) { return String(+v.toFixed(6)); }

  /* A Leaflet bounds as the API's west,south,east,north: longitudes brought back to -180..180
     (the map shows copies of the world side by side), west > east across the antimeridian. */
  function bboxOf(bounds) {
    let w = bounds.getWest(), e = bounds.getEast();
    const s = Math.max(-90, bounds.getSouth()), n = Math.min(90, bounds.getNorth());
    if (e - w >= 360) { w = -180; e = 180; }
    else {
      const span = e - w;
      w = wrapLon(w);
      e = w + span;
      if (e > 180) e -= 360;
    }
    return [w, s, e, n];
  }
  function bboxText(b) { return b.map(num).join(","); }
  function boundsOf(b) {  // the API's [w, s, e, n] as Leaflet bounds (across 180°: east + 360)
    const e = b[2] < b[0] ? b[2] + 360 : b[2];
    return L.latLngBounds([b[1], b[0]], [b[3], e]);
  }

  function start(el) {
    const cfg = JSON.parse(el.dataset.config);
    const status = document.getElementById("geo-status");
    const offline = document.getElementById("geo-offline");
    const selectBtn = document.getElementById("geo-select");
    const clearBtn = document.getElementById("geo-clear");
    const map = L.map(el, {
      worldCopyJump: true,
      boxZoom: false,  // Shift-drag selects an area instead
      minZoom: 1,
      maxZoom: cfg.max_zoom,
      zoomSnap: 1,
    });
    map.attributionControl.addAttribution("Outline: Natural Earth");

    // the outline sits under the tiles (the tile pane is at z-index 200)
    map.createPane("outline").style.zIndex = 150;
    fetch(cfg.outline).then((r) => r.json()).then((data) => {
      L.geoJSON(data, {
        pane: "outline",
        interactive: false,
        style: { color: "#9aa3b5", weight: 0.7, fillColor: "#eef0e4", fillOpacity: 1, className: "geo-outline" },
      }).addTo(map);
      el.dataset.outline = "drawn";
    });
    if (cfg.tiles) {
      const tiles = L.tileLayer(cfg.tiles.url, { attribution: cfg.tiles.attribution, maxZoom: cfg.max_zoom });
      tiles.on("tileerror", () => { offline.hidden = false; el.dataset.tilesFailed = "1"; });
      tiles.addTo(map);
    }

    const markers = L.layerGroup().addTo(map);
    let controller = null;
    let lastAnswer = null;

    function clusterIcon(count) {
      const d = Math.round(30 + 9 * Math.log10(count));
      const text = count >= 10000 ? Math.round(count / 1000) + "k" : count.toLocaleString("en");
      return L.divIcon({
        className: "geo-cluster-icon",
        html: '<span class="geo-cluster" data-count="' + count + '">' + text + "</span>",
        iconSize: [d, d],
      });
    }

    function nearCentre(lon) {  // the copy of a longitude nearest the map's centre
      const c = map.getCenter().lng;
      return lon + 360 * Math.round((c - lon) / 360);
    }

    function onCluster(c) {
      const b = L.latLngBounds([c.bounds[1], c.bounds[0]], [c.bounds[3], c.bounds[2]]);
      const zoom = map.getZoom();
      const pad = L.point(40, 40);
      const target = Math.min(map.getMaxZoom(), map.getBoundsZoom(b, false, pad));
      if (zoom >= map.getMaxZoom()) {
        choose(b.pad(0.1));  // as deep as the map goes: the photos of that spot
      } else if (target > zoom) {
        map.fitBounds(b, { padding: [40, 40], maxZoom: target, animate: false });
      } else {
        map.setView([c.lat, nearCentre(c.lon)], zoom + 1, { animate: false });
      }
    }

    function draw(answer) {
      markers.clearLayers();
      for (const c of answer.clusters) {
        const at = [c.lat, nearCentre(c.lon)];
        let m;
        if (c.count === 1) {
          m = L.marker(at, { title: "1 photo", alt: "photo " + c.sample_id });
          const link = cfg.dataset + "?sample=" + c.sample_id;
          m.bindPopup(
            '<a class="geo-popup" href="' + link + '" data-testid="geo-popup" data-sample-id="' + c.sample_id + '">' +
            '<img src="' + c.thumbnail_url + '" alt="" width="128" height="128"><span>Open the photo</span></a>',
            { minWidth: 128 }
          );
        } else {
          m = L.marker(at, { icon: clusterIcon(c.count), title: c.count.toLocaleString("en") + " photos: click to zoom in" });
          m.on("click", () => onCluster(c));
        }
        m.addTo(markers);
        const node = m.getElement();
        if (node && c.count === 1) { node.classList.add("geo-photo"); node.dataset.sampleId = c.sample_id; }
      }
      el.dataset.zoom = answer.zoom;
      el.dataset.clusters = answer.clusters.length;
      status.textContent = answer.photos.toLocaleString("en") + (answer.photos === 1 ? " photo" : " photos") +
        " in view" + (answer.clusters.length ? ", in " + answer.clusters.length.toLocaleString("en") +
        (answer.clusters.length === 1 ? " group" : " groups") : "");
    }

    async function refresh() {
      const zoom = Math.max(0, Math.min(22, Math.round(map.getZoom())));
      const bbox = bboxText(bboxOf(map.getBounds().pad(0.25)));
      if (controller) controller.abort();
      controller = new AbortController();
      el.dataset.loading = "1";
      try {
        const r = await fetch(cfg.api + "/clusters?bbox=" + bbox + "&zoom=" + zoom, { signal: controller.signal });
        const body = await r.json();
        if (!r.ok) { status.textContent = (body.error && body.error.message) || "Could not load the photos."; return; }
        lastAnswer = body;
        draw(body);
        delete el.dataset.loading;
      } catch (err) {
        if (err.name !== "AbortError") { status.textContent = "Could not load the photos."; delete el.dataset.loading; }
      }
    }

    /* ---- the selected area ---- */
    let area = null;
    let selecting = false;
    function setSelecting(on) {
      selecting = on;
      selectBtn.setAttribute("aria-pressed", on ? "true" : "false");
      selectBtn.classList.toggle("active", on);
      el.classList.toggle("geo-selecting", on);
    }
    function choose(bounds) {
      const b = bboxOf(bounds);
      const text = bboxText(b);
      if (area) area.remove();
      area = L.rectangle(bounds, { className: "geo-area", weight: 2, color: "#4f46e5", fillOpacity: 0.08, interactive: false }).addTo(map);
      el.dataset.selected = text;
      clearBtn.hidden = false;
      const url = new URL(location.href);
      url.searchParams.set("bbox", text);
      history.replaceState(null, "", url);
      htmx.ajax("GET", cfg.photos + "?bbox=" + encodeURIComponent(text), { target: "#geo-selection", swap: "innerHTML" });
    }
    function clear() {
      if (area) area.remove();
      area = null;
      delete el.dataset.selected;
      clearBtn.hidden = true;
      const url = new URL(location.href);
      url.searchParams.delete("bbox");
      history.replaceState(null, "", url);
      document.getElementById("geo-selection").innerHTML =
        '<p class="hint">Choose <strong>Select area</strong> (or Shift-drag on the map) to list the photos taken there.</p>';
    }
    selectBtn.addEventListener("click", () => setSelecting(!selecting));
    clearBtn.addEventListener("click", clear);
    document.addEventListener("keydown", (e) => { if (e.key === "Escape" && selecting) setSelecting(false); });

    // captured before Leaflet's own dragging sees the press
    el.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || !(selecting || e.shiftKey)) return;
      if (e.target.closest(".leaflet-control, .leaflet-popup")) return;
      e.preventDefault();
      e.stopPropagation();
      map.dragging.disable();
      const from = map.mouseEventToLatLng(e);
      const p0 = L.point(e.clientX, e.clientY);
      let rect = null;
      function move(ev) {
        const to = map.mouseEventToLatLng(ev);
        if (!rect) rect = L.rectangle(L.latLngBounds(from, to), { className: "geo-drawing", weight: 1, dashArray: "4 3", interactive: false }).addTo(map);
        else rect.setBounds(L.latLngBounds(from, to));
      }
      function up(ev) {
        document.removeEventListener("pointermove", move);
        document.removeEventListener("pointerup", up);
        map.dragging.enable();
        if (rect) rect.remove();
        if (p0.distanceTo(L.point(ev.clientX, ev.clientY)) < 5) return;  // a click, not an area
        setSelecting(false);
        choose(L.latLngBounds(from, map.mouseEventToLatLng(ev)));
      }
      document.addEventListener("pointermove", move);
      document.addEventListener("pointerup", up);
    }, true);

    map.on("moveend", refresh);
    if (cfg.selected) {
      const b = boundsOf(cfg.selected.split(",").map(Number));
      map.fitBounds(b, { padding: [30, 30], animate: false });
      choose(b);
    } else if (cfg.bounds) {
      const b = L.latLngBounds([cfg.bounds[1], cfg.bounds[0]], [cfg.bounds[3], cfg.bounds[2]]);
      map.fitBounds(b, { padding: [30, 30], maxZoom: 12, animate: false });
    } else {
      map.setView([20, 0], 2);
    }
    window.vistudioGeo = {
      map: map,
      clusters: () => lastAnswer,
      select: (b) => choose(boundsOf(b)),
      bbox: () => bboxText(bboxOf(map.getBounds())),
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    const el = document.getElementById("geo-map");
    if (el && window.L) start(el);
  });
})();
