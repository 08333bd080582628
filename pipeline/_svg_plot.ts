/**
 * A small line-plot writer with no dependencies: axes with "nice" ticks (1, 2 or 5 times a power
 * of ten) and labels, a light grid, any number of series drawn as polylines (optionally with a
 * dot at each point), a legend, and an optional log-scaled x axis. The output is one standalone
 * SVG document, white-backed so it reads on dark pages too.
 *
 * Every series is one `<polyline data-series="NAME">` with one point per kept (x, y), so a test
 * can count what was drawn.
 *
 * @module
 */

/** One line of a plot. */
export interface PlotSeries {
  /** The name in the legend. */
  name: string;
  /** The (x, y) points in order; non-finite ones, and x ≤ 0 on a log axis, are left out. */
  points: ReadonlyArray<readonly [number, number]>;
  /** Any SVG colour. */
  color: string;
  /** Line width in pixels. Default 1.5. */
  width?: number;
  /** Line opacity from 0 to 1 (a faint raw curve under its smoothed one). Default 1. */
  opacity?: number;
  /** A dot at each point, for sparse series such as a validation loss. Default false. */
  markers?: boolean;
  /** Listed in the legend. Default true. */
  legend?: boolean;
}

/** What {@linkcode svgLinePlot} draws. */
export interface LinePlot {
  /** A title above the plot. */
  title?: string;
  /** The x axis's label. */
  xLabel: string;
  /** The y axis's label. */
  yLabel: string;
  /** The lines, drawn in order (later ones on top). */
  series: readonly PlotSeries[];
  /** A log-scaled (base 10) x axis. Default false. */
  logX?: boolean;
  /** Size in pixels. Default 720 × 400. */
  width?: number;
  /** Size in pixels. Default 720 × 400. */
  height?: number;
  /**
   * The most points kept per series; a longer series is thinned to evenly spaced points (the
   * first and last kept), so a 100k-step log still makes a small file. Default 2000.
   */
  maxPoints?: number;
}

const MARGIN = { left: 64, right: 20, top: 36, bottom: 48 };
const FONT_SIZE = 12;
// A rough width of one character of the 12 px sans-serif font, to size the legend box.
const CHAR_WIDTH = 6.8;

/** Escapes text for SVG/XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&${XML_ENTITIES[c]};`);
}
const XML_ENTITIES: Record<string, string> = {
  "&": "amp",
  "<": "lt",
  ">": "gt",
  '"': "quot",
  "'": "apos",
};

/** The points of `series` the plot keeps: finite, positive x on a log axis, thinned. */
export function plottedPoints(
  series: PlotSeries,
  options: { logX?: boolean; maxPoints?: number } = {},
): Array<readonly [number, number]> {
  const kept = series.points.filter(([x, y]) =>
    Number.isFinite(x) && Number.isFinite(y) && (!options.logX || x > 0)
  );
  const max = Math.max(2, options.maxPoints ?? 2000);
  if (kept.length <= max) return kept;
  const thinned: Array<readonly [number, number]> = [];
  for (let i = 0; i < max; i++) thinned.push(kept[Math.round(i * (kept.length - 1) / (max - 1))]);
  return thinned;
}

