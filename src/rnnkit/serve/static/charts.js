// Plain SVG charts for the explorer: line charts, a scatter with its trajectory, a heat map.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs, parent) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (parent) parent.appendChild(el);
  return el;
}

function svgText(parent, x, y, text, attrs) {
  const el = svgEl("text", Object.assign({ x, y }, attrs || {}), parent);
  el.textContent = text;
  return el;
}

function fmt(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e4)) return v.toExponential(1);
  return String(+v.toPrecision(3));
}

function extent(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) if (v !== null && Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) return [lo - 0.5, hi + 0.5];
  return [lo, hi];
}

// Axes with a few ticks; returns the scale functions and the plot group.
function frame(svg, W, H, xr, yr, opts) {
  const m = { l: 56, r: 12, t: 22, b: 34 };
  const logY = !!opts.logY;
  const ty = (v) => (logY ? Math.log10(v) : v);
  const [y0, y1] = logY ? [Math.log10(yr[0]), Math.log10(yr[1])] : yr;
  const sx = (v) => m.l + ((v - xr[0]) / (xr[1] - xr[0] || 1)) * (W - m.l - m.r);
  const sy = (v) => H - m.b - ((ty(v) - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  svgEl("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: "none", stroke: "#ccc" }, svg);
  for (let i = 0; i <= 4; i++) {
    const xv = xr[0] + (i / 4) * (xr[1] - xr[0]);
    svgText(svg, sx(xv), H - m.b + 14, fmt(xv), { "text-anchor": "middle" });
    const yl = y0 + (i / 4) * (y1 - y0);
    const yv = logY ? Math.pow(10, yl) : yl;
    svgText(svg, m.l - 4, sy(yv) + 4, fmt(yv), { "text-anchor": "end" });
  }
  if (opts.title) svgText(svg, m.l, 15, opts.title, { "font-weight": "600" });
  if (opts.xlabel) svgText(svg, W - m.r, H - 4, opts.xlabel, { "text-anchor": "end" });
  return { sx, sy };
}

// series: [{x: [...], y: [...], color, label, width}]
function lineChart(container, series, opts) {
  opts = opts || {};
  const W = opts.width || 460, H = opts.height || 260;
  const svg = svgEl("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` }, container);
  const xs = series.flatMap((s) => s.x), ys = series.flatMap((s) => s.y);
  const yr = opts.logY ? extent(ys.filter((v) => v > 0)) : extent(ys);
  const { sx, sy } = frame(svg, W, H, extent(xs), yr, opts);
  series.forEach((s, k) => {
    let d = "", pen = false;
    s.x.forEach((x, i) => {
      const y = s.y[i];
      const ok = y !== null && Number.isFinite(y) && (!opts.logY || y > 0);
      if (ok) { d += `${pen ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`; pen = true; } else pen = false;
    });
    svgEl("path", { d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.3 }, svg);
    if (s.label) svgText(svg, W - 16, 36 + 14 * k, s.label, { "text-anchor": "end", style: `fill: ${s.color}` });
  });
  return svg;
}

// points: [[x, y]], colors: per point, labels: per point (hover titles); a grey line joins them in order.
function trajectory(container, points, colors, labels, opts) {
  opts = opts || {};
  const W = opts.width || 640, H = opts.height || 480;
  const svg = svgEl("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` }, container);
  const { sx, sy } = frame(svg, W, H, extent(points.map((p) => p[0])), extent(points.map((p) => p[1])), opts);
  const d = points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
  svgEl("path", { d, fill: "none", stroke: "#bbb", "stroke-width": 0.7 }, svg);
  points.forEach((p, i) => {
    const c = svgEl("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: colors[i], class: "point" }, svg);
    svgEl("title", {}, c).textContent = labels[i];
  });
  return svg;
}

// matrix: rows x cols in [0, 1]; rowLabels, colLabels.
function heatmap(container, matrix, rowLabels, colLabels) {
  const cell = 26, left = 110, top = 90;
  const W = left + cell * colLabels.length + 10, H = top + cell * rowLabels.length + 10;
  const svg = svgEl("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}` }, container);
  colLabels.forEach((t, j) => {
    const x = left + cell * j + cell / 2;
    svgText(svg, x, top - 6, t, { transform: `rotate(-60 ${x} ${top - 6})` });
  });
  rowLabels.forEach((t, i) => {
    svgText(svg, left - 6, top + cell * i + cell / 2 + 4, t, { "text-anchor": "end" });
    matrix[i].forEach((v, j) => {
      const g = Math.round(255 * (1 - v));
      const r = svgEl("rect", { x: left + cell * j, y: top + cell * i, width: cell - 1, height: cell - 1,
                                fill: `rgb(${g},${g},255)`, class: "weight" }, svg);
      svgEl("title", {}, r).textContent = `${t} ← ${colLabels[j]}: ${fmt(v)}`;
    });
  });
  return svg;
}
