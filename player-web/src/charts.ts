// Small charts as inline SVG, built with DOM calls: a bar chart (views per day) and a
// line chart (audience retention). No style attributes (the page's policy refuses
// them): classes and SVG presentation attributes only. Each chart is an image with a
// name that says what it shows. The scaling helpers are pure, for the tests.

const SVG = 'http://www.w3.org/2000/svg';

/** The smallest of 1, 2, 5 × 10ⁿ at or above `v` (1 for nothing): the top of an axis. */
export function niceMax(v: number): number {
  if (!(v > 0) || !Number.isFinite(v)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v - 1e-9) return m * p;
  return 10 * p;
}

export interface Box { width: number; height: number; left: number; right: number; top: number; bottom: number }

export const BOX: Box = { width: 640, height: 220, left: 44, right: 12, top: 12, bottom: 28 };

export interface Bar { x: number; y: number; w: number; h: number }

/** Bars for `values` in the plot area of `box`, scaled to `max`, with a gap between. */
export function barLayout(values: number[], max: number, box: Box = BOX): Bar[] {
  const plotW = box.width - box.left - box.right;
  const plotH = box.height - box.top - box.bottom;
  const slot = values.length ? plotW / values.length : 0;
  const gap = Math.min(slot * 0.2, 8);
  return values.map((v, i) => {
    const h = max > 0 ? (Math.max(0, Math.min(v, max)) / max) * plotH : 0;
    return { x: round(box.left + i * slot + gap / 2), y: round(box.top + plotH - h), w: round(Math.max(1, slot - gap)), h: round(h) };
  });
}

/** The points of a line through `values` (0..max) spread evenly across the plot area,
 * as an SVG `points` list. */
export function linePoints(values: number[], max: number, box: Box = BOX): string {
  const plotW = box.width - box.left - box.right;
  const plotH = box.height - box.top - box.bottom;
  const n = values.length;
  return values
    .map((v, i) => {
      const x = box.left + (n > 1 ? (i / (n - 1)) * plotW : plotW / 2);
      const y = box.top + plotH - (max > 0 ? (Math.max(0, Math.min(v, max)) / max) * plotH : 0);
      return `${round(x)},${round(y)}`;
    })
    .join(' ');
}

const round = (n: number) => Math.round(n * 10) / 10;

/** A share (0..1) as a whole percentage: 0.404 -> "40%". */
export function percent(share: number): string {
  return `${Math.round((Number.isFinite(share) ? share : 0) * 100)}%`;
}

/** What a retention curve says, for its accessible name. */
export function retentionSummary(retention: number[]): string {
  if (!retention.length) return 'Audience retention: no views yet';
  const mid = retention[Math.floor(retention.length / 2)];
  return `Audience retention: ${percent(retention[0])} at the start, ${percent(mid)} at the middle, ${percent(retention[retention.length - 1])} at the end`;
}

export interface DayValue { day: string; value: number }

/** Every day from the first to the last given (at most the last `limit`), with 0 for
 * days without any. Days are `YYYY-MM-DD` (UTC). */
export function fillDays(days: DayValue[], limit = 60): DayValue[] {
  if (!days.length) return [];
  const byDay = new Map(days.map((d) => [d.day, d.value]));
  const sorted = [...byDay.keys()].sort();
  const ms = (d: string) => Date.parse(`${d}T00:00:00Z`);
  const last = ms(sorted[sorted.length - 1]);
  const first = Math.max(ms(sorted[0]), last - (limit - 1) * 86_400_000);
  const out: DayValue[] = [];
  for (let t = first; t <= last; t += 86_400_000) {
    const day = new Date(t).toISOString().slice(0, 10);
    out.push({ day, value: byDay.get(day) ?? 0 });
  }
  return out;
}

type SvgAttrs = Record<string, string | number>;

function s<K extends keyof SVGElementTagNameMap>(tag: K, attrs: SvgAttrs = {}, ...children: (Node | string)[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) el.append(c);
  return el;
}

function frame(label: string, cls: string, box: Box): SVGSVGElement {
  return s('svg', { class: `chart ${cls}`, viewBox: `0 0 ${box.width} ${box.height}`, role: 'img', 'aria-label': label, preserveAspectRatio: 'xMidYMid meet' });
}

/** Horizontal grid lines and their labels at 0, half and the top of the y axis. */
function yAxis(svg: SVGSVGElement, max: number, box: Box, fmt: (v: number) => string) {
  const plotH = box.height - box.top - box.bottom;
  for (const f of [0, 0.5, 1]) {
    const y = round(box.top + plotH - f * plotH);
    svg.append(
      s('line', { class: f === 0 ? 'axis' : 'grid', x1: box.left, x2: box.width - box.right, y1: y, y2: y }),
      s('text', { class: 'tick', x: box.left - 6, y: y + 4, 'text-anchor': 'end' }, fmt(f * max)),
    );
  }
}

/** A bar chart of one value per day, named `label`. */
export function barChart(days: DayValue[], label: string, box: Box = BOX): SVGSVGElement {
  const svg = frame(label, 'bars', box);
  const max = niceMax(Math.max(0, ...days.map((d) => d.value)));
  yAxis(svg, max, box, (v) => String(Math.round(v * 10) / 10));
  barLayout(days.map((d) => d.value), max, box).forEach((b, i) => {
    const d = days[i];
    svg.append(s('rect', { class: 'bar', x: b.x, y: b.y, width: b.w, height: b.h }, s('title', {}, `${d.day}: ${d.value}`)));
  });
  // The first and last day under the axis.
  const baseline = box.height - 8;
  if (days.length) {
    svg.append(s('text', { class: 'tick', x: box.left, y: baseline, 'text-anchor': 'start' }, days[0].day));
    if (days.length > 1) svg.append(s('text', { class: 'tick', x: box.width - box.right, y: baseline, 'text-anchor': 'end' }, days[days.length - 1].day));
  }
  return svg;
}

/** A line chart of shares (0..1) across the lecture (x: 0..100 %), named `label`. */
export function shareLineChart(values: number[], label: string, box: Box = BOX): SVGSVGElement {
  const svg = frame(label, 'line', box);
  yAxis(svg, 1, box, (v) => percent(v));
  const points = linePoints(values, 1, box);
  if (values.length) {
    const bottom = box.height - box.bottom;
    const area = `${box.left},${bottom} ${points} ${box.width - box.right},${bottom}`;
    svg.append(s('polygon', { class: 'area', points: area }), s('polyline', { class: 'curve', points, fill: 'none' }));
  }
  const baseline = box.height - 8;
  for (const [f, anchor] of [[0, 'start'], [0.5, 'middle'], [1, 'end']] as const) {
    const x = box.left + f * (box.width - box.left - box.right);
    svg.append(s('text', { class: 'tick', x: round(x), y: baseline, 'text-anchor': anchor }, `${f * 100}% of the lecture`));
  }
  return svg;
}
