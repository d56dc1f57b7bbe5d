// Small SVG charts for the dashboard: no library, no inline script or style. A chart
// keeps its proportions (it scales as a whole, never stretched), and the plot stays
// inside the frame with room for its dots.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

const LEFT = 40;
const RIGHT = 590;
const WIDTH = RIGHT - LEFT;

function frame(label) {
  const s = svg("svg", { class: "chart", viewBox: "0 0 600 180", role: "img", "aria-label": label, preserveAspectRatio: "xMidYMid meet" });
  s.append(svg("line", { class: "axis", x1: LEFT, y1: 160, x2: RIGHT, y2: 160 }));
  return s;
}

function text(x, y, t, anchor = "start") {
  const e = svg("text", { x, y, "text-anchor": anchor });
  e.textContent = t;
  return e;
}

/** Bars of `values` (numbers) with `labels` under some of them. */
export function bars(values, labels, { label, format = String } = {}) {
  const s = frame(label);
  const max = Math.max(1, ...values);
  const w = WIDTH / Math.max(1, values.length);
  values.forEach((v, i) => {
    const h = (v / max) * 140;
    const bar = svg("rect", { class: "bar", x: LEFT + i * w + 1, y: 160 - h, width: Math.max(1, w - 2), height: h });
    const title = svg("title");
    title.textContent = `${labels[i]}: ${format(v)}`;
    bar.append(title);
    s.append(bar);
  });
  s.append(text(0, 20, format(max)));
  s.append(text(LEFT, 175, labels[0] || ""));
  s.append(text(RIGHT, 175, labels[labels.length - 1] || "", "end"));
  return s;
}

/** A line through `values` in [0, 1] (null where there is nothing to say). */
export function rate(values, labels, { label } = {}) {
  const s = frame(label);
  const w = WIDTH / Math.max(1, values.length - 1);
  let d = "";
  const dots = [];
  values.forEach((v, i) => {
    if (v === null || v === undefined) return;
    const x = LEFT + i * w;
    const y = 160 - v * 140;
    d += `${d ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
    dots.push(svg("circle", { cx: x, cy: y, r: 3, class: "dot" }));
  });
  if (d) s.append(svg("path", { class: "line", d }));
  s.append(...dots);
  s.append(text(0, 24, "100%"));
  s.append(text(0, 160, "0%"));
  s.append(text(LEFT, 175, labels[0] || ""));
  s.append(text(RIGHT, 175, labels[labels.length - 1] || "", "end"));
  return s;
}
