"use strict";
// Probability-over-time heat map on a canvas: one row per instrument, one column per window,
// magma colours on a fixed 0–1 scale (as `neuroear analyze --plot`), active cells marked by a bar.
// Each window fills the span up to the next window's start, so overlapping hops show the newest.

const Heat = (() => {
  const MAGMA = [
    [0.0, [0, 0, 4]], [0.13, [28, 16, 68]], [0.25, [79, 18, 123]], [0.38, [129, 37, 129]], [0.5, [181, 54, 122]],
    [0.63, [229, 80, 100]], [0.75, [251, 135, 97]], [0.88, [254, 194, 135]], [1.0, [252, 253, 191]],
  ];
  const TICKS = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
  const ROW_PX = 18, LEFT_PX = 86, BOTTOM_PX = 22, TOP_PX = 4, RIGHT_PX = 6, MARK_PX = 3;

  function color(p) {
    const v = Math.min(1, Math.max(0, Number.isFinite(p) ? p : 0));
    for (let i = 1; i < MAGMA.length; i++) {
      const [t1, c1] = MAGMA[i];
      if (v <= t1) {
        const [t0, c0] = MAGMA[i - 1];
        const f = (v - t0) / (t1 - t0);
        return `rgb(${c0.map((c, k) => Math.round(c + f * (c1[k] - c))).join(",")})`;
      }
    }
    return "rgb(252,253,191)";
  }

  function fmtTime(t, long) {
    if (!long) return `${+t.toFixed(1)} s`;
    const m = Math.floor(t / 60), s = Math.floor(t % 60);
    return `${m}:${String(s).padStart(2, "0")}`;
  }

  // windows: [{start, end, probs: {label: p}, active: [label]}] in time order.
  // opts: {labels, t0 (s, left edge), span (s shown), ended (bool)}. Returns the geometry for hit().
  function draw(canvas, windows, opts) {
    const labels = opts.labels;
    const dpr = window.devicePixelRatio || 1;
    const cssW = Math.max(200, canvas.clientWidth || 800);
    const cssH = TOP_PX + ROW_PX * labels.length + BOTTOM_PX;
    canvas.style.height = `${cssH}px`;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#101016";
    ctx.fillRect(0, 0, cssW, cssH);
    const plotW = cssW - LEFT_PX - RIGHT_PX;
    const t0 = opts.t0 || 0;
    const span = Math.max(opts.span || 0, 1e-3);
    const x = (t) => LEFT_PX + ((t - t0) / span) * plotW;
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    labels.forEach((lab, r) => {
      ctx.fillStyle = "#c8c8d4";
      ctx.fillText(lab, LEFT_PX - 6, TOP_PX + r * ROW_PX + ROW_PX / 2);
    });
    let drawn = 0;
    for (let i = 0; i < windows.length; i++) {
      const w = windows[i];
      const stop = i + 1 < windows.length ? Math.min(w.end, windows[i + 1].start) : w.end;
      if (stop <= t0) continue;
      const x0 = Math.max(LEFT_PX, x(w.start));
      const x1 = Math.min(LEFT_PX + plotW, x(stop));
      if (x1 <= LEFT_PX) continue;
      const cw = Math.max(1, x1 - x0 + 0.5);
      const act = new Set(w.active);
      labels.forEach((lab, r) => {
        const y = TOP_PX + r * ROW_PX;
        ctx.fillStyle = color(w.probs[lab]);
        ctx.fillRect(x0, y, cw, ROW_PX - 1);
        if (act.has(lab)) {
          ctx.fillStyle = "#4fd1c5";
          ctx.fillRect(x0, y + ROW_PX - 1 - MARK_PX, cw, MARK_PX);
        }
      });
      drawn++;
    }
    // time axis
    const yAxis = TOP_PX + ROW_PX * labels.length;
    ctx.strokeStyle = "#55556a";
    ctx.beginPath();
    ctx.moveTo(LEFT_PX, yAxis + 0.5);
    ctx.lineTo(LEFT_PX + plotW, yAxis + 0.5);
    ctx.stroke();
    const step = TICKS.find((s) => (s / span) * plotW >= 70) || TICKS[TICKS.length - 1];
    const long = t0 + span >= 180;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#9a9aab";
    for (let t = Math.ceil(t0 / step) * step; t <= t0 + span + 1e-9; t += step) {
      const xt = x(t);
      ctx.fillRect(xt, yAxis, 1, 4);
      ctx.fillText(fmtTime(t, long), Math.min(Math.max(xt, LEFT_PX + 12), LEFT_PX + plotW - 12), yAxis + 6);
    }
    canvas.dataset.drawn = String(drawn);
    return { t0, span, plotW, rows: labels.length };
  }

  // The window under a mouse position (css px inside the canvas), or -1.
  function hit(geom, windows, xCss, yCss) {
    if (!geom || !windows.length || xCss < LEFT_PX || yCss > TOP_PX + ROW_PX * geom.rows) return -1;
    const t = geom.t0 + ((xCss - LEFT_PX) / geom.plotW) * geom.span;
    let lo = 0, hi = windows.length - 1, best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (windows[mid].start <= t) { best = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return best >= 0 && t < windows[best].end ? best : -1;
  }

  return { draw, hit, color, fmtTime };
})();
