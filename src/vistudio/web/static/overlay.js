/* Annotation overlays, drawn in the browser from the annotation JSON (no overlay images are stored).

   A <canvas data-overlay='{"w": W, "h": H, "a": [annotation, ...]}'> laid over an image (or a
   thumbnail that keeps the image's aspect ratio, shown whole: object-fit contain) gets the
   annotations drawn at the image's scale: boxes with the class colour and name, polygons and RLE
   masks filled semi-transparent with one colour per instance (hue by class), crowd / difficult
   objects dashed. Annotations follow vistudio's geometry conventions: boxes and polygons
   normalised 0..1 of the displayed image, RLE masks ({"size": [h, w], "counts"}) in pixels.

   Semantic segmentation regions ({"regions": true} in the data): a region is not an instance, so
   every region of a class has the class colour (no lightness per instance) and no name on the
   image (the legend names them); the ignored region (a mask with no class, value 255 of a label
   image) is drawn hatched grey, with its own toggle ("ignored" in the settings).

   Other pages draw their own objects: set canvas._overlay = {w, h, items} (items as made by
   Overlay.item) and call Overlay.observe(canvas). Canvases are drawn lazily, when they come into
   view, so a grid of a thousand tiles costs only what is on the screen.

   Per-class toggles and the opacity live in localStorage, per project ([data-overlay-scope]). */
"use strict";

