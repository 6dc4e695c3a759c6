// Inline SVG charts: score bars with confidence whiskers, and training-loss curves.

import { h, s } from "./dom.js";

let chartSeq = 0;

function frame(title, description, width, height, ...children) {
  const id = `chart-${++chartSeq}`;
  return s(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      class: "chart",
      role: "img",
      "aria-labelledby": `${id}-t ${id}-d`,
      preserveAspectRatio: "xMinYMin meet",
    },
    s("title", { id: `${id}-t` }, title),
    s("desc", { id: `${id}-d` }, description),
    ...children,
  );
}

/**
 * Horizontal bars (one per variant) with CI whiskers on a 0–1 axis and a dashed line at
 * the reference's level (the production model, or for embedding jobs the production
 * retriever's own ranking; ``kind`` adds a ``reference-{kind}`` class).
 * rows: [{label, value, ci_low, ci_high, n}]; reference: {value, label, kind?}; threshold: {value, label}
 */
export function scoreChart({ title, rows, reference, threshold }) {
  const W = 640;
  const rowH = 34;
  // Room for the longest row label (about 6.8 px a character at 12 px); at least 132.
  const left = Math.max(132, Math.ceil(Math.max(0, ...rows.map((r) => String(r.label).length)) * 6.8) + 16);
  const right = 64;
  const top = 30;
  const H = top + rows.length * rowH + 30;
  const plotW = W - left - right;
  const x = (v) => left + Math.max(0, Math.min(1, v)) * plotW;
  const parts = [];
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(
      s("line", { x1: x(tick), x2: x(tick), y1: top - 4, y2: H - 24, class: "grid" }),
      s("text", { x: x(tick), y: H - 8, class: "tick", "text-anchor": "middle" }, tick.toFixed(2)),
    );
  }
  rows.forEach((row, i) => {
    const y = top + i * rowH;
    const mid = y + rowH / 2 - 2;
    parts.push(
      s("text", { x: left - 8, y: mid + 4, class: "label", "text-anchor": "end" }, row.label),
    );
    if (row.value === null || row.value === undefined) {
      parts.push(s("text", { x: left + 4, y: mid + 4, class: "na" }, "no score"));
      return;
    }
    parts.push(
      s("rect", {
        x: left,
        y: y + 6,
        width: Math.max(1, x(row.value) - left),
        height: rowH - 16,
        class: `bar bar-${row.kind || "base"}`,
        "data-value": row.value,
      }),
    );
    if (row.ci_low !== null && row.ci_low !== undefined && row.ci_high !== null) {
      const lo = x(row.ci_low);
      const hi = x(row.ci_high);
      parts.push(
        s("line", { x1: lo, x2: hi, y1: mid, y2: mid, class: "whisker" }),
        s("line", { x1: lo, x2: lo, y1: mid - 6, y2: mid + 6, class: "whisker" }),
        s("line", { x1: hi, x2: hi, y1: mid - 6, y2: mid + 6, class: "whisker" }),
      );
    }
    parts.push(
      s(
        "text",
        { x: W - right + 8, y: mid + 4, class: "value", "data-testid": "chart-value" },
        Number(row.value).toFixed(3),
      ),
    );
  });
  if (threshold && threshold.value !== null && threshold.value !== undefined) {
    parts.push(
      s("line", {
        x1: x(threshold.value),
        x2: x(threshold.value),
        y1: top - 6,
        y2: H - 24,
        class: "threshold",
      }),
    );
  }
  if (reference && reference.value !== null && reference.value !== undefined) {
    const rx = x(reference.value);
    parts.push(
      s("line", {
        x1: rx,
        x2: rx,
        y1: top - 10,
        y2: H - 24,
        class: reference.kind ? `reference reference-${reference.kind}` : "reference",
        "data-value": reference.value,
      }),
      s(
        "text",
        { x: rx, y: top - 14, class: "ref-label", "text-anchor": rx > W - 140 ? "end" : "middle" },
        reference.label,
      ),
    );
  }
  const described = rows
    .map((r) =>
      r.value === null || r.value === undefined
        ? `${r.label}: no score`
        : `${r.label}: ${Number(r.value).toFixed(3)} (95% CI ${Number(r.ci_low).toFixed(3)}–${Number(r.ci_high).toFixed(3)})`,
    )
    .join("; ");
  return frame(title, `${described}. Reference: ${reference ? reference.label : "none"}.`, W, H, ...parts);
}

/** A loss curve: training loss per step (line) and validation loss per epoch (dots). */
export function lossChart({ title, train, validation }) {
  const W = 640;
  const H = 240;
  const left = 56;
  const right = 16;
  const top = 16;
  const bottom = 36;
  const all = [...train, ...validation].filter((v) => Number.isFinite(v));
  if (!all.length) return h("p", { class: "muted" }, "No loss values recorded.");
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (hi === lo) {
    hi += 0.5;
    lo = Math.max(0, lo - 0.5);
  }
  const steps = Math.max(train.length, 1);
  const x = (step) => left + ((step - 1) / Math.max(steps - 1, 1)) * (W - left - right);
  const y = (v) => top + (1 - (v - lo) / (hi - lo)) * (H - top - bottom);
  const parts = [
    s("line", { x1: left, x2: left, y1: top, y2: H - bottom, class: "axis" }),
    s("line", { x1: left, x2: W - right, y1: H - bottom, y2: H - bottom, class: "axis" }),
  ];
  for (const v of [hi, (hi + lo) / 2, lo]) {
    parts.push(
      s("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, v.toFixed(3)),
    );
  }
  parts.push(
    s("text", { x: left, y: H - 8, class: "tick" }, "step 1"),
    s("text", { x: W - right, y: H - 8, class: "tick", "text-anchor": "end" }, `step ${steps}`),
  );
  if (train.length) {
    const points = train.map((v, i) => `${x(i + 1).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    parts.push(s("polyline", { points, class: "loss-train", "data-points": train.length }));
  }
  if (validation.length) {
    const at = (i) => Math.round(((i + 1) / validation.length) * steps);
    const points = validation.map((v, i) => `${x(at(i)).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    parts.push(s("polyline", { points, class: "loss-val" }));
    validation.forEach((v, i) => parts.push(s("circle", { cx: x(at(i)), cy: y(v), r: 4, class: "loss-val-dot" })));
  }
  const description =
    `Training loss over ${train.length} steps from ${fmt(train[0])} to ${fmt(train[train.length - 1])}` +
    (validation.length ? `; validation loss per epoch: ${validation.map(fmt).join(", ")}` : "");
  return frame(title, description, W, H, ...parts);
}

function fmt(v) {
  return Number.isFinite(v) ? v.toFixed(3) : "—";
}

export function legend(items) {
  return h(
    "ul",
    { class: "legend" },
    items.map(([cls, text]) => h("li", {}, h("span", { class: `swatch ${cls}`, "aria-hidden": "true" }), text)),
  );
}
