/* ScatterMap: a scatter of many points (the embedding map's images: templates/map.html, map.js),
   drawn on one <canvas> by hand.

   It draws a few hundred thousand points in one pass per frame, straight into an ImageData buffer
   (a small disc or square of pixels per point, no path or arc per point), at the device's pixel
   ratio. Points live in data coordinates (the API's x and y, 0..1, y down); the view is a scale and
   an offset in CSS pixels: screen = offset + data × scale. A uniform grid over the data answers
   "which point is under the cursor" and narrows a lasso to the cells its bounding box touches, so
   neither scans every point. The selection is a byte per point.

   Mouse: the wheel zooms around the cursor, a drag pans (or draws a lasso / a box with those tools;
   Shift+drag is always a box), Ctrl / Cmd adds to the selection; a click on a point picks it.
   Keys passed on by the page (key()): + / - zoom, arrows pan.

   The map page sets window.vistudioMap to its ScatterMap, for its tests: transform(), selectedIds(),
   stats (frameMs: the last full redraw; lassoMs: the last lasso or box selection), renderNow(). */
"use strict";

const MAP_BG = [255, 255, 255];
const MAP_GREY = "#9aa1b0";

function mapRgb(css) {
  // "#rrggbb" → [r, g, b]; anything else the browser parses, through a 1×1 canvas's fillStyle
  if (!/^#[0-9a-f]{6}$/i.test(css)) {
    if (!mapRgb.ctx) mapRgb.ctx = document.createElement("canvas").getContext("2d");
    mapRgb.ctx.fillStyle = "#000000";
    mapRgb.ctx.fillStyle = css;
    css = mapRgb.ctx.fillStyle;
    if (!/^#[0-9a-f]{6}$/i.test(css)) return [128, 128, 128];
  }
  return [1, 3, 5].map((k) => parseInt(css.slice(k, k + 2), 16));
}

function mapPack(rgb) {  // ImageData's byte order (RGBA) read as one little-endian uint32
  return ((255 << 24) | (rgb[2] << 16) | (rgb[1] << 8) | rgb[0]) >>> 0;
}

function mapMix(rgb, to, t) {
  return rgb.map((v, k) => Math.round(v + (to[k] - v) * t));
}

/* The class hue of overlay.js (and of vistudio.ml.inference.overlays): for a class the page was
   not told about, say one created since it loaded. */
function mapClassColour(ci) {
  return "hsl(" + ((ci * 137.508 + 2) % 360).toFixed(1) + ", 85%, 46%)";
}

class ScatterMap {
  constructor(canvas, hooks) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.hooks = hooks || {};
    this.n = 0;
    this.ids = new Float64Array(0);
    this.xs = new Float64Array(0);
    this.ys = new Float64Array(0);
    this.order = new Uint32Array(0);
    this.colour = new Uint16Array(0);
    this.sel = new Uint8Array(0);
    this.selCount = 0;
    this.setPalette([MAP_GREY]);
    this.view = { scale: 1, tx: 0, ty: 0 };
    this.fitScale = 1;
    this.touched = false;  // the user zoomed or panned: a resize keeps the view instead of refitting
    this.tool = "pan";
    this.gesture = null;
    this.hover = -1;
    this.pinned = -1;
    this.w = 0;
    this.h = 0;
    this.dpr = 1;
    this.image = null;
    this.buf = null;
    this.dirty = true;
    this.raf = 0;
    this.stats = { frameMs: 0, frames: 0, lassoMs: 0, selected: 0, lassoVertices: 0 };
    this.lastLasso = null;
    this.bindEvents();
    if (typeof ResizeObserver !== "undefined") {
      this.ro = new ResizeObserver(() => this.resize());
      this.ro.observe(canvas.parentElement);
    }
    this.resize();
  }

  /* ---- data ---- */

  /** ids, x, y: arrays of equal length (x, y in data units). */
  setData(ids, x, y) {
    const n = ids.length;
    this.n = n;
    this.ids = Float64Array.from(ids);
    this.xs = Float64Array.from(x);
    this.ys = Float64Array.from(y);
    this.colour = new Uint16Array(n);
    this.sel = new Uint8Array(n);
    this.selCount = 0;
    this.hover = -1;
    this.pinned = -1;
    // a fixed shuffled drawing order: no class is always drawn over the others
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    let seed = 0x9e3779b9;
    for (let i = n - 1; i > 0; i--) {
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      const j = (seed >>> 0) % (i + 1);
      const t = order[i]; order[i] = order[j]; order[j] = t;
    }
    this.order = order;
    this.buildGrid();
    this.touched = false;
    this.fit();
    this.emitSelection();
  }

  /** colour: one palette index per point; palette: CSS colours. */
  setColours(colour, palette) {
    this.colour = Uint16Array.from(colour);
    this.setPalette(palette);
    this.request(true);
  }

  setPalette(palette) {
    const rgb = palette.map(mapRgb);
    this.palette = Uint32Array.from(rgb.map(mapPack));
    // with a selection, the other points fade toward the background; selected ones get a dark rim
    this.faded = Uint32Array.from(rgb.map((c) => mapPack(mapMix(c, MAP_BG, 0.72))));
    this.rim = Uint32Array.from(rgb.map((c) => mapPack(mapMix(c, [20, 24, 40], 0.55))));
  }

  buildGrid() {
    const n = this.n;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = this.xs[i], y = this.ys[i];
      if (x < x0) x0 = x; if (x > x1) x1 = x;
      if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    if (!n) { x0 = y0 = 0; x1 = y1 = 1; }
    const g = Math.max(1, Math.min(1024, Math.ceil(Math.sqrt(n / 4))));
    const sx = g / ((x1 - x0) || 1), sy = g / ((y1 - y0) || 1);
    const start = new Int32Array(g * g + 1);
    const cell = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const cx = Math.min(g - 1, Math.floor((this.xs[i] - x0) * sx));
      const cy = Math.min(g - 1, Math.floor((this.ys[i] - y0) * sy));
      cell[i] = cy * g + cx;
      start[cell[i] + 1]++;
    }
    for (let c = 0; c < g * g; c++) start[c + 1] += start[c];
    const fill = start.slice(0, g * g);
    const items = new Int32Array(n);
    for (let i = 0; i < n; i++) items[fill[cell[i]]++] = i;
    this.grid = { g: g, x0: x0, y0: y0, x1: x1, y1: y1, sx: sx, sy: sy, start: start, items: items };
  }

  /** Calls fn(i) for the points of the grid cells that overlap the data rectangle. */
  eachInRect(ax, ay, bx, by, fn) {
    const G = this.grid;
    if (!this.n || bx < G.x0 || by < G.y0 || ax > G.x1 || ay > G.y1) return;
    const c0 = Math.max(0, Math.floor((ax - G.x0) * G.sx)), c1 = Math.min(G.g - 1, Math.floor((bx - G.x0) * G.sx));
    const r0 = Math.max(0, Math.floor((ay - G.y0) * G.sy)), r1 = Math.min(G.g - 1, Math.floor((by - G.y0) * G.sy));
    for (let r = r0; r <= r1; r++) {
      for (let c = c0; c <= c1; c++) {
        const cellId = r * G.g + c;
        for (let k = G.start[cellId], end = G.start[cellId + 1]; k < end; k++) fn(G.items[k]);
      }
    }
  }

  /* ---- view ---- */

  resize() {
    const box = this.canvas.parentElement;  // its inside, borders excluded
    const w = Math.max(1, box.clientWidth), h = Math.max(1, box.clientHeight);
    const dpr = Math.min(window.devicePixelRatio || 1, 3);
    if (w === this.w && h === this.h && dpr === this.dpr && this.image) return;
    const cx = this.w / 2, cy = this.h / 2;
    this.w = w; this.h = h; this.dpr = dpr;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.canvas.style.width = w + "px";
    this.canvas.style.height = h + "px";
    this.image = this.ctx.createImageData(this.canvas.width, this.canvas.height);
    this.buf = new Uint32Array(this.image.data.buffer);
    if (!this.touched) this.fit(true);
    else {  // keep what was in the middle in the middle
      this.view.tx += w / 2 - cx;
      this.view.ty += h / 2 - cy;
      this.request(true);
    }
  }

  fit(quiet) {
    const G = this.grid;
    const m = 24;
    const spanX = G ? (G.x1 - G.x0) || 1 : 1, spanY = G ? (G.y1 - G.y0) || 1 : 1;
    const scale = Math.max(1e-6, Math.min((this.w - 2 * m) / spanX, (this.h - 2 * m) / spanY));
    this.fitScale = scale;
    const x0 = G ? G.x0 : 0, y0 = G ? G.y0 : 0;
    this.view = {
      scale: scale,
      tx: (this.w - spanX * scale) / 2 - x0 * scale,
      ty: (this.h - spanY * scale) / 2 - y0 * scale,
    };
    if (!quiet) this.touched = false;
    this.request(true);
    this.emitView();
  }

  zoomAt(sx, sy, factor) {
    const v = this.view;
    const scale = Math.min(this.fitScale * 5000, Math.max(this.fitScale * 0.25, v.scale * factor));
    const k = scale / v.scale;
    v.tx = sx - (sx - v.tx) * k;
    v.ty = sy - (sy - v.ty) * k;
    v.scale = scale;
    this.touched = true;
    this.request(true);
    this.emitView();
  }

  /** The view, for tests: screen (CSS px, from the canvas's top left) = t + data × scale. */
  transform() {
    return { scale: this.view.scale, tx: this.view.tx, ty: this.view.ty, width: this.w, height: this.h, dpr: this.dpr };
  }

  toScreen(i) {
    return [this.view.tx + this.xs[i] * this.view.scale, this.view.ty + this.ys[i] * this.view.scale];
  }

  pointSize() {  // CSS px: smaller when there are many points, growing (slowly) as one zooms in
    const n = this.n;
    const base = n > 50000 ? 2 : n > 10000 ? 3 : n > 1000 ? 4 : 6;
    return Math.min(16, base * Math.sqrt(Math.max(1, this.view.scale / this.fitScale)));
  }

  /* ---- drawing ---- */

  request(points) {
    if (points) this.dirty = true;
    if (!this.raf) this.raf = requestAnimationFrame(() => { this.raf = 0; this.draw(); });
  }

  draw() {
    if (!this.image) return;
    if (this.dirty) this.renderPoints();
    else this.ctx.putImageData(this.image, 0, 0);
    this.dirty = false;
    this.drawOverlay();
  }

  /** Draws the points now (not at the next frame); returns the time it took in ms. */
  renderNow() {
    if (this.raf) { cancelAnimationFrame(this.raf); this.raf = 0; }
    this.dirty = true;
    this.draw();
    return this.stats.frameMs;
  }

  /** A point's pixels at ``size`` device px: 0 outside, 1 fill, 2 rim (``rim`` px wide, 0: none);
      a disc from 4 px up, a square below (a 2-px disc is a square anyway). Cached. */
  stamp(size, rim) {
    const key = size + ":" + rim;
    this.stamps = this.stamps || new Map();
    let st = this.stamps.get(key);
    if (st) return st;
    st = new Uint8Array(size * size);
    const r = size / 2;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let d;
        if (size < 4) d = Math.max(Math.abs(x + 0.5 - r), Math.abs(y + 0.5 - r)) + 0.5;
        else d = Math.hypot(x + 0.5 - r, y + 0.5 - r);
        if (d > r + 0.15) continue;
        st[y * size + x] = rim && d > r - rim ? 2 : 1;
      }
    }
    this.stamps.set(key, st);
    return st;
  }

  renderPoints() {
    const t0 = performance.now();
    const buf = this.buf, W = this.canvas.width, H = this.canvas.height;
    buf.fill(mapPack(MAP_BG));
    const d = this.dpr, s = this.view.scale * d, ox = this.view.tx * d, oy = this.view.ty * d;
    const ps = Math.max(1, Math.round(this.pointSize() * d));
    const xs = this.xs, ys = this.ys, order = this.order, colour = this.colour, sel = this.sel;
    const anySel = this.selCount > 0;
    const put = (i, pal, rimPal, size, st) => {
      const h2 = size / 2;
      const fx0 = Math.floor(ox + xs[i] * s - h2), fy0 = Math.floor(oy + ys[i] * s - h2);
      // points off screen (zoomed in) cost this test only
      if (fx0 + size <= 0 || fy0 + size <= 0 || fx0 >= W || fy0 >= H) return;
      const x0 = fx0 < 0 ? 0 : fx0, y0 = fy0 < 0 ? 0 : fy0;
      const x1 = fx0 + size > W ? W : fx0 + size, y1 = fy0 + size > H ? H : fy0 + size;
      const c = pal[colour[i]], r = rimPal[colour[i]];
      for (let y = y0; y < y1; y++) {
        const row = y * W, srow = (y - fy0) * size - fx0;
        for (let x = x0; x < x1; x++) {
          const v = st[srow + x];
          if (v === 1) buf[row + x] = c;
          else if (v === 2) buf[row + x] = r;
        }
      }
    };
    // a rim once points are big enough to show one; "nothing" (palette 0: no label, not tagged,
    // not evaluated) underneath the rest; a selection on top, bigger, the rest faded
    const rimW = ps >= 6 ? Math.max(1, Math.round(d)) : 0;
    const st = this.stamp(ps, anySel ? 0 : rimW);
    const pal = anySel ? this.faded : this.palette, rimPal = anySel ? this.faded : this.rim;
    for (let pass = 0; pass < 2; pass++) {
      for (let k = 0; k < this.n; k++) {
        const i = order[k];
        if ((colour[i] === 0) !== (pass === 0) || (anySel && sel[i])) continue;
        put(i, pal, rimPal, ps, st);
      }
    }
    if (anySel) {
      // small points (many of them) just grow a little: a dark rim on each would blacken a dense
      // selection; bigger ones get the rim that sets them off their faded neighbours
      const one = Math.max(1, Math.round(d));
      const big = ps >= 5 ? ps + 2 * one : ps + one, bigSt = this.stamp(big, ps >= 5 ? one : 0);
      for (let k = 0; k < this.n; k++) {
        const i = order[k];
        if (sel[i]) put(i, this.palette, this.rim, big, bigSt);
      }
    }
    this.ctx.putImageData(this.image, 0, 0);
    this.stats.frameMs = performance.now() - t0;
    this.stats.frames++;
  }

  drawOverlay() {
    const ctx = this.ctx, d = this.dpr;
    ctx.save();
    ctx.scale(d, d);
    const ring = (i, colour, width) => {
      if (i < 0 || i >= this.n) return;
      const [x, y] = this.toScreen(i);
      const r = this.pointSize() / 2 + 4;
      ctx.beginPath();
      ctx.arc(x, y, r, 0, 2 * Math.PI);
      ctx.lineWidth = width + 2;
      ctx.strokeStyle = "rgba(255, 255, 255, .9)";
      ctx.stroke();
      ctx.lineWidth = width;
      ctx.strokeStyle = colour;
      ctx.stroke();
    };
    ring(this.pinned, "#4f46e5", 2.5);
    ring(this.hover, "#1f2430", 1.5);
    const g = this.gesture;
    if (g && g.kind === "lasso" && g.pts.length > 1) {
      ctx.beginPath();
      ctx.moveTo(g.pts[0][0], g.pts[0][1]);
      for (const [x, y] of g.pts) ctx.lineTo(x, y);
      ctx.closePath();
      ctx.fillStyle = "rgba(79, 70, 229, .10)";
      ctx.fill();
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#4f46e5";
      ctx.stroke();
    } else if (g && g.kind === "box") {
      const x = Math.min(g.x0, g.x1), y = Math.min(g.y0, g.y1);
      ctx.fillStyle = "rgba(79, 70, 229, .10)";
      ctx.fillRect(x, y, Math.abs(g.x1 - g.x0), Math.abs(g.y1 - g.y0));
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "#4f46e5";
      ctx.strokeRect(x, y, Math.abs(g.x1 - g.x0), Math.abs(g.y1 - g.y0));
    }
    ctx.restore();
  }

  /* ---- picking and selecting ---- */

  /** The point nearest to (sx, sy) (CSS px) within r px, or -1. */
  nearest(sx, sy, r) {
    const v = this.view;
    const dx = (sx - v.tx) / v.scale, dy = (sy - v.ty) / v.scale, rd = r / v.scale;
    let best = -1, bestD = rd * rd;
    this.eachInRect(dx - rd, dy - rd, dx + rd, dy + rd, (i) => {
      const ex = this.xs[i] - dx, ey = this.ys[i] - dy, dd = ex * ex + ey * ey;
      if (dd <= bestD) { bestD = dd; best = i; }
    });
    return best;
  }

  /** Selects the points inside a polygon of screen points (CSS px); returns how many it holds. */
  selectPolygon(pts, add) {
    const t0 = performance.now();
    const v = this.view, n = pts.length;
    const px = new Float64Array(n), py = new Float64Array(n);
    let ax = Infinity, ay = Infinity, bx = -Infinity, by = -Infinity;
    for (let k = 0; k < n; k++) {
      px[k] = (pts[k][0] - v.tx) / v.scale;
      py[k] = (pts[k][1] - v.ty) / v.scale;
      if (px[k] < ax) ax = px[k]; if (px[k] > bx) bx = px[k];
      if (py[k] < ay) ay = py[k]; if (py[k] > by) by = py[k];
    }
    if (!add) this.sel.fill(0);
    let inside = 0;
    const xs = this.xs, ys = this.ys, sel = this.sel;
    this.eachInRect(ax, ay, bx, by, (i) => {
      const x = xs[i], y = ys[i];
      if (x < ax || x > bx || y < ay || y > by) return;
      // even-odd rule: count the polygon's edges crossed by a ray from the point to the right
      let odd = false;
      for (let a = 0, b = n - 1; a < n; b = a++) {
        const ya = py[a], yb = py[b];
        if ((ya > y) !== (yb > y) && x < ((px[b] - px[a]) * (y - ya)) / (yb - ya) + px[a]) odd = !odd;
      }
      if (odd) { sel[i] = 1; inside++; }
    });
    this.finishSelection(t0, inside);
    this.lastLasso = pts.map((p) => [p[0], p[1]]);
    this.stats.lassoVertices = n;
    return inside;
  }

  /** Selects the points inside a screen rectangle (CSS px). */
  selectBox(x0, y0, x1, y1, add) {
    const t0 = performance.now();
    const v = this.view;
    const ax = (Math.min(x0, x1) - v.tx) / v.scale, bx = (Math.max(x0, x1) - v.tx) / v.scale;
    const ay = (Math.min(y0, y1) - v.ty) / v.scale, by = (Math.max(y0, y1) - v.ty) / v.scale;
    if (!add) this.sel.fill(0);
    let inside = 0;
    this.eachInRect(ax, ay, bx, by, (i) => {
      const x = this.xs[i], y = this.ys[i];
      if (x >= ax && x <= bx && y >= ay && y <= by) { this.sel[i] = 1; inside++; }
    });
    this.finishSelection(t0, inside);
    return inside;
  }

  /** Selects the points whose palette index is ``index``. */
  selectColour(index, add) {
    const t0 = performance.now();
    if (!add) this.sel.fill(0);
    let inside = 0;
    for (let i = 0; i < this.n; i++) if (this.colour[i] === index) { this.sel[i] = 1; inside++; }
    this.finishSelection(t0, inside);
    return inside;
  }

  finishSelection(t0, inside) {
    let count = 0;
    for (let i = 0; i < this.n; i++) count += this.sel[i];
    this.selCount = count;
    this.stats.lassoMs = performance.now() - t0;
    this.stats.selected = inside;
    this.request(true);
    this.emitSelection();
  }

  clearSelection() {
    this.sel.fill(0);
    this.selCount = 0;
    this.request(true);
    this.emitSelection();
  }

  selectedIds() {
    const out = [];
    for (let i = 0; i < this.n; i++) if (this.sel[i]) out.push(this.ids[i]);
    return out;
  }

  setTool(tool) {
    this.tool = tool;
  }

  pin(i) {
    this.pinned = i;
    this.request(false);
  }

  emitSelection() { if (this.hooks.selection) this.hooks.selection(this.selCount); }
  emitView() { if (this.hooks.view) this.hooks.view(this.view.scale / this.fitScale); }

  /* ---- input ---- */

  local(e) {
    const r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  hitRadius() { return Math.max(6, this.pointSize() / 2 + 3); }

  setHover(i, sx, sy) {
    if (i === this.hover && i < 0) return;
    const changed = i !== this.hover;
    this.hover = i;
    if (this.hooks.hover) this.hooks.hover(i, sx, sy, changed);
    if (changed) this.request(false);
  }

  bindEvents() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 && e.button !== 1) return;
      if (!this.n) return;
      e.preventDefault();
      c.focus({ preventScroll: true });
      c.setPointerCapture(e.pointerId);
      const [sx, sy] = this.local(e);
      const add = e.ctrlKey || e.metaKey;
      let kind = "pan";
      if (e.button === 0 && (e.shiftKey || this.tool === "box")) kind = "box";
      else if (e.button === 0 && this.tool === "lasso") kind = "lasso";
      this.gesture = { kind: kind, add: add, x0: sx, y0: sy, x1: sx, y1: sy, moved: 0, pts: [[sx, sy]], tx: this.view.tx, ty: this.view.ty, id: e.pointerId };
      this.setHover(-1, sx, sy);
    });
    c.addEventListener("pointermove", (e) => {
      const g = this.gesture;
      if (!g) {
        const [sx, sy] = this.local(e);
        this.setHover(this.nearest(sx, sy, this.hitRadius()), sx, sy);
        return;
      }
      if (e.pointerId !== g.id) return;
      // every position the mouse passed, not only the one per frame the browser dispatches
      const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
      for (const ev of events.length ? events : [e]) {
        const [sx, sy] = this.local(ev);
        g.moved = Math.max(g.moved, Math.abs(sx - g.x0) + Math.abs(sy - g.y0));
        g.x1 = sx; g.y1 = sy;
        if (g.kind === "lasso") {
          const last = g.pts[g.pts.length - 1];
          if (last[0] !== sx || last[1] !== sy) g.pts.push([sx, sy]);
        }
      }
      if (g.kind === "pan") {
        this.view.tx = g.tx + (g.x1 - g.x0);
        this.view.ty = g.ty + (g.y1 - g.y0);
        if (g.moved > 3) this.touched = true;
        this.request(true);
      } else {
        this.request(false);
      }
    });
    const end = (e, cancelled) => {
      const g = this.gesture;
      if (!g || e.pointerId !== g.id) return;
      this.gesture = null;
      if (c.hasPointerCapture(e.pointerId)) c.releasePointerCapture(e.pointerId);
      const [sx, sy] = this.local(e);
      if (cancelled) { this.request(false); return; }
      if (g.moved <= 3) {  // a click: show the point under it
        const i = this.nearest(sx, sy, this.hitRadius());
        if (i >= 0 && this.hooks.pick) this.hooks.pick(i);
        this.request(false);
        return;
      }
      if (g.kind === "lasso") {
        if (g.pts.length >= 3) this.selectPolygon(g.pts, g.add);
      } else if (g.kind === "box") {
        this.selectBox(g.x0, g.y0, g.x1, g.y1, g.add);
      }
      this.request(false);
    };
    c.addEventListener("pointerup", (e) => end(e, false));
    c.addEventListener("pointercancel", (e) => end(e, true));
    c.addEventListener("pointerleave", (e) => { if (!this.gesture) this.setHover(-1, 0, 0); void e; });
    c.addEventListener("wheel", (e) => {
      if (!this.n) return;
      e.preventDefault();
      const [sx, sy] = this.local(e);
      const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaMode === 2 ? e.deltaY * this.h : e.deltaY;
      this.zoomAt(sx, sy, Math.exp(-dy * 0.0015));
      this.setHover(-1, sx, sy);
    }, { passive: false });
    c.addEventListener("contextmenu", (e) => { if (this.gesture) e.preventDefault(); });
  }

  /** Keys the page passes on (when no text field has the focus). */
  key(e) {
    const k = e.key;
    const step = 60;
    if (k === "+" || k === "=") this.zoomAt(this.w / 2, this.h / 2, 1.4);
    else if (k === "-" || k === "_") this.zoomAt(this.w / 2, this.h / 2, 1 / 1.4);
    else if (k === "ArrowLeft" || k === "ArrowRight" || k === "ArrowUp" || k === "ArrowDown") {
      if (k === "ArrowLeft") this.view.tx += step;
      if (k === "ArrowRight") this.view.tx -= step;
      if (k === "ArrowUp") this.view.ty += step;
      if (k === "ArrowDown") this.view.ty -= step;
      this.touched = true;
      this.request(true);
    } else return false;
    return true;
  }
}