const Overlay = (() => {
  const settings = { hidden: new Set(), opacity: 0.35, show: true, labels: true, ignored: true };
  let classes = [];
  let scope = "";
  const visible = new Set();
  let draws = 0;  // how many times a canvas was drawn (the page's tests read it)
  const io = typeof IntersectionObserver !== "undefined"
    ? new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (e.isIntersecting) { visible.add(e.target); draw(e.target); } else visible.delete(e.target);
      }
    }, { rootMargin: "200px" })
    : null;
  const ro = typeof ResizeObserver !== "undefined"
    ? new ResizeObserver((entries) => { for (const e of entries) if (visible.has(e.target)) draw(e.target); })
    : null;

  /* ---- colours: hue by class (golden angle), lightness by instance; the same formula as
     class_hue / class_colour of vistudio.ml.inference.overlays (saved overlay images) ---- */
  function classIndex(name) {
    const i = classes.indexOf(name);
    if (i >= 0) return i;
    let h = 0;  // a class the page does not list still gets a stable colour
    for (const ch of String(name)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return classes.length + (h % 97);
  }
  function hue(ci) { return (ci * 137.508 + 2) % 360; }
  const LIGHT = [46, 34, 58, 40, 52];
  function colour(ci, inst) {
    return "hsl(" + hue(ci).toFixed(1) + ", 85%, " + LIGHT[(inst || 0) % LIGHT.length] + "%)";
  }
  function rgb(css) {  // "hsl(...)" or "#rrggbb" → [r, g, b] through a 1×1 canvas
    if (!rgb.ctx) rgb.ctx = document.createElement("canvas").getContext("2d", { willReadFrequently: true });
    const c = rgb.ctx;
    c.clearRect(0, 0, 1, 1);
    c.fillStyle = css;
    c.fillRect(0, 0, 1, 1);
    const d = c.getImageData(0, 0, 1, 1).data;
    return [d[0], d[1], d[2]];
  }

  /* ---- COCO RLE ---- */
  function rleCounts(counts) {
    if (Array.isArray(counts)) return counts.map(Number);
    const out = [];
    let p = 0;
    while (p < counts.length) {
      let x = 0, k = 0, more = true;
      while (more) {
        if (p >= counts.length) throw new Error("truncated RLE string");
        const c = counts.charCodeAt(p) - 48;
        if (c < 0 || c > 63) throw new Error("not an RLE string");
        x |= (c & 0x1f) << (5 * k);
        more = (c & 0x20) !== 0;
        p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (out.length > 2) x += out[out.length - 2];
      out.push(x);
    }
    return out;
  }

  /* The bounding box [x0, y0, x1, y1] (normalised) of an RLE mask, or null when it is empty or
     does not fit its declared size. */
  function rleBox(rle) {
    const h = rle.size[0], w = rle.size[1];
    const counts = rleCounts(rle.counts);
    let i = 0, x0 = w, y0 = h, x1 = -1, y1 = -1, total = 0;
    for (let k = 0; k < counts.length; k++) {
      const n = counts[k];
      if (n < 0) return null;
      if (k % 2 === 1 && n > 0) {
        const xa = (i / h) | 0, xb = ((i + n - 1) / h) | 0;
        x0 = Math.min(x0, xa); x1 = Math.max(x1, xb);
        if (xa !== xb) { y0 = 0; y1 = h - 1; } else {
          y0 = Math.min(y0, i - xa * h); y1 = Math.max(y1, i + n - 1 - xa * h);
        }
      }
      i += n; total += n;
    }
    if (total !== h * w || x1 < 0) return null;
    return [x0 / w, y0 / h, (x1 + 1) / w, (y1 + 1) / h];
  }

  /* The mask as canvases of its own size — its pixels (canvas) and its edge pixels (edge) in
     ``css`` colour — with its bounding box, or null for an RLE that does not fit its size.
     ``frame`` false: pixels on the image's border are not edges (a region reaching the border is
     not outlined along it: only where it meets another region). */
  function rleMask(rle, css, frame) {
    const h = rle.size[0], w = rle.size[1];
    if (!(w > 0 && h > 0) || w * h > 64e6) return null;
    const counts = rleCounts(rle.counts);
    let total = 0;
    for (const c of counts) { if (c < 0) return null; total += c; }
    if (total !== h * w) return null;
    const bits = new Uint8Array(w * h);  // row-major
    let i = 0;
    for (let k = 0; k < counts.length; k++) {
      const n = counts[k];
      if (k % 2 === 1) {
        for (let j = i; j < i + n; j++) {  // column-major: j = x * h + y
          const x = (j / h) | 0;
          bits[(j - x * h) * w + x] = 1;
        }
      }
      i += n;
    }
    const [r, g, b] = rgb(css);
    const paint = (keep) => {
      const cv = document.createElement("canvas");
      cv.width = w; cv.height = h;
      const ctx = cv.getContext("2d");
      const img = ctx.createImageData(w, h);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
        const q = y * w + x;
        if (!bits[q] || !keep(x, y, q)) continue;
        const o = q * 4;
        img.data[o] = r; img.data[o + 1] = g; img.data[o + 2] = b; img.data[o + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      return cv;
    };
    const out = frame !== false;  // what lies past the image's border counts as outside
    const edgeOf = (x, y, q) => (x > 0 ? !bits[q - 1] : out) || (x < w - 1 ? !bits[q + 1] : out)
      || (y > 0 ? !bits[q - w] : out) || (y < h - 1 ? !bits[q + w] : out);
    return { canvas: paint(() => true), edge: paint(edgeOf), box: rleBox(rle) };
  }

  /* Decoded masks, kept per RLE object, colour and frame: items made again at each draw reuse them. */
  const masks = new WeakMap();
  function maskFor(rle, col, frame) {
    let byColour = masks.get(rle);
    if (!byColour) { byColour = new Map(); masks.set(rle, byColour); }
    const key = frame === false ? col + "|unframed" : col;
    if (!byColour.has(key)) {
      let m = null;
      try { m = rleMask(rle, col, frame); } catch (e) { m = null; }
      byColour.set(key, m);
    }
    return byColour.get(key);
  }

  /* ---- drawable items ---- */
  /* One thing to draw: {cls (class index), label, box [x0, y0, x1, y1] normalised, polys
     [[[x, y], ...]] normalised, rle {size, counts}, crowd, stroke, fill, dash, mask: "fill" |
     "outline", hideable (the class toggles apply)}; anything left out takes the class colour. */
  function item(props) { return Object.assign({ hideable: true, mask: "fill" }, props); }

  function bounds(polys) {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const ring of polys) for (const p of ring) {
      x0 = Math.min(x0, p[0]); y0 = Math.min(y0, p[1]); x1 = Math.max(x1, p[0]); y1 = Math.max(y1, p[1]);
    }
    return x1 >= x0 ? [x0, y0, x1, y1] : null;
  }

  function finite(...v) { return v.every((x) => typeof x === "number" && isFinite(x)); }

  /* Items from annotations as stored ({kind, class, geometry}); what cannot be drawn is skipped.
     ``regions``: semantic segmentation (class colours only, no names, a class-less mask ignored). */
  function fromAnnotations(anns, regions) {
    const out = [];
    const perClass = {};
    for (const a of anns || []) {
      const g = a.geometry || {};
      const name = a["class"] || a.kind;
      const cls = classIndex(name);
      const crowd = !!(g.iscrowd || g.difficult);
      const base = { cls: cls, label: name, crowd: crowd };
      if (regions) {
        Object.assign(base, { noLabel: true, crowd: false, region: true });
        if (!a["class"]) Object.assign(base, { ignore: true, hideable: false, cls: -1, label: null });
      }
      if (a.kind === "box") {
        if (!finite(g.x, g.y, g.w, g.h)) continue;
        out.push(item(Object.assign(base, { box: [g.x, g.y, g.x + g.w, g.y + g.h] })));
        continue;
      }
      let polys = null, rle = null;
      if (a.kind === "polygon" && Array.isArray(g.polygons)) {
        polys = g.polygons.filter((r) => Array.isArray(r) && r.length >= 3 && r.every((p) => Array.isArray(p) && finite(p[0], p[1])));
      } else if (a.kind === "rotated_box" && Array.isArray(g.points) && g.points.length === 4) {
        polys = [g.points];
        if (!g.points.every((p) => Array.isArray(p) && finite(p[0], p[1]))) continue;
      } else if (a.kind === "mask_rle" && Array.isArray(g.size) && g.size.length === 2 && (typeof g.counts === "string" || Array.isArray(g.counts))) {
        rle = { size: g.size, counts: g.counts };
      } else continue;
      if (polys && !polys.length) continue;
      let box = null;
      try { box = polys ? bounds(polys) : rleBox(rle); } catch (e) { continue; }
      perClass[cls] = regions ? 1 : (perClass[cls] || 0) + 1;
      // a polygon's name sits at its top vertex (a rotated box's corner, not its bounds' corner)
      const anchor = polys ? polys[0].reduce((a, p) => (p[1] < a[1] || (p[1] === a[1] && p[0] < a[0]) ? p : a)) : null;
      out.push(item(Object.assign(base, { polys: polys, rle: rle, box: box, anchor: anchor, inst: perClass[cls] - 1 })));
    }
    return pairBoxes(out);
  }

  /* An object imported with a box and a mask (COCO) is one object: its box is drawn thin around
     its mask, in the mask's colour, with one name. */
  function pairBoxes(items) {
    const masks = items.filter((it) => (it.polys || it.rle) && it.box);
    if (!masks.length) return items;
    const near = (a, b) => Math.max(...a.map((v, i) => Math.abs(v - b[i]))) < 0.02;
    return items.filter((it) => {
      if (it.polys || it.rle || !it.box) return true;
      const m = masks.find((mk) => !mk.boxed && mk.cls === it.cls && near(mk.box, it.box));
      if (!m) return true;
      m.boxed = true;
      m.box = it.box;
      return false;
    });
  }

  function dataOf(canvas) {
    if (canvas._build) return canvas._build();  // a page that makes its items at each draw
    if (canvas._overlay) return canvas._overlay;
    try {
      const d = JSON.parse(canvas.dataset.overlay || "{}");
      canvas._overlay = { w: d.w, h: d.h, items: fromAnnotations(d.a, !!d.regions) };
    } catch (e) {
      canvas._overlay = { w: 0, h: 0, items: [] };
    }
    return canvas._overlay;
  }

  /* ---- drawing ---- */
  function roundRect(ctx, x, y, w, h, r) {
    ctx.beginPath();
    ctx.moveTo(x + r, y); ctx.lineTo(x + w - r, y); ctx.quadraticCurveTo(x + w, y, x + w, y + r);
    ctx.lineTo(x + w, y + h); ctx.lineTo(x, y + h); ctx.lineTo(x, y + r); ctx.quadraticCurveTo(x, y, x + r, y);
    ctx.closePath();
  }

  function draw(canvas) {
    const data = dataOf(canvas);
    const cssW = canvas.clientWidth, cssH = canvas.clientHeight;
    if (!cssW || !cssH) return;
    const dpr = Math.min(window.devicePixelRatio || 1, 3);
    const W = Math.round(cssW * dpr), H = Math.round(cssH * dpr);
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    const ctx = canvas.getContext("2d");
    draws++;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, W, H);
    canvas.dataset.drawn = "0";
    if (!settings.show || !(data.w > 0 && data.h > 0)) return;
    ctx.scale(dpr, dpr);
    // where the image lies in the box: the whole image, centred (object-fit: contain)
    const s = Math.min(cssW / data.w, cssH / data.h);
    const iw = data.w * s, ih = data.h * s, ox = (cssW - iw) / 2, oy = (cssH - ih) / 2;
    const X = (u) => ox + u * iw, Y = (v) => oy + v * ih;
    const small = cssW < 220;
    const line = small ? 1.25 : 2;
    const op = settings.opacity;
    const shown = data.items.filter((it) => !(it.hideable && settings.hidden.has(it.cls)) && !it.off
      && !(it.ignore && !settings.ignored));
    let drawn = 0;
    // ignored regions under everything, hatched; then masks and polygons (filled), then every
    // outline, then the names on top
    for (const it of shown) {
      if (!it.ignore) continue;
      hatch(ctx, it, { ox: ox, oy: oy, iw: iw, ih: ih, dpr: dpr, smooth: iw < data.w, X: X, Y: Y }, op);
      drawn++;
    }
    for (const it of shown) {
      if (it.ignore) continue;
      const col = it.fill || colour(it.cls, it.inst);
      if (it.rle) {
        it._mask = maskFor(it.rle, col, !it.region);
        if (it._mask && it.mask === "fill" && op > 0) {
          ctx.globalAlpha = op;
          ctx.imageSmoothingEnabled = iw < data.w;
          ctx.drawImage(it._mask.canvas, ox, oy, iw, ih);
          ctx.globalAlpha = 1;
        }
      } else if (it.polys && it.mask === "fill" && op > 0) {
        ctx.globalAlpha = op;
        ctx.fillStyle = col;
        ctx.beginPath();
        for (const ring of it.polys) {
          ring.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
          ctx.closePath();
        }
        ctx.fill("evenodd");
        ctx.globalAlpha = 1;
      }
    }
    for (const it of shown) {
      if (it.ignore) continue;
      const col = it.stroke || colour(it.cls, it.polys || it.rle ? it.inst : 0);
      ctx.strokeStyle = col;
      ctx.lineWidth = it.lineWidth || line;
      ctx.setLineDash(it.dash || (it.crowd ? [5, 3] : []));
      if (it.polys) {
        ctx.beginPath();
        for (const ring of it.polys) {
          ring.forEach((p, i) => (i ? ctx.lineTo(X(p[0]), Y(p[1])) : ctx.moveTo(X(p[0]), Y(p[1]))));
          ctx.closePath();
        }
        ctx.stroke();
      } else if (it.rle) {
        if (it._mask) {  // the mask's edge pixels, opaque (dashed outlines are boxed instead)
          ctx.imageSmoothingEnabled = iw < data.w;
          ctx.drawImage(it._mask.edge, ox, oy, iw, ih);
        }
      }
      if ((it.polys || it.rle) && it.box && (it.boxed || (it.rle && it.dash))) {
        ctx.lineWidth = 1;
        ctx.globalAlpha = 0.8;
        ctx.strokeRect(X(it.box[0]), Y(it.box[1]), X(it.box[2]) - X(it.box[0]), Y(it.box[3]) - Y(it.box[1]));
        ctx.globalAlpha = 1;
      } else if (!it.polys && !it.rle && it.box) {
        const x = X(it.box[0]), y = Y(it.box[1]);
        const w = X(it.box[2]) - x, h = Y(it.box[3]) - y;
        if (op > 0 && !it.noFill) {
          ctx.globalAlpha = op * 0.35;
          ctx.fillStyle = it.fill || col;
          ctx.fillRect(x, y, w, h);
          ctx.globalAlpha = 1;
        }
        ctx.strokeRect(x, y, w, h);
      }
      ctx.setLineDash([]);
      drawn++;
    }
    if (settings.labels) {
      const font = small ? 9 : 12;
      ctx.font = "600 " + font + "px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
      ctx.textBaseline = "top";
      for (const it of shown) {
        if (!it.box || it.label == null || it.noLabel) continue;
        const at = it.anchor && !it.boxed ? it.anchor : it.box;
        const x = X(at[0]), y = Y(at[1]);
        const bw = Math.max(X(it.box[2]) - x, small ? 18 : 40);
        if (small && X(it.box[2]) - x < 18) continue;
        const text = fitText(ctx, String(it.label), Math.min(bw + (small ? 0 : 60), cssW - x - 2));
        if (!text) continue;
        const tw = ctx.measureText(text).width + 6, th = font + 4;
        // above the box when there is room, else inside its top edge
        const ty = y - th >= 0 ? y - th : y;
        ctx.fillStyle = it.stroke || colour(it.cls, it.polys || it.rle ? it.inst : 0);
        roundRect(ctx, Math.max(0, x), ty, tw, th, 2);
        ctx.fill();
        ctx.fillStyle = "#fff";
        ctx.fillText(text, Math.max(0, x) + 3, ty + 2);
      }
    }
    canvas.dataset.drawn = String(drawn);
  }

  /* An ignored region: neutral grey with light diagonal stripes, fixed on the screen (not scaled
     with the image, so the stripes stay fine on a thumbnail and on a zoomed detail alike). The
     region is drawn into a scratch canvas, and the stripes kept only where it is (source-in). */
  const HATCH = "#5f6673", STRIPE = "#e6e8ec", IGNORE_MIN_ALPHA = 0.45;
  let hatchTile = null, scratch = null;
  function hatch(ctx, it, at, op) {
    if (op <= 0) return;  // outlines only: an ignored region has no outline of its own
    const W = ctx.canvas.width, H = ctx.canvas.height;
    if (!hatchTile) {
      hatchTile = document.createElement("canvas");
      hatchTile.width = hatchTile.height = 8;
      const t = hatchTile.getContext("2d");
      t.fillStyle = HATCH; t.fillRect(0, 0, 8, 8);
      t.strokeStyle = STRIPE; t.lineWidth = 1.6;
      t.beginPath();
      for (const d of [-8, 0, 8]) { t.moveTo(d, 8); t.lineTo(d + 8, 0); }
      t.stroke();
    }
    if (!scratch) scratch = document.createElement("canvas");
    if (scratch.width !== W || scratch.height !== H) { scratch.width = W; scratch.height = H; }
    const s = scratch.getContext("2d");
    s.setTransform(1, 0, 0, 1, 0, 0);
    s.globalCompositeOperation = "source-over";
    s.clearRect(0, 0, W, H);
    s.scale(at.dpr, at.dpr);
    if (it.rle) {
      const m = maskFor(it.rle, HATCH);
      if (!m) return;
      s.imageSmoothingEnabled = at.smooth;
      s.drawImage(m.canvas, at.ox, at.oy, at.iw, at.ih);
    } else if (it.polys) {
      s.fillStyle = HATCH;
      s.beginPath();
      for (const ring of it.polys) {
        ring.forEach((p, i) => (i ? s.lineTo(at.X(p[0]), at.Y(p[1])) : s.moveTo(at.X(p[0]), at.Y(p[1]))));
        s.closePath();
      }
      s.fill("evenodd");
    } else return;
    s.setTransform(1, 0, 0, 1, 0, 0);
    s.globalCompositeOperation = "source-in";
    s.fillStyle = s.createPattern(hatchTile, "repeat");
    s.fillRect(0, 0, W, H);
    s.globalCompositeOperation = "source-over";
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = Math.max(op, IGNORE_MIN_ALPHA);
    ctx.drawImage(scratch, 0, 0);
    ctx.restore();
  }

  function fitText(ctx, text, max) {
    if (max < 14) return "";
    if (ctx.measureText(text).width + 6 <= max) return text;
    let lo = 0, hi = text.length;
    while (lo < hi) {  // the longest prefix that fits with an ellipsis
      const mid = (lo + hi + 1) >> 1;
      if (ctx.measureText(text.slice(0, mid) + "…").width + 6 <= max) lo = mid; else hi = mid - 1;
    }
    return lo ? text.slice(0, lo) + "…" : "";
  }

  /* ---- wiring ---- */
  function observe(canvas) {
    if (canvas._observed) { if (visible.has(canvas)) draw(canvas); return; }
    canvas._observed = true;
    if (io) io.observe(canvas); else { visible.add(canvas); draw(canvas); }
    if (ro) ro.observe(canvas);
  }

  function scan(root) {
    (root || document).querySelectorAll("canvas[data-overlay]").forEach(observe);
    // canvases taken out of the page stop being drawn
    for (const c of [...visible]) if (!c.isConnected) { visible.delete(c); if (io) io.unobserve(c); if (ro) ro.unobserve(c); }
  }

  function refresh() { for (const c of visible) draw(c); }

  function storageKey() { return "vistudio.overlay." + scope; }
  function load() {
    const el = document.querySelector("[data-overlay-scope]");
    if (!el) return;
    scope = el.dataset.overlayScope;
    try { classes = JSON.parse(el.dataset.overlayClasses || "[]"); } catch (e) { classes = []; }
    try {
      const saved = JSON.parse(localStorage.getItem(storageKey()) || "null");
      if (saved) {
        settings.hidden = new Set((saved.hidden || []).map((n) => classIndex(n)));
        if (typeof saved.opacity === "number") settings.opacity = Math.max(0, Math.min(1, saved.opacity));
        if (typeof saved.show === "boolean") settings.show = saved.show;
        if (typeof saved.labels === "boolean") settings.labels = saved.labels;
        if (typeof saved.ignored === "boolean") settings.ignored = saved.ignored;
      }
    } catch (e) { /* private mode or a damaged entry: defaults */ }
  }
  function save() {
    if (!scope) return;
    const hidden = classes.filter((n, i) => settings.hidden.has(i));
    try {
      localStorage.setItem(storageKey(), JSON.stringify({ hidden: hidden, opacity: settings.opacity, show: settings.show, labels: settings.labels, ignored: settings.ignored }));
    } catch (e) { /* storage full or refused: the choice lasts for this page */ }
  }

  /* The controls: [data-overlay-controls] holding inputs data-ov="show|labels|opacity|ignored" and
     data-ov-class="NAME" checkboxes (several sets may be on a page: the grid's and the detail's);
     every set shows the saved choice and changes it. */
  function changed() { save(); refresh(); syncAll(); }

  function bindControls(root) {
    (root || document).querySelectorAll("[data-overlay-controls]").forEach((box) => {
      if (box._bound) return;
      box._bound = true;
      box.querySelectorAll("[data-ov-class]").forEach((cb) => {
        const ci = classIndex(cb.dataset.ovClass);
        // the swatch, and a legend's share bar, in the class colour
        cb.parentElement.querySelectorAll(".ov-swatch").forEach((sw) => { sw.style.background = colour(ci, 0); });
        cb.addEventListener("change", () => {
          if (cb.checked) settings.hidden.delete(ci); else settings.hidden.add(ci);
          changed();
        });
      });
      box.querySelectorAll("[data-ov]").forEach((el) => {
        el.addEventListener("input", () => {
          const key = el.dataset.ov;
          settings[key] = key === "opacity" ? parseFloat(el.value) / 100 : el.checked;
          changed();
        });
      });
      box.querySelectorAll("[data-ov-all]").forEach((btn) => btn.addEventListener("click", () => {
        const on = btn.dataset.ovAll === "on";
        box.querySelectorAll("[data-ov-class]").forEach((cb) => {
          const ci = classIndex(cb.dataset.ovClass);
          if (on) settings.hidden.delete(ci); else settings.hidden.add(ci);
        });
        changed();
      }));
    });
    syncAll();
  }

  function syncAll() {
    document.querySelectorAll("[data-overlay-controls]").forEach((box) => {
      box.querySelectorAll("[data-ov-class]").forEach((cb) => { cb.checked = !settings.hidden.has(classIndex(cb.dataset.ovClass)); });
      box.querySelectorAll("[data-ov]").forEach((el) => {
        const key = el.dataset.ov;
        if (key === "opacity") el.value = String(Math.round(settings.opacity * 100));
        else el.checked = !!settings[key];
      });
      const out = box.querySelector("[data-ov-opacity-value]");
      if (out) out.textContent = Math.round(settings.opacity * 100) + "%";
      box.classList.toggle("ov-off", !settings.show);
    });
  }

  function init(root) {
    if (!scope) load();
    bindControls(root);
    scan(root);
  }

  document.addEventListener("DOMContentLoaded", () => {
    init(document);
    document.body.addEventListener("htmx:afterSettle", (e) => init(e.target));
    window.addEventListener("resize", refresh);
  });

  return {
    settings: settings,
    item: item,
    fromAnnotations: fromAnnotations,
    rleCounts: rleCounts,
    rleMask: rleMask,
    rleBox: rleBox,
    mask: maskFor,  // the decoded mask of an RLE object in a colour, cached (the editor draws them too)
    fitText: fitText,
    roundRect: roundRect,
    colour: colour,
    classIndex: classIndex,
    setClasses: (names) => { classes = names.slice(); },
    observe: observe,
    scan: scan,
    refresh: refresh,
    draw: draw,
    stats: () => ({ draws: draws, visible: visible.size }),
  };
})();
