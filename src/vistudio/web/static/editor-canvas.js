/* The annotation editor's canvas (editor-canvas.js; no build step; uses Overlay from overlay.js for
   the class colours, names and masks). editorCore draws an image's objects over it and edits them:
   boxes, polygons and rotated boxes drawn, selected, moved and reshaped with the pointer and the
   keys, masks shown (selectable, not reshaped), zoom around the cursor and pan, and its own undo
   steps. It holds geometry in image pixels and hands out the objects as stored (normalised 0..1,
   vistudio's conventions), those not touched exactly as they came; it knows nothing of the server
   (editor.js saves). A polygon imported with its box (COCO) is one object: its box follows the
   polygon's bounds when the polygon changes. */
"use strict";

const ED = {
  HIT: 7,          // how near (CSS px) the pointer must be to a handle or a vertex
  EDGE: 5,         // ... to an outline
  ROT: 26,         // the rotate handle's distance beyond a rotated box's top edge (CSS px)
  MARGIN: 16,      // around the fitted image, so that the handles on its border show whole
  MIN: 1,          // the smallest side of a box (image px)
  STEPS: 500,      // undo steps kept
};
const MASK_HINT = "Change its class (type it, or keys 1–9) or press Delete to remove it.";
const KIND_NAMES = { box: "box", polygon: "polygon", rotated_box: "rotated box", mask_rle: "mask" };
const TOOL_HINTS = {
  select: "Click an object to select it, drag to move it, drag its handles to reshape it; double-click a polygon’s edge to add a point.",
  box: "Drag to draw a box.",
  polygon: "Click to add points; click the first point, double-click or press Enter to close it; Esc cancels.",
  rotated_box: "Drag to draw a box, then turn it with its round handle (Shift: 15° steps).",
};

/* ---- geometry (image pixels; points are [x, y]) ---- */
function edBounds(points) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const p of points) {
    if (p[0] < x0) x0 = p[0];
    if (p[0] > x1) x1 = p[0];
    if (p[1] < y0) y0 = p[1];
    if (p[1] > y1) y1 = p[1];
  }
  return [x0, y0, x1, y1];
}
function edPoints(o) {
  if (o.box) return [[o.box[0], o.box[1]], [o.box[2], o.box[3]]];
  if (o.rings) return o.rings.flat();
  if (o.pts) return o.pts;
  if (o.mbox) return [[o.mbox[0], o.mbox[1]], [o.mbox[2], o.mbox[3]]];
  return [];
}
function edInside(rings, x, y) {  // even-odd, as the rings are filled
  let inside = false;
  for (const r of rings) {
    for (let i = 0, j = r.length - 1; i < r.length; j = i++) {
      const xi = r[i][0], yi = r[i][1], xj = r[j][0], yj = r[j][1];
      if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
  }
  return inside;
}
function edSegment(p, a, b) {  // distance from p to segment ab, and the nearest point on it
  const dx = b[0] - a[0], dy = b[1] - a[1];
  const len = dx * dx + dy * dy;
  const t = len ? Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len)) : 0;
  const q = [a[0] + t * dx, a[1] + t * dy];
  return { d: Math.hypot(p[0] - q[0], p[1] - q[1]), q: q };
}
function edRotate(p, c, a) {
  const s = Math.sin(a), k = Math.cos(a), x = p[0] - c[0], y = p[1] - c[1];
  return [c[0] + x * k - y * s, c[1] + x * s + y * k];
}
/* A rotated box's own frame: its centre, its angle (of its first edge) and its points turned
   upright, with their bounds. */
function edFrame(pts) {
  const c = [(pts[0][0] + pts[1][0] + pts[2][0] + pts[3][0]) / 4, (pts[0][1] + pts[1][1] + pts[2][1] + pts[3][1]) / 4];
  const a = Math.atan2(pts[1][1] - pts[0][1], pts[1][0] - pts[0][0]);
  const loc = pts.map((p) => edRotate(p, c, -a));
  return { c: c, a: a, loc: loc, b: edBounds(loc) };
}
function edClone(o) {
  const c = Object.assign({}, o);
  if (o.box) c.box = o.box.slice();
  if (o.rings) c.rings = o.rings.map((r) => r.map((p) => p.slice()));
  if (o.pts) c.pts = o.pts.map((p) => p.slice());
  return c;
}
function edTranslate(o, base, dx, dy) {
  if (base.box) o.box = [base.box[0] + dx, base.box[1] + dy, base.box[2] + dx, base.box[3] + dy];
  if (base.rings) o.rings = base.rings.map((r) => r.map((p) => [p[0] + dx, p[1] + dy]));
  if (base.pts) o.pts = base.pts.map((p) => [p[0] + dx, p[1] + dy]);
}
function edNorm(v) { return Math.min(1, Math.max(0, Math.round(v * 1e7) / 1e7)); }

