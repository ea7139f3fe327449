import type { LoadResult } from './load.js';

export interface Series {
  label: string;
  results: LoadResult[];
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
const escapeXml = (s: string): string => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** The smallest 1, 2 or 5 times a power of ten at or above `value` / 4: four round grid steps. */
function niceStep(value: number): number {
  const rough = value / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 5, 10]) if (m * power >= rough) return m * power;
  return 10 * power;
}

/** A level drawn across the throughput panel as a dashed line: what the model alone can do. */
export interface Ceiling {
  label: string;
  requestsPerSecond: number;
}

/**
 * Two panels, throughput and p99 latency against concurrency (log scale),
 * one line per server. Plain SVG, so the chart needs no plotting library and
 * renders on GitHub as it is.
 */
export function renderChart(series: Series[], title: string, ceilings: readonly Ceiling[] = []): string {
  const width = 960;
  const height = 380;
  const panel = { w: 360, h: 250, top: 70 };
  const lefts = [70, 520];
  const concurrencies = [...new Set(series.flatMap((s) => s.results.map((r) => r.concurrency)))].sort((a, b) => a - b);
  const minC = Math.log2(Math.max(1, concurrencies[0] ?? 1));
  const maxC = Math.log2(Math.max(2, concurrencies.at(-1) ?? 2));
  const x = (left: number, c: number): number =>
    left + ((Math.log2(Math.max(1, c)) - minC) / Math.max(1e-9, maxC - minC)) * panel.w;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="16">${escapeXml(title)}</text>`,
  ];
  const panels: { label: string; value: (r: LoadResult) => number }[] = [
    { label: 'throughput (requests/s)', value: (r) => r.requestsPerSecond },
    { label: 'p99 latency (ms)', value: (r) => r.p99 },
  ];
  panels.forEach((p, pi) => {
    const left = lefts[pi] as number;
    // The throughput panel's scale holds its ceilings too, so that each is drawn where it is.
    const levels = pi === 0 ? ceilings.map((c) => c.requestsPerSecond) : [];
    const top = Math.max(1, ...series.flatMap((s) => s.results.map(p.value)), ...levels);
    const step = niceStep(top);
    const steps = Math.ceil(top / step);
    const max = step * steps;
    const y = (v: number): number => panel.top + panel.h - (v / max) * panel.h;
    out.push(
      `<text x="${left + panel.w / 2}" y="${panel.top - 12}" text-anchor="middle" font-size="13">${p.label}</text>`,
    );
    out.push(
      `<line x1="${left}" y1="${panel.top + panel.h}" x2="${left + panel.w}" y2="${panel.top + panel.h}" stroke="#333"/>`,
    );
    out.push(`<line x1="${left}" y1="${panel.top}" x2="${left}" y2="${panel.top + panel.h}" stroke="#333"/>`);
    for (let i = 0; i <= steps; i++) {
      const v = step * i;
      out.push(`<line x1="${left - 4}" y1="${y(v)}" x2="${left + panel.w}" y2="${y(v)}" stroke="#eee"/>`);
      out.push(
        `<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v >= 100 ? Math.round(v) : v.toFixed(1)}</text>`,
      );
    }
    for (const c of concurrencies) {
      out.push(`<text x="${x(left, c)}" y="${panel.top + panel.h + 16}" text-anchor="middle">${c}</text>`);
    }
    out.push(
      `<text x="${left + panel.w / 2}" y="${panel.top + panel.h + 34}" text-anchor="middle">concurrent clients</text>`,
    );
    if (pi === 0)
      for (const ceiling of ceilings) {
        const cy = y(ceiling.requestsPerSecond).toFixed(1);
        out.push(
          `<line x1="${left}" y1="${cy}" x2="${left + panel.w}" y2="${cy}" stroke="#555" stroke-dasharray="6 4"/>`,
          `<text x="${left + panel.w - 4}" y="${Number(cy) - 5}" text-anchor="end" fill="#555">${escapeXml(ceiling.label)}</text>`,
        );
      }
    series.forEach((s, si) => {
      const color = COLORS[si % COLORS.length] as string;
      const points = s.results.map((r) => `${x(left, r.concurrency).toFixed(1)},${y(p.value(r)).toFixed(1)}`);
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${points.join(' ')}"/>`);
      for (const point of points) {
        const [px, py] = point.split(',');
        out.push(`<circle cx="${px}" cy="${py}" r="3" fill="${color}"/>`);
      }
    });
  });
  let lx = 70;
  series.forEach((s, si) => {
    const color = COLORS[si % COLORS.length] as string;
    out.push(`<rect x="${lx}" y="${height - 22}" width="14" height="4" fill="${color}"/>`);
    out.push(`<text x="${lx + 20}" y="${height - 16}">${escapeXml(s.label)}</text>`);
    lx += 40 + s.label.length * 6.5;
  });
  out.push('</svg>');
  return out.join('\n');
}