/** Renders `plot` as a standalone SVG document; see the module documentation. */
export function svgLinePlot(plot: LinePlot): string {
  const width = plot.width ?? 720;
  const height = plot.height ?? 400;
  const logX = plot.logX ?? false;
  const drawn = plot.series.map((series) => ({
    series,
    points: plottedPoints(series, { logX, maxPoints: plot.maxPoints }),
  }));
  const all = drawn.flatMap((d) => d.points);

  // The x range is the data's (steps fill the width); the y range widens to the nearest ticks
  // so the curves never touch the frame.
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const xAxis = logX ? logAxis(xs) : linearAxis(xs, 8, false);
  const yAxis = linearAxis(ys, 6, true);

  const left = MARGIN.left, top = MARGIN.top;
  const right = width - MARGIN.right, bottom = height - MARGIN.bottom;
  const toX = (x: number) => {
    const [a, b] = logX ? [Math.log10(xAxis.min), Math.log10(xAxis.max)] : [xAxis.min, xAxis.max];
    const v = logX ? Math.log10(x) : x;
    return round2(left + (v - a) / (b - a) * (right - left));
  };
  const toY = (y: number) =>
    round2(bottom - (y - yAxis.min) / (yAxis.max - yAxis.min) * (bottom - top));

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="${FONT_SIZE}">`,
  );
  if (plot.title) out.push(`<title>${escapeXml(plot.title)}</title>`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(
    `<defs><clipPath id="plot-area"><rect x="${left}" y="${top}" ` +
      `width="${right - left}" height="${bottom - top}"/></clipPath></defs>`,
  );
  if (plot.title) {
    out.push(
      `<text x="${width / 2}" y="${top - 14}" text-anchor="middle" font-size="14" ` +
        `font-weight="bold">${escapeXml(plot.title)}</text>`,
    );
  }

  // Grid, frame and ticks.
  out.push(`<g stroke="#e6e6e6" stroke-width="1">`);
  for (const t of xAxis.ticks) out.push(line(toX(t), top, toX(t), bottom));
  for (const t of yAxis.ticks) out.push(line(left, toY(t), right, toY(t)));
  out.push(`</g>`);
  out.push(`<g stroke="#333" stroke-width="1">`);
  out.push(line(left, bottom, right, bottom), line(left, top, left, bottom));
  for (const t of xAxis.ticks) out.push(line(toX(t), bottom, toX(t), bottom + 5));
  for (const t of yAxis.ticks) out.push(line(left - 5, toY(t), left, toY(t)));
  out.push(`</g>`);
  out.push(`<g fill="#333" class="tick-labels">`);
  for (const t of xAxis.ticks) {
    out.push(
      `<text x="${toX(t)}" y="${bottom + 18}" text-anchor="middle">` +
        `${escapeXml(formatTick(t, xAxis.step))}</text>`,
    );
  }
  for (const t of yAxis.ticks) {
    out.push(
      `<text x="${left - 8}" y="${round2(toY(t) + 4)}" text-anchor="end">` +
        `${escapeXml(formatTick(t, yAxis.step))}</text>`,
    );
  }
  out.push(`</g>`);
  out.push(
    `<text class="x-label" x="${round2((left + right) / 2)}" y="${height - 10}" ` +
      `text-anchor="middle" fill="#111">${escapeXml(plot.xLabel)}${logX ? " (log scale)" : ""}` +
      `</text>`,
  );
  const yMid = round2((top + bottom) / 2);
  out.push(
    `<text class="y-label" x="16" y="${yMid}" text-anchor="middle" fill="#111" ` +
      `transform="rotate(-90 16 ${yMid})">${escapeXml(plot.yLabel)}</text>`,
  );

  if (all.length === 0) {
    out.push(
      `<text x="${round2((left + right) / 2)}" y="${yMid}" text-anchor="middle" fill="#888">` +
        `no data</text>`,
    );
  }

  // The series, clipped to the plot area.
  out.push(`<g clip-path="url(#plot-area)" fill="none">`);
  for (const { series, points } of drawn) {
    const stroke = `stroke="${escapeXml(series.color)}" stroke-width="${series.width ?? 1.5}"` +
      (series.opacity === undefined ? "" : ` stroke-opacity="${series.opacity}"`);
    const coordinates = points.map(([x, y]) => `${toX(x)},${toY(y)}`).join(" ");
    out.push(
      `<polyline data-series="${escapeXml(series.name)}" points="${coordinates}" ${stroke} ` +
        `stroke-linejoin="round"/>`,
    );
    // A single point draws no line, so it always gets its dot.
    if (series.markers || points.length === 1) {
      out.push(`<g fill="${escapeXml(series.color)}">`);
      for (const [x, y] of points) out.push(`<circle cx="${toX(x)}" cy="${toY(y)}" r="2.5"/>`);
      out.push(`</g>`);
    }
  }
  out.push(`</g>`);

  // The legend, top right, where falling loss curves leave room.
  const listed = plot.series.filter((s) => s.legend ?? true);
  if (listed.length > 0) {
    const rowHeight = 18;
    const boxWidth = 40 + Math.max(...listed.map((s) => s.name.length)) * CHAR_WIDTH;
    const boxHeight = listed.length * rowHeight + 8;
    const x0 = round2(right - boxWidth - 8), y0 = top + 8;
    out.push(`<g class="legend">`);
    out.push(
      `<rect x="${x0}" y="${y0}" width="${round2(boxWidth)}" height="${boxHeight}" ` +
        `fill="white" fill-opacity="0.85" stroke="#ccc"/>`,
    );
    listed.forEach((s, i) => {
      const y = y0 + 4 + rowHeight * i + rowHeight / 2;
      out.push(
        `<line x1="${x0 + 8}" y1="${y}" x2="${x0 + 30}" y2="${y}" ` +
          `stroke="${escapeXml(s.color)}" stroke-width="${Math.max(2, s.width ?? 1.5)}"` +
          (s.opacity === undefined ? "" : ` stroke-opacity="${Math.max(0.4, s.opacity)}"`) +
          `/>`,
      );
      if (s.markers) {
        out.push(`<circle cx="${x0 + 19}" cy="${y}" r="2.5" fill="${escapeXml(s.color)}"/>`);
      }
      out.push(`<text x="${x0 + 36}" y="${y + 4}" fill="#111">${escapeXml(s.name)}</text>`);
    });
    out.push(`</g>`);
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

interface Axis {
  min: number;
  max: number;
  /** The tick spacing (on a log axis, the smallest decade's), for labels' decimals. */
  step: number;
  ticks: number[];
}

/** A linear axis over `values` with about `target` ticks; `snap` widens it to whole ticks. */
function linearAxis(values: number[], target: number, snap: boolean): Axis {
  let min = values.length ? Math.min(...values) : 0;
  let max = values.length ? Math.max(...values) : 1;
  if (min === max) {
    const pad = Math.abs(min) > 0 ? Math.abs(min) * 0.1 : 1;
    min -= pad;
    max += pad;
  }
  const step = niceStep((max - min) / target);
  if (snap) {
    min = Math.floor(min / step + 1e-9) * step;
    max = Math.ceil(max / step - 1e-9) * step;
  }
  const ticks: number[] = [];
  for (let i = Math.ceil(min / step - 1e-9); i * step <= max + step * 1e-9; i++) {
    ticks.push(cleanFloat(i * step));
  }
  return { min, max, step, ticks };
}

/** A log axis over the positive `values`: decades, plus 2 and 5 times them when few fit. */
function logAxis(values: number[]): Axis {
  let min = values.length ? Math.min(...values) : 1;
  let max = values.length ? Math.max(...values) : 10;
  if (min === max) {
    min /= 2;
    max *= 2;
  }
  const inside = (v: number) => v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9);
  const decades: number[] = [];
  for (let k = Math.floor(Math.log10(min)); k <= Math.ceil(Math.log10(max)); k++) {
    decades.push(k);
  }
  let ticks = decades.map((k) => cleanFloat(10 ** k)).filter(inside);
  if (ticks.length < 3) {
    ticks = decades.flatMap((k) => [1, 2, 5].map((m) => cleanFloat(m * 10 ** k))).filter(inside);
  }
  return { min, max, step: 10 ** Math.floor(Math.log10(min)), ticks };
}

/** The nearest 1, 2 or 5 times a power of ten to `raw`. */
function niceStep(raw: number): number {
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / magnitude;
  return (fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10) * magnitude;
}

/** A tick label: as many decimals as the step needs; 10k, 1.5M for large whole numbers. */
function formatTick(value: number, step: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e4 && Number.isInteger(value)) {
    const [scale, suffix] = abs >= 1e9 ? [1e9, "G"] : abs >= 1e6 ? [1e6, "M"] : [1e3, "k"];
    return `${cleanFloat(value / scale)}${suffix}`;
  }
  const decimals = Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
  return value.toFixed(decimals);
}

/** Drops float noise such as 0.30000000000000004. */
function cleanFloat(value: number): number {
  return Number(value.toPrecision(12));
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

function line(x1: number, y1: number, x2: number, y2: number): string {
  return `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}"/>`;
}