/* ---- objects: as stored ({kind, class, geometry}, normalised) ↔ as edited (pixels) ---- */
function edFromStored(a, W, H) {
  const g = a.geometry || {};
  const o = { kind: a.kind, cls: a["class"], crowd: g.iscrowd === true, src: a, moved: false, pair: null };
  const ok = (p) => Array.isArray(p) && p.length === 2 && isFinite(p[0]) && isFinite(p[1]);
  if (a.kind === "box" && [g.x, g.y, g.w, g.h].every((v) => typeof v === "number" && isFinite(v))) {
    o.box = [g.x * W, g.y * H, (g.x + g.w) * W, (g.y + g.h) * H];
  } else if (a.kind === "polygon" && Array.isArray(g.polygons) && g.polygons.length
    && g.polygons.every((r) => Array.isArray(r) && r.length >= 3 && r.every(ok))) {
    o.rings = g.polygons.map((r) => r.map((p) => [p[0] * W, p[1] * H]));
  } else if (a.kind === "rotated_box" && Array.isArray(g.points) && g.points.length === 4 && g.points.every(ok)) {
    o.pts = g.points.map((p) => [p[0] * W, p[1] * H]);
  } else if (a.kind === "mask_rle" && Array.isArray(g.size)) {
    o.rle = { size: g.size, counts: g.counts };
    let b = null;
    try { b = Overlay.rleBox(o.rle); } catch (e) { b = null; }
    if (b) o.mbox = [b[0] * W, b[1] * H, b[2] * W, b[3] * H];
  } else {
    o.opaque = true;  // not drawable here: kept, and sent back as it came
  }
  return o;
}

/* A box imported with a polygon or a mask of its class around the same place (COCO) belongs to it. */
function edPairBoxes(objects, W, H) {
  const shapes = objects.filter((o) => (o.rings || o.mbox) && !o.opaque);
  const near = (a, b) => Math.abs(a[0] - b[0]) < 0.02 * W && Math.abs(a[2] - b[2]) < 0.02 * W
    && Math.abs(a[1] - b[1]) < 0.02 * H && Math.abs(a[3] - b[3]) < 0.02 * H;
  return objects.filter((o) => {
    if (o.kind !== "box" || !o.box) return true;
    const m = shapes.find((s) => !s.pair && s.cls === o.cls && near(edBounds(edPoints(s)), o.box));
    if (!m) return true;
    m.pair = o.src;
    return false;
  });
}

function edToStored(o, W, H) {
  const extra = o.crowd ? { iscrowd: true } : {};
  let geometry;
  if (!o.moved && o.src) geometry = o.src.geometry;
  else if (o.box) {
    const x = edNorm(o.box[0] / W), y = edNorm(o.box[1] / H);
    geometry = Object.assign({ x: x, y: y, w: edNorm(edNorm(o.box[2] / W) - x), h: edNorm(edNorm(o.box[3] / H) - y) }, extra);
  } else if (o.rings) {
    geometry = Object.assign({ polygons: o.rings.map((r) => r.map((p) => [edNorm(p[0] / W), edNorm(p[1] / H)])) }, extra);
  } else if (o.pts) {
    geometry = Object.assign({ points: o.pts.map((p) => [edNorm(p[0] / W), edNorm(p[1] / H)]) }, extra);
  }
  const out = [{ kind: o.kind, "class": o.cls, geometry: geometry }];
  if (o.pair) {
    let pg = o.pair.geometry;
    if (o.moved) {
      const b = edBounds(edPoints(o));
      const x = edNorm(b[0] / W), y = edNorm(b[1] / H);
      pg = { x: x, y: y, w: edNorm(edNorm(b[2] / W) - x), h: edNorm(edNorm(b[3] / H) - y) };
      if (o.pair.geometry && o.pair.geometry.iscrowd === true) pg.iscrowd = true;
    }
    out.push({ kind: "box", "class": o.cls, geometry: pg });
  }
  return out;
}

