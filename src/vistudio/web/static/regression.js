/* Regression results on the Evaluate page (templates/evaluate_reg_panel.html), drawn by hand on two
   canvases: predicted vs actual (one point per image, coloured by subset, with the y = x line; a
   click on a point opens that image's result in the page's dialog) and the histogram of the
   residuals (predicted − true, around 0). One target at a time (select#reg-target).

   Data: <script type="application/json" class="reg-points">{"targets": [names], "points":
   [[sample_id, subset, [true…], [predicted…]], …], "detail": "<url of a result, without its id>"}.
   Both axes of the scatter share one range, so the y = x line is the plot's diagonal; ticks are
   "nice" steps (1, 2, 5 × 10^k) written with as many decimals as the step needs, or with an
   exponent for very large and very small numbers, so negative, huge and tiny values all read.

   For scripts and tests: canvas#reg-scatter[data-points][data-ready], and
   window.vistudioRegression.pointAt(i) → the page coordinates of point i (to click it). */
"use strict";

const REG_SUBSET_COLOURS = { train: "#6366f1", val: "#f59e0b", test: "#0d9488" };
const REG_FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";
const REG_AXIS = "#667085";
const REG_GRID = "#eceef4";

function regStep(span, count) {
  const raw = span / Math.max(1, count);
  if (!(raw > 0) || !isFinite(raw)) return 1;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const norm = raw / mag;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

/* Ticks every "nice" step between lo and hi, and the power of ten the labels are written in:
   values of 1e6 and more, or below 1e-3, are labelled in units of 10^power (the axis title says
   "× 1e7"), so that every label is a short number with the same number of decimals. */
function regTicks(lo, hi, count) {
  const step = regStep(hi / 2 - lo / 2, count / 2);  // halves: a span of ±1e308 stays finite
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9 && out.length < 50; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  const big = Math.max(...out.map(Math.abs), 0);
  const power = big >= 1e6 || (big > 0 && big < 1e-3) ? Math.floor(Math.log10(step) + 1e-9) : 0;
  return { step: step, values: out, power: power };
}

function regFormat(v, ticks) {
  if (v === 0) return "0";
  const scale = Math.pow(10, ticks.power);
  const step = ticks.step / scale;
  const decimals = Math.max(0, Math.min(8, -Math.floor(Math.log10(step) + 1e-9)));
  return (v / scale).toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

function regUnit(title, ticks) {  // the axis title, with the power its labels are written in
  return ticks.power ? title + "  (× 1e" + ticks.power + ")" : title;
}

function regValue(v) {  // a value in a tooltip: 5 significant digits
  if (!isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(4).replace("e+", "e") : String(Number(v.toPrecision(5)));
}

/* The canvas at its CSS size × the device pixel ratio; drawing in CSS pixels. */
function regCanvas(cv) {
  const rect = cv.getBoundingClientRect();
  const w = Math.max(120, Math.round(rect.width)), h = Math.max(120, Math.round(rect.height));
  const dpr = window.devicePixelRatio || 1;
  cv.width = Math.round(w * dpr);
  cv.height = Math.round(h * dpr);
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = REG_FONT;
  return { ctx: ctx, w: w, h: h };
}

/* Axes, grid and tick labels of a plot area; returns the area and the data → pixel maps. */
function regAxes(c, x, y, titles) {
  const ctx = c.ctx;
  const yLabels = y.ticks.values.map((v) => regFormat(v, y.ticks));
  const labelW = Math.max(20, ...yLabels.map((t) => ctx.measureText(t).width));
  const area = { left: Math.ceil(labelW) + 30, right: c.w - 14, top: 10, bottom: c.h - 42 };
  const px = (v) => area.left + ((v - x.lo) / (x.hi - x.lo)) * (area.right - area.left);
  const py = (v) => area.bottom - ((v - y.lo) / (y.hi - y.lo)) * (area.bottom - area.top);
  ctx.lineWidth = 1;
  ctx.strokeStyle = REG_GRID;
  ctx.fillStyle = REG_AXIS;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  y.ticks.values.forEach((v, i) => {
    const yy = Math.round(py(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(area.left, yy); ctx.lineTo(area.right, yy); ctx.stroke();
    ctx.fillText(yLabels[i], area.left - 6, yy);
  });
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  let lastRight = -Infinity;
  x.ticks.values.forEach((v) => {
    const xx = Math.round(px(v)) + 0.5;
    ctx.beginPath(); ctx.moveTo(xx, area.top); ctx.lineTo(xx, area.bottom); ctx.stroke();
    const text = regFormat(v, x.ticks);
    const half = ctx.measureText(text).width / 2;
    if (xx - half > lastRight + 6 && xx + half <= c.w) {  // labels never overlap or leave the canvas
      ctx.fillText(text, xx, area.bottom + 5);
      lastRight = xx + half;
    }
  });
  ctx.strokeStyle = "#c3c8d4";
  ctx.beginPath();
  ctx.moveTo(area.left + 0.5, area.top); ctx.lineTo(area.left + 0.5, area.bottom + 0.5); ctx.lineTo(area.right, area.bottom + 0.5);
  ctx.stroke();
  ctx.fillStyle = "#344054";
  ctx.fillText(regUnit(titles.x, x.ticks), (area.left + area.right) / 2, c.h - 17);
  ctx.save();
  ctx.translate(11, (area.top + area.bottom) / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "middle";
  ctx.fillText(regUnit(titles.y, y.ticks), 0, 0);
  ctx.restore();
  return { area: area, px: px, py: py };
}

function regRange(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; } }
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (lo === hi) { const pad = Math.max(1, Math.abs(lo) * 0.05); lo -= pad; hi += pad; }
  const pad = (hi / 2 - lo / 2) * 0.08;  // halves: no overflow near the float limit
  return { lo: lo - pad, hi: hi + pad };
}

const regState = { data: null, target: 0, screen: [], hover: -1 };

function regDrawScatter(cv) {
  const data = regState.data, t = regState.target;
  const pts = data.points.filter((p) => isFinite(p[2][t]) && isFinite(p[3][t]));
  const c = regCanvas(cv);
  const range = regRange(pts.flatMap((p) => [p[2][t], p[3][t]]));
  // one range and one set of ticks on both axes: y = x is the diagonal, and equal steps read alike
  const ticks = regTicks(range.lo, range.hi, Math.max(3, Math.floor(Math.min(c.w, c.h) / 60)));
  const axis = { lo: range.lo, hi: range.hi, ticks: ticks };
  const yAxis = axis;
  const name = data.targets[t] || "value";
  const g = regAxes(c, axis, yAxis, { x: "true " + name, y: "predicted " + name });
  const ctx = c.ctx;
  ctx.save();
  ctx.beginPath();
  ctx.rect(g.area.left, g.area.top, g.area.right - g.area.left, g.area.bottom - g.area.top);
  ctx.clip();
  ctx.strokeStyle = "#475467";
  ctx.setLineDash([6, 4]);
  ctx.beginPath(); ctx.moveTo(g.px(range.lo), g.py(range.lo)); ctx.lineTo(g.px(range.hi), g.py(range.hi)); ctx.stroke();
  ctx.setLineDash([]);
  const r = pts.length > 5000 ? 1.6 : pts.length > 1500 ? 2.3 : 3.2;
  ctx.globalAlpha = pts.length > 1500 ? 0.55 : 0.75;
  regState.screen = pts.map((p) => {
    const sx = g.px(p[2][t]), sy = g.py(p[3][t]);
    ctx.fillStyle = REG_SUBSET_COLOURS[p[1]] || "#6366f1";
    ctx.beginPath(); ctx.arc(sx, sy, r, 0, 2 * Math.PI); ctx.fill();
    return { x: sx, y: sy, p: p };
  });
  ctx.globalAlpha = 1;
  if (regState.hover >= 0 && regState.screen[regState.hover]) {
    const s = regState.screen[regState.hover];
    ctx.strokeStyle = "#111827"; ctx.lineWidth = 2;
    ctx.beginPath(); ctx.arc(s.x, s.y, r + 3, 0, 2 * Math.PI); ctx.stroke();
  }
  ctx.restore();
  cv.dataset.points = String(pts.length);
  cv.dataset.ready = "1";
}

function regDrawResiduals(cv) {
  const data = regState.data, t = regState.target;
  const res = data.points.map((p) => p[3][t] - p[2][t]).filter((v) => isFinite(v));
  const c = regCanvas(cv);
  let lim = 0;
  for (const v of res) lim = Math.max(lim, Math.abs(v));
  if (!(lim > 0)) lim = 1;
  const bins = res.length > 200 ? 30 : res.length > 40 ? 20 : 12;
  const counts = new Array(bins).fill(0);
  for (const v of res) counts[Math.min(bins - 1, Math.max(0, Math.floor(((v / lim + 1) / 2) * bins)))] += 1;
  const top = Math.max(1, ...counts);
  const x = { lo: -lim, hi: lim, ticks: regTicks(-lim, lim, Math.max(3, Math.floor(c.w / 80))) };
  const yTicks = regTicks(0, top, Math.min(top, 5));
  yTicks.values = yTicks.values.filter((v) => Number.isInteger(v));
  const y = { lo: 0, hi: top * 1.08, ticks: yTicks };
  const name = data.targets[t] || "value";
  const g = regAxes(c, x, y, { x: "predicted − true " + name, y: "images" });
  const ctx = c.ctx;
  ctx.fillStyle = "rgba(99, 102, 241, .75)";
  for (let i = 0; i < bins; i++) {
    if (!counts[i]) continue;
    const x0 = g.px(-lim + (2 * lim * i) / bins), x1 = g.px(-lim + (2 * lim * (i + 1)) / bins);
    const y0 = g.py(counts[i]);
    ctx.fillRect(x0 + 0.5, y0, Math.max(1, x1 - x0 - 1), g.area.bottom - y0);
  }
  ctx.strokeStyle = "#dc2626";
  ctx.setLineDash([4, 3]);
  ctx.beginPath(); ctx.moveTo(Math.round(g.px(0)) + 0.5, g.area.top); ctx.lineTo(Math.round(g.px(0)) + 0.5, g.area.bottom); ctx.stroke();
  ctx.setLineDash([]);
  cv.dataset.residuals = String(res.length);
  cv.dataset.ready = "1";
}

function regRedraw() {
  const scatter = document.getElementById("reg-scatter");
  const hist = document.getElementById("reg-residuals");
  if (scatter && regState.data) regDrawScatter(scatter);
  if (hist && regState.data) regDrawResiduals(hist);
}

function regNearest(cv, ev) {
  const rect = cv.getBoundingClientRect();
  const mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
  let best = -1, bestD = 64;  // within 8 px
  regState.screen.forEach((s, i) => {
    const d = (s.x - mx) * (s.x - mx) + (s.y - my) * (s.y - my);
    if (d <= bestD) { bestD = d; best = i; }
  });
  return best;
}

function regInit(root) {
  const block = root.querySelector ? root.querySelector("script.reg-points") : null;
  const scatter = document.getElementById("reg-scatter");
  if (!block || !scatter || scatter._regReady) return;
  scatter._regReady = true;
  try { regState.data = JSON.parse(block.textContent); } catch (e) { return; }
  regState.target = 0;
  regState.hover = -1;
  const tip = scatter.parentElement.querySelector(".reg-tip");
  const select = document.getElementById("reg-target");
  if (select) select.addEventListener("change", () => { regState.target = parseInt(select.value, 10) || 0; regState.hover = -1; regRedraw(); });
  scatter.addEventListener("mousemove", (ev) => {
    const i = regNearest(scatter, ev);
    scatter.style.cursor = i >= 0 ? "pointer" : "default";
    if (i !== regState.hover) { regState.hover = i; regDrawScatter(scatter); }
    if (!tip) return;
    if (i < 0) { tip.hidden = true; return; }
    const s = regState.screen[i], t = regState.target;
    tip.textContent = "#" + s.p[0] + " · " + s.p[1] + " · true " + regValue(s.p[2][t]) + " · predicted " + regValue(s.p[3][t]);
    tip.hidden = false;
    tip.style.left = Math.min(s.x + 10, scatter.clientWidth - tip.offsetWidth - 4) + "px";
    tip.style.top = Math.max(0, s.y - 30) + "px";
  });
  scatter.addEventListener("mouseleave", () => { regState.hover = -1; if (tip) tip.hidden = true; regDrawScatter(scatter); });
  scatter.addEventListener("click", (ev) => {
    const i = regNearest(scatter, ev);
    if (i < 0 || typeof htmx === "undefined") return;
    htmx.ajax("GET", regState.data.detail + regState.screen[i].p[0], { target: "#eval-detail-body", swap: "innerHTML" });
  });
  if (typeof ResizeObserver !== "undefined") {
    let pending = null;
    new ResizeObserver(() => { clearTimeout(pending); pending = setTimeout(regRedraw, 60); }).observe(scatter);
  }
  regRedraw();
}

window.vistudioRegression = {
  pointAt(i) {
    const cv = document.getElementById("reg-scatter"), s = regState.screen[i];
    if (!cv || !s) return null;
    const rect = cv.getBoundingClientRect();
    return { x: rect.left + s.x, y: rect.top + s.y, sampleId: s.p[0] };
  },
  count() { return regState.screen.length; },
};

document.addEventListener("DOMContentLoaded", () => {
  regInit(document);
  document.body.addEventListener("htmx:afterSettle", (e) => regInit(document));
});