/* ---- the canvas editor: objects, selection, gestures, view, undo; drawn on demand ---- */
function editorCore(opts) {
  const { data, canvas, img, sync } = opts;
  const W = data.w, H = data.h;
  const ctx = canvas.getContext("2d");
  let objects = [], loaded = [], undos = [], redos = [];
  let sel = -1, vsel = null;          // the selected object (index) and polygon vertex ({r, i})
  let tool = "select";
  let cls = data.classes[0] || "object";  // the class new objects get: the last one used
  let draft = null;                   // the polygon being drawn (its points)
  let gesture = null;                 // what the pointer is doing
  let hover = null;                   // the pointer, for the polygon's rubber band
  let space = false;
  let info = "";
  const view = { k: 1, ox: 0, oy: 0, fitted: true, cw: 0, ch: 0, dpr: 1 };
  let frame = 0;

  const S = (p) => [view.ox + p[0] * view.k, view.oy + p[1] * view.k];
  const I = (sp) => [(sp[0] - view.ox) / view.k, (sp[1] - view.oy) / view.k];
  const clampPt = (p) => [Math.min(W, Math.max(0, p[0])), Math.min(H, Math.max(0, p[1]))];
  const dist = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1]);

  function load() {
    objects = edPairBoxes(data.objects.map((a) => edFromStored(a, W, H)), W, H);
    loaded = objects;
    undos = []; redos = [];
    sel = -1; vsel = null; draft = null; gesture = null; info = "";
    tool = "select";
    fit();
    changed();
  }

  /* ---- undo: every step replaces the list (and the object it changes), so a step is the list ---- */
  function pushUndo() {
    undos.push({ objects: objects, sel: sel });
    if (undos.length > ED.STEPS) undos.shift();
    redos = [];
  }
  function beginEdit(geometry) {  // the selected object, made new for this step
    pushUndo();
    const o = edClone(objects[sel]);
    if (geometry) o.moved = true;
    objects = objects.slice();
    objects[sel] = o;
    return o;
  }
  function restore(from, to) {
    if (!from.length) return;
    to.push({ objects: objects, sel: sel });
    const st = from.pop();
    objects = st.objects;
    sel = st.sel < objects.length ? st.sel : -1;
    vsel = null; draft = null; gesture = null;
    changed();
  }
  function add(o) {
    pushUndo();
    objects = objects.concat([o]);
    sel = objects.length - 1;
    vsel = null;
    cls = o.cls;
  }

  /* ---- view ---- */
  function resize() {
    const r = canvas.getBoundingClientRect();
    if (!r.width || !r.height) return;
    view.dpr = Math.min(window.devicePixelRatio || 1, 3);
    view.cw = r.width; view.ch = r.height;
    canvas.width = Math.round(r.width * view.dpr);
    canvas.height = Math.round(r.height * view.dpr);
    if (view.fitted) fit(); else draw();
  }
  function fitScale() {
    return Math.max(1e-6, Math.min((view.cw - 2 * ED.MARGIN) / W, (view.ch - 2 * ED.MARGIN) / H));
  }
  function fit() {
    if (!view.cw) return;
    view.k = fitScale();
    view.ox = (view.cw - W * view.k) / 2;
    view.oy = (view.ch - H * view.k) / 2;
    view.fitted = true;
    draw();
    sync({ zoomText: Math.round(view.k * 100) + "%" });
  }
  function zoomAt(sp, f) {
    const fk = fitScale();
    const k = Math.min(Math.max(view.k * f, fk * 0.5), Math.max(fk * 4, 40));
    view.ox = sp[0] - ((sp[0] - view.ox) * k) / view.k;
    view.oy = sp[1] - ((sp[1] - view.oy) * k) / view.k;
    view.k = k;
    view.fitted = false;
    draw();
    sync({ zoomText: Math.round(view.k * 100) + "%" });
  }

  /* ---- hit tests, in screen pixels ---- */
  function handles(o) {
    if (o.box) {
      const a = S([o.box[0], o.box[1]]), b = S([o.box[2], o.box[3]]);
      const mx = (a[0] + b[0]) / 2, my = (a[1] + b[1]) / 2;
      const out = [["nw", a[0], a[1]], ["ne", b[0], a[1]], ["se", b[0], b[1]], ["sw", a[0], b[1]]];
      if (b[0] - a[0] > 3 * ED.HIT) out.push(["n", mx, a[1]], ["s", mx, b[1]]);
      if (b[1] - a[1] > 3 * ED.HIT) out.push(["e", b[0], my], ["w", a[0], my]);
      return out.map(([type, x, y]) => ({ type: "resize", edge: type, p: [x, y], cursor: { n: "ns", s: "ns", e: "ew", w: "ew", nw: "nwse", se: "nwse", ne: "nesw", sw: "nesw" }[type] + "-resize" }));
    }
    if (o.pts) {
      const f = edFrame(o.pts);
      const out = o.pts.map((p, i) => ({ type: "corner", i: i, p: S(p), cursor: "crosshair" }));
      const top = edRotate([(f.b[0] + f.b[2]) / 2, f.b[1] - ED.ROT / view.k], f.c, f.a);
      out.push({ type: "rotate", p: S(top), stem: S(edRotate([(f.b[0] + f.b[2]) / 2, f.b[1]], f.c, f.a)), cursor: "grab" });
      return out;
    }
    return [];
  }
  function handleAt(o, sp) {
    let best = null, bd = ED.HIT;
    for (const h of handles(o)) {
      const d = dist(h.p, sp);
      if (d <= bd) { best = h; bd = d; }
    }
    return best;
  }
  function vertexAt(o, sp) {
    if (!o.rings) return null;
    let best = null, bd = ED.HIT;
    o.rings.forEach((r, ri) => r.forEach((p, i) => {
      const d = dist(S(p), sp);
      if (d <= bd) { best = { r: ri, i: i }; bd = d; }
    }));
    return best;
  }
  function edgeAt(o, sp) {
    const rings = o.rings || (o.pts ? [o.pts] : null);
    if (!rings) return null;
    let best = null;
    rings.forEach((r, ri) => r.forEach((p, i) => {
      const s = edSegment(sp, S(p), S(r[(i + 1) % r.length]));
      if (s.d <= ED.EDGE && (!best || s.d < best.d)) best = { r: ri, i: i, d: s.d, q: I(s.q) };
    }));
    return best;
  }
  function hits(o, sp) {
    if (o.opaque) return false;
    const p = I(sp), tol = ED.EDGE / view.k;
    if (o.box) return p[0] >= o.box[0] - tol && p[0] <= o.box[2] + tol && p[1] >= o.box[1] - tol && p[1] <= o.box[3] + tol;
    if (o.rle) return !!o.mbox && p[0] >= o.mbox[0] && p[0] <= o.mbox[2] && p[1] >= o.mbox[1] && p[1] <= o.mbox[3];
    return edInside(o.rings || [o.pts], p[0], p[1]) || !!edgeAt(o, sp);
  }
  function area(o) {
    const b = edBounds(edPoints(o));
    return (b[2] - b[0]) * (b[3] - b[1]);
  }
  function onOutline(o, sp) {
    if (!o.box) return !o.rle && !o.opaque && !!edgeAt(o, sp);
    const a = S([o.box[0], o.box[1]]), b = S([o.box[2], o.box[3]]), e = ED.EDGE;
    const inX = sp[0] >= a[0] - e && sp[0] <= b[0] + e, inY = sp[1] >= a[1] - e && sp[1] <= b[1] + e;
    return (inY && (Math.abs(sp[0] - a[0]) <= e || Math.abs(sp[0] - b[0]) <= e))
      || (inX && (Math.abs(sp[1] - a[1]) <= e || Math.abs(sp[1] - b[1]) <= e));
  }
  /* What a click picks: the selection when on its outline, else the smallest object hit (so that
     one inside a bigger one stays reachable), the selection on a tie. */
  function objectAt(sp) {
    if (sel >= 0 && onOutline(objects[sel], sp)) return sel;
    let best = -1, ba = Infinity;
    objects.forEach((o, i) => {
      if (!hits(o, sp)) return;
      const a = area(o);
      if (a < ba || (a === ba && i === sel)) { best = i; ba = a; }
    });
    return best;
  }

  /* ---- steps ---- */
  function select(i) {
    if (i !== sel) vsel = null;
    sel = i;
    info = i >= 0 && objects[i].rle ? MASK_HINT : "";
  }
  function fits(points) {
    const b = edBounds(points);
    return b[0] >= -1e-9 && b[1] >= -1e-9 && b[2] <= W + 1e-9 && b[3] <= H + 1e-9;
  }
  function shiftInside(points) {  // moved back inside the image, or null if larger than it
    const b = edBounds(points);
    if (b[2] - b[0] > W || b[3] - b[1] > H) return null;
    const dx = b[0] < 0 ? -b[0] : b[2] > W ? W - b[2] : 0;
    const dy = b[1] < 0 ? -b[1] : b[3] > H ? H - b[3] : 0;
    return points.map((p) => [p[0] + dx, p[1] + dy]);
  }
  function constrain(b, dx, dy) {
    return [Math.min(Math.max(dx, -b[0]), W - b[2]), Math.min(Math.max(dy, -b[1]), H - b[3])];
  }
  function minSize(box) {  // [x0, y0, x1, y1] at least ED.MIN wide and high, inside the image
    if (box[2] - box[0] < ED.MIN) { if (box[0] + ED.MIN <= W) box[2] = box[0] + ED.MIN; else box[0] = box[2] - ED.MIN; }
    if (box[3] - box[1] < ED.MIN) { if (box[1] + ED.MIN <= H) box[3] = box[1] + ED.MIN; else box[1] = box[3] - ED.MIN; }
    return box;
  }
  function nudge(dx, dy) {
    if (sel < 0) return;
    const o = objects[sel];
    if (o.rle || o.opaque) { info = MASK_HINT; return; }
    if (vsel) {
      const p = o.rings[vsel.r][vsel.i];
      const q = clampPt([p[0] + dx, p[1] + dy]);
      if (q[0] === p[0] && q[1] === p[1]) return;
      beginEdit(true).rings[vsel.r][vsel.i] = q;
      return;
    }
    const d = constrain(edBounds(edPoints(o)), dx, dy);
    if (!d[0] && !d[1]) return;
    edTranslate(beginEdit(true), o, d[0], d[1]);
  }
  function remove() {
    if (sel < 0) return;
    const o = objects[sel];
    if (vsel) {
      if (o.rings[vsel.r].length <= 3) {
        info = "A polygon keeps at least 3 points: press Esc, then Delete to remove the whole polygon.";
        return;
      }
      beginEdit(true).rings[vsel.r].splice(vsel.i, 1);
      vsel = null;
      return;
    }
    pushUndo();
    objects = objects.filter((_, i) => i !== sel);
    sel = -1;
    info = "";
  }
  function setClass(name) {
    cls = name;
    if (sel >= 0 && objects[sel].cls !== name) beginEdit(false).cls = name;
    changed();
  }
  function finishPolygon() {
    const pts = draft;
    draft = null;
    if (!pts || pts.length < 3) return;
    add({ kind: "polygon", cls: cls, crowd: false, src: null, moved: true, pair: null, rings: [pts] });
  }
  function setTool(t) {
    if (t !== "polygon") draft = null;
    tool = t;
    changed();
  }

  /* ---- pointer ---- */
  const pos = (e) => {
    const r = canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  };
  function capture(e) { try { canvas.setPointerCapture(e.pointerId); } catch (err) { /* synthetic events */ } }

  function down(e) {
    const sp = pos(e);
    if (e.button === 1 || (e.button === 0 && space)) {
      e.preventDefault();
      gesture = { type: "pan", sp: sp, ox: view.ox, oy: view.oy };
      canvas.style.cursor = "grabbing";
      capture(e);
      return;
    }
    if (e.button !== 0) return;
    e.preventDefault();
    canvas.focus({ preventScroll: true });
    const ip = I(sp);
    const o = sel >= 0 ? objects[sel] : null;
    if (o && !draft) {  // the selection's handles and vertices, whatever the tool
      const h = handleAt(o, sp);
      if (h) {
        gesture = { type: h.type, h: h, sp: sp, base: edClone(o), started: false };
        if (o.pts) {
          gesture.frame = edFrame(o.pts);
          gesture.a0 = Math.atan2(ip[1] - gesture.frame.c[1], ip[0] - gesture.frame.c[0]);
        }
        capture(e);
        return;
      }
      const v = vertexAt(o, sp);
      if (v) {
        vsel = v;
        gesture = { type: "vertex", v: v, sp: sp, base: edClone(o), started: false };
        capture(e);
        changed();
        return;
      }
    }
    if (tool === "polygon") {
      const p = clampPt(ip);
      if (draft && draft.length >= 3 && dist(S(draft[0]), sp) <= ED.HIT + 1) finishPolygon();
      else if (!draft || dist(S(draft[draft.length - 1]), sp) > 3) {  // not the second click of a double-click
        if (!draft) { draft = []; select(-1); }
        draft.push(p);
      }
      changed();
      return;
    }
    if (tool === "box" || tool === "rotated_box") {
      gesture = { type: "draw", sp: sp, a: clampPt(ip), b: clampPt(ip) };
      capture(e);
      return;
    }
    const i = objectAt(sp);
    select(i);
    if (i >= 0 && !objects[i].rle && !objects[i].opaque) {
      gesture = { type: "move", sp: sp, ip: ip, base: edClone(objects[i]), bounds: edBounds(edPoints(objects[i])), started: false };
      capture(e);
    }
    changed();
  }

  function move(e) {
    const sp = pos(e);
    hover = sp;
    const g = gesture;
    if (!g) {
      cursorAt(sp);
      if (draft) draw();
      return;
    }
    if (g.type === "pan") {
      view.ox = g.ox + sp[0] - g.sp[0];
      view.oy = g.oy + sp[1] - g.sp[1];
      view.fitted = false;
      draw();
      return;
    }
    const ip = I(sp);
    if (g.type === "draw") {
      g.b = clampPt(ip);
      draw();
      return;
    }
    if (!g.started) {
      if (dist(sp, g.sp) < 3) return;
      g.started = true;
      g.obj = beginEdit(true);
    }
    const o = g.obj, base = g.base;
    if (g.type === "move") {
      const d = constrain(g.bounds, ip[0] - g.ip[0], ip[1] - g.ip[1]);
      edTranslate(o, base, d[0], d[1]);
    } else if (g.type === "vertex") {
      o.rings[g.v.r][g.v.i] = clampPt(ip);
    } else if (g.type === "resize") {
      const p = clampPt(ip), edge = g.h.edge, b = base.box.slice();
      if (edge.includes("w")) b[0] = p[0];
      if (edge.includes("e")) b[2] = p[0];
      if (edge.includes("n")) b[1] = p[1];
      if (edge.includes("s")) b[3] = p[1];
      o.box = minSize([Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])]);
    } else if (g.type === "corner") {
      // the corner's two sides follow the pointer in the box's own frame; the opposite ones stay
      const f = g.frame, q = edRotate(ip, f.c, -f.a), lp = f.loc[g.h.i];
      const [l, t, r, b] = f.b;
      let nl = l, nt = t, nr = r, nb = b;
      if (lp[0] < (l + r) / 2) nl = q[0]; else nr = q[0];
      if (lp[1] < (t + b) / 2) nt = q[1]; else nb = q[1];
      if (Math.abs(nr - nl) < ED.MIN || Math.abs(nb - nt) < ED.MIN) return;
      const pts = f.loc.map((p) => edRotate([
        nl + ((p[0] - l) / ((r - l) || 1)) * (nr - nl),
        nt + ((p[1] - t) / ((b - t) || 1)) * (nb - nt),
      ], f.c, f.a));
      if (!fits(pts)) return;
      o.pts = pts;
    } else if (g.type === "rotate") {
      const f = g.frame;
      let d = Math.atan2(ip[1] - f.c[1], ip[0] - f.c[0]) - g.a0;
      if (e.shiftKey) d = Math.round((f.a + d) / (Math.PI / 12)) * (Math.PI / 12) - f.a;
      const pts = shiftInside(base.pts.map((p) => edRotate(p, f.c, d)));
      if (pts) o.pts = pts;
    }
    draw();
  }

  function up(e) {
    const g = gesture;
    gesture = null;
    try { canvas.releasePointerCapture(e.pointerId); } catch (err) { /* not captured */ }
    if (!g) return;
    if (g.type === "pan") { cursorAt(pos(e)); sync({ zoomText: Math.round(view.k * 100) + "%" }); return; }
    if (g.type === "draw") {
      const a = g.a, b = g.b;
      const box = [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
      if (dist(g.sp, pos(e)) < 4 || box[2] - box[0] < ED.MIN || box[3] - box[1] < ED.MIN) {
        select(objectAt(g.sp));  // a click, not a drag: select what is there
      } else if (tool === "rotated_box") {
        add({ kind: "rotated_box", cls: cls, crowd: false, src: null, moved: true, pair: null, pts: [[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]] });
      } else {
        add({ kind: "box", cls: cls, crowd: false, src: null, moved: true, pair: null, box: box });
      }
    } else if (g.started && objects[sel] === g.obj && JSON.stringify(edPoints(g.obj)) === JSON.stringify(edPoints(g.base))) {
      const v = vsel;
      restore(undos, []);  // dragged back where it was: no step
      vsel = v;
    }
    changed();
  }

  function dblclick(e) {
    const sp = pos(e);
    if (tool === "polygon" && draft) { finishPolygon(); changed(); return; }
    if (sel < 0 || !objects[sel].rings || vertexAt(objects[sel], sp)) return;
    const edge = edgeAt(objects[sel], sp);
    if (!edge) return;
    const o = beginEdit(true);
    o.rings[edge.r].splice(edge.i + 1, 0, clampPt(edge.q));
    vsel = { r: edge.r, i: edge.i + 1 };
    changed();
  }

  function wheel(e) {
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? 400 : 1;
    zoomAt(pos(e), Math.exp(-e.deltaY * unit * 0.002));
  }

  function cursorAt(sp) {
    let c = tool === "select" ? "default" : "crosshair";
    if (space) c = "grab";
    else if (sel >= 0 && !draft) {
      const o = objects[sel];
      const h = handleAt(o, sp);
      if (h) c = h.cursor;
      else if (vertexAt(o, sp)) c = "pointer";
      else if (tool === "select" && hits(o, sp) && !o.rle) c = "move";
    }
    if (c === "default" && tool === "select" && objectAt(sp) >= 0) c = "pointer";
    canvas.style.cursor = c;
  }

  /* ---- keys (while editing, not typing in a box); true when the key was the editor's ---- */
  function key(e) {
    const k = e.key;
    if (k === " ") { space = true; canvas.style.cursor = "grab"; return true; }
    if (k === "Escape") {
      if (gesture) { if (gesture.obj) restore(undos, []); gesture = null; }
      else if (draft) draft = null;
      else if (vsel) vsel = null;
      else select(-1);
      changed();
      return true;
    }
    if (k.startsWith("Arrow")) {
      const n = e.shiftKey ? 10 : 1;
      nudge(k === "ArrowLeft" ? -n : k === "ArrowRight" ? n : 0, k === "ArrowUp" ? -n : k === "ArrowDown" ? n : 0);
      changed();
      return true;  // never the next sample while editing
    }
    if (k === "Delete" || k === "Backspace") {
      if (draft) { draft.pop(); if (!draft.length) draft = null; } else remove();
      changed();
      return true;
    }
    if (k === "Enter" && draft) { finishPolygon(); changed(); return true; }
    if (/^[1-9]$/.test(k)) {
      const name = data.classes[+k - 1];
      if (name) setClass(name);
      return !!name;
    }
    const t = { v: "select", b: "box", p: "polygon", r: "rotated_box" }[k.toLowerCase()];
    if (t && (t === "select" || data.draw.includes(t))) { setTool(t); return true; }
    if (k === "f" || k === "F" || k === "0") { fit(); return true; }
    if (k === "+" || k === "=") { zoomAt([view.cw / 2, view.ch / 2], 1.25); return true; }
    if (k === "-" || k === "_") { zoomAt([view.cw / 2, view.ch / 2], 0.8); return true; }
    return false;
  }
  function keyup(e) {
    if (e.key === " " && space) { space = false; if (hover) cursorAt(hover); return true; }
    return false;
  }

  /* ---- drawing ---- */
  function draw() { if (!frame) frame = requestAnimationFrame(render); }

  function colours() {  // each object's colour: its class hue, shaded per instance as overlay.js does
    const perClass = {};
    return objects.map((o) => {
      const ci = Overlay.classIndex(o.cls);
      if (o.box || o.opaque) return Overlay.colour(ci, 0);
      perClass[ci] = (perClass[ci] || 0) + 1;
      return Overlay.colour(ci, perClass[ci] - 1);
    });
  }

  function path(rings) {
    ctx.beginPath();
    for (const r of rings) {
      r.forEach((p, i) => { const s = S(p); if (i) ctx.lineTo(s[0], s[1]); else ctx.moveTo(s[0], s[1]); });
      ctx.closePath();
    }
  }

  function render() {
    frame = 0;
    if (!view.cw) return;
    const k = view.k, op = Overlay.settings.opacity;
    ctx.setTransform(view.dpr, 0, 0, view.dpr, 0, 0);
    ctx.clearRect(0, 0, view.cw, view.ch);
    ctx.imageSmoothingEnabled = k < 2;  // zoomed in: the image's own pixels
    if (img.complete && img.naturalWidth) ctx.drawImage(img, view.ox, view.oy, W * k, H * k);
    ctx.strokeStyle = "rgba(15, 18, 30, .45)";
    ctx.lineWidth = 1;
    ctx.strokeRect(view.ox - 0.5, view.oy - 0.5, W * k + 1, H * k + 1);
    const cols = colours();
    // fills, then outlines, then names, then the selection's handles on top
    objects.forEach((o, i) => {
      if (o.opaque) return;
      const col = cols[i];
      ctx.globalAlpha = i === sel ? Math.min(1, op + 0.15) : op;
      if (o.rle) {
        const m = Overlay.mask(o.rle, col);
        if (m && op > 0) {
          ctx.imageSmoothingEnabled = k < 1;
          ctx.drawImage(m.canvas, view.ox, view.oy, W * k, H * k);
          ctx.globalAlpha = 1;
          ctx.drawImage(m.edge, view.ox, view.oy, W * k, H * k);
          ctx.imageSmoothingEnabled = k < 2;
        }
      } else if (op > 0) {
        ctx.fillStyle = col;
        if (o.box) {
          ctx.globalAlpha *= 0.35;
          const a = S([o.box[0], o.box[1]]);
          ctx.fillRect(a[0], a[1], (o.box[2] - o.box[0]) * k, (o.box[3] - o.box[1]) * k);
        } else {
          path(o.rings || [o.pts]);
          ctx.fill("evenodd");
        }
      }
      ctx.globalAlpha = 1;
    });
    objects.forEach((o, i) => {
      if (o.opaque) return;
      const on = i === sel;
      ctx.setLineDash(o.crowd ? [6, 4] : []);
      const shape = () => {
        if (o.box) {
          const a = S([o.box[0], o.box[1]]);
          ctx.beginPath();
          ctx.rect(a[0], a[1], (o.box[2] - o.box[0]) * k, (o.box[3] - o.box[1]) * k);
        } else if (o.mbox) {
          const a = S([o.mbox[0], o.mbox[1]]);
          ctx.beginPath();
          ctx.rect(a[0], a[1], (o.mbox[2] - o.mbox[0]) * k, (o.mbox[3] - o.mbox[1]) * k);
        } else path(o.rings || [o.pts]);
      };
      if (on) {  // a white halo makes the selection stand out on any image
        ctx.strokeStyle = "rgba(255, 255, 255, .95)";
        ctx.lineWidth = 5;
        shape();
        ctx.stroke();
      }
      if (o.mbox && !on) { ctx.setLineDash([]); return; }  // a mask's outline is its edge pixels
      ctx.strokeStyle = cols[i];
      ctx.lineWidth = on ? 2.5 : 2;
      shape();
      ctx.stroke();
      if (o.pair && o.rings) {  // its box, thin, as overlay.js draws it
        const b = edBounds(edPoints(o)), a = S([b[0], b[1]]);
        ctx.setLineDash([]);
        ctx.lineWidth = 1;
        ctx.globalAlpha = 0.7;
        ctx.strokeRect(a[0], a[1], (b[2] - b[0]) * k, (b[3] - b[1]) * k);
        ctx.globalAlpha = 1;
      }
      ctx.setLineDash([]);
    });
    if (Overlay.settings.labels) labels(cols);
    if (sel >= 0) selection(objects[sel], cols[sel]);
    drafting();
    canvas.dataset.view = [view.k, view.ox, view.oy].join(",");
    canvas.dataset.objects = String(objects.length);
  }

  function labels(cols) {
    ctx.font = "600 12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.textBaseline = "top";
    const order = objects.map((_, i) => i).filter((i) => i !== sel);
    if (sel >= 0) order.push(sel);  // the selection's name on top
    order.forEach((i) => {
      const o = objects[i];
      const pts = edPoints(o);
      if (o.opaque || !pts.length) return;
      const top = o.box || o.mbox ? pts[0] : pts.reduce((a, p) => (p[1] < a[1] || (p[1] === a[1] && p[0] < a[0]) ? p : a));
      const b = edBounds(pts);
      const at = S(top), x = Math.max(0, at[0]);
      const text = Overlay.fitText(ctx, String(o.cls), Math.min(Math.max((b[2] - b[0]) * view.k, 40) + 60, view.cw - x - 2));
      if (!text) return;
      const tw = ctx.measureText(text).width + 6, th = 16;
      const ty = at[1] - th >= 0 ? at[1] - th : at[1];
      ctx.fillStyle = cols[i];
      Overlay.roundRect(ctx, x, ty, tw, th, 2);
      ctx.fill();
      ctx.fillStyle = "#fff";
      ctx.fillText(text, x + 3, ty + 2);
    });
  }

  function square(p, col) {
    ctx.fillStyle = "#fff";
    ctx.strokeStyle = col;
    ctx.lineWidth = 1.5;
    ctx.fillRect(p[0] - 4.5, p[1] - 4.5, 9, 9);
    ctx.strokeRect(p[0] - 4.5, p[1] - 4.5, 9, 9);
  }
  function dot(p, col, r, filled) {
    ctx.beginPath();
    ctx.arc(p[0], p[1], r, 0, 2 * Math.PI);
    ctx.fillStyle = filled ? col : "#fff";
    ctx.fill();
    ctx.strokeStyle = filled ? "#fff" : col;
    ctx.lineWidth = 1.5;
    ctx.stroke();
  }
  function selection(o, col) {
    for (const h of handles(o)) {
      if (h.type === "rotate") {
        ctx.strokeStyle = col;
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(h.stem[0], h.stem[1]);
        ctx.lineTo(h.p[0], h.p[1]);
        ctx.stroke();
        dot(h.p, col, 5.5, false);
      } else square(h.p, col);
    }
    if (o.rings) {
      o.rings.forEach((r, ri) => r.forEach((p, i) => {
        const on = vsel && vsel.r === ri && vsel.i === i;
        dot(S(p), col, on ? 5.5 : 4, on);
      }));
    }
  }
  function drafting() {
    const col = Overlay.colour(Overlay.classIndex(cls), 0);
    const g = gesture;
    if (g && g.type === "draw") {
      const a = S(g.a), b = S(g.b);
      ctx.strokeStyle = col;
      ctx.lineWidth = 2;
      ctx.setLineDash([5, 3]);
      ctx.strokeRect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]));
      ctx.setLineDash([]);
    }
    if (!draft) return;
    ctx.strokeStyle = col;
    ctx.lineWidth = 2;
    ctx.beginPath();
    draft.forEach((p, i) => { const s = S(p); if (i) ctx.lineTo(s[0], s[1]); else ctx.moveTo(s[0], s[1]); });
    if (hover) { ctx.setLineDash([5, 3]); ctx.lineTo(hover[0], hover[1]); }
    ctx.stroke();
    ctx.setLineDash([]);
    const closing = hover && draft.length >= 3 && dist(S(draft[0]), hover) <= ED.HIT + 1;
    draft.forEach((p, i) => dot(S(p), col, i === 0 && closing ? 7 : 4, i === 0));
  }

  /* ---- what the toolbar shows ---- */
  function describe(o) {
    const name = KIND_NAMES[o.kind] || o.kind;
    if (o.opaque) return name + " (cannot be drawn)";
    if (o.rle) return "mask · masks cannot be reshaped here";
    const b = edBounds(edPoints(o));
    const size = Math.round(b[2] - b[0]) + " × " + Math.round(b[3] - b[1]) + " px";
    if (o.rings) {
      const n = o.rings.reduce((a, r) => a + r.length, 0);
      return name + " · " + n + " points · " + size + (vsel ? " · point " + (vsel.i + 1) + " selected" : "");
    }
    if (o.pts) {
      const f = edFrame(o.pts);
      return name + " · " + Math.round(f.b[2] - f.b[0]) + " × " + Math.round(f.b[3] - f.b[1]) + " px · " + Math.round(((f.a * 180) / Math.PI + 360) % 360) + "°";
    }
    return name + " · " + size;
  }
  function changed() {
    const o = sel >= 0 ? objects[sel] : null;
    const n = objects.length;
    sync({
      tool: tool,
      dirty: objects !== loaded || !!draft,
      canUndo: undos.length > 0,
      canRedo: redos.length > 0,
      current: o ? o.cls : cls,
      status: n + (n === 1 ? " object" : " objects") + (o ? " · selected: " + describe(o) : ""),
      hint: info || (draft ? TOOL_HINTS.polygon : TOOL_HINTS[tool]),
      zoomText: Math.round(view.k * 100) + "%",
    });
    draw();
  }

  function payload() {  // every object as stored, and which editor object each one comes from
    const out = [], from = [];
    objects.forEach((o, i) => {
      for (const a of edToStored(o, W, H)) { out.push(a); from.push(i); }
    });
    return { objects: out, from: from };
  }

  const stop = new AbortController();
  const on = (el, name, fn, o) => el.addEventListener(name, fn, Object.assign({ signal: stop.signal }, o || {}));
  on(canvas, "pointerdown", down);
  on(canvas, "pointermove", move);
  on(canvas, "pointerup", up);
  on(canvas, "pointercancel", up);
  on(canvas, "dblclick", dblclick);
  on(canvas, "wheel", wheel, { passive: false });
  on(canvas, "contextmenu", (e) => { if (gesture || draft) e.preventDefault(); });
  on(canvas, "pointerleave", () => { hover = null; if (draft) draw(); });
  on(img, "load", draw);
  const ro = typeof ResizeObserver !== "undefined" ? new ResizeObserver(resize) : null;
  if (ro) ro.observe(canvas);

  return {
    load: load,
    resize: resize,
    fit: fit,
    zoom: (f) => zoomAt([view.cw / 2, view.ch / 2], f),
    undo: () => restore(undos, redos),
    redo: () => restore(redos, undos),
    setTool: setTool,
    setClass: setClass,
    current: () => (sel >= 0 ? objects[sel].cls : cls),
    key: key,
    keyup: keyup,
    payload: payload,
    selectObject: (i) => { select(i); changed(); },
    drafting: () => !!draft,
    finish: () => { if (draft) finishPolygon(); gesture = null; changed(); },
    dirty: () => objects !== loaded,
    destroy: () => { stop.abort(); if (ro) ro.disconnect(); if (frame) cancelAnimationFrame(frame); },
  };
}
