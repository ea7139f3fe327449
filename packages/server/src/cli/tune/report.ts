import type { Point } from './stability.js';
import { type Candidate, keyOf } from './space.js';

/** One candidate's measurements, and its best point within the latency budget. */
export interface Measured {
  candidate: Candidate;
  key: string;
  points: Point[];
  /** The highest-throughput point whose p99 is within the budget; undefined when none is. */
  best: Point | undefined;
  seconds: number;
}

/** The best point within the budget and without errors; stable points first, an unstable one only when none is stable. */
export function bestWithin(points: readonly Point[], budgetMs: number): Point | undefined {
  const within = points.filter((p) => p.p99 <= budgetMs && p.errors === 0);
  const pool = within.some((p) => p.stable) ? within.filter((p) => p.stable) : within;
  return [...pool].sort((a, b) => b.throughput - a.throughput)[0];
}

/** Points no other point beats on both throughput (higher) and p99 (lower). */
export function paretoFront<T extends { throughput: number; p99: number }>(points: readonly T[]): T[] {
  return points
    .filter(
      (p) =>
        !points.some(
          (q) =>
            q !== p && q.throughput >= p.throughput && q.p99 <= p.p99 && (q.throughput > p.throughput || q.p99 < p.p99),
        ),
    )
    .sort((a, b) => a.p99 - b.p99);
}

export function tableRows(
  measured: readonly Measured[],
  recommended: string | undefined,
): Record<string, string | number>[] {
  return measured.map((m) => {
    const shown = m.best ?? [...m.points].sort((a, b) => b.throughput - a.throughput)[0];
    return {
      candidate: `${m.key}${m.key === recommended ? ' *' : ''}`,
      'max batch': m.candidate.maxBatchSize,
      'max delay': String(m.candidate.maxDelay),
      'workers x threads': `${m.candidate.workers}x${m.candidate.threads}`,
      preferred: m.candidate.preferred ? 'yes' : '-',
      concurrency: shown?.concurrency ?? '-',
      'req/s': Math.round(shown?.throughput ?? 0),
      'p50 ms': Number((shown?.p50 ?? Number.NaN).toFixed(1)),
      'p99 ms': Number((shown?.p99 ?? Number.NaN).toFixed(1)),
      'mean batch': Number.isNaN(shown?.meanBatch ?? Number.NaN) ? '-' : Number((shown as Point).meanBatch.toFixed(1)),
      'within budget': m.best === undefined ? 'no' : 'yes',
      // The shown point's own verdict (stability.ts), the one tune.json and the chart give each point: a
      // candidate with one noisy concurrency is not unstable where it is recommended.
      stable: shown?.stable === true ? 'yes' : 'no',
    };
  });
}

const esc = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** tune.svg: every measured point (throughput against p99), the Pareto front, the budget, and the pick. */
export function renderTuneSvg(
  measured: readonly Measured[],
  budgetMs: number,
  recommended: Candidate | undefined,
  title: string,
): string {
  const all = measured.flatMap((m) => m.points.map((p) => ({ ...p, key: m.key })));
  // The front, like the recommendation, stands on stable points; unstable ones are drawn hollow.
  const front = paretoFront(all.filter((p) => p.stable));
  const W = 720;
  const H = 420;
  const left = 64;
  const right = W - 20;
  const top = 40;
  const bottom = H - 50;
  const xMax = Math.max(1, ...all.map((p) => p.p99), budgetMs) * 1.05;
  const yMax = Math.max(1, ...all.map((p) => p.throughput)) * 1.1;
  const x = (ms: number): number => left + ((right - left) * ms) / xMax;
  const y = (rps: number): number => bottom - ((bottom - top) * rps) / yMax;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${left}" y="22" font-size="14" font-weight="bold">${esc(title)}</text>`,
    `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="#999"/><line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="#999"/>`,
    `<text x="${(left + right) / 2 - 30}" y="${H - 14}">p99 latency (ms)</text>`,
    `<text x="14" y="${(top + bottom) / 2}" transform="rotate(-90 14 ${(top + bottom) / 2})">throughput (req/s)</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const ms = (xMax * i) / 4;
    const rps = (yMax * i) / 4;
    parts.push(
      `<text x="${x(ms) - 8}" y="${bottom + 16}">${ms.toFixed(0)}</text>`,
      `<text x="${left - 48}" y="${y(rps) + 4}">${rps.toFixed(0)}</text>`,
    );
  }
  parts.push(
    `<line x1="${x(budgetMs)}" y1="${top}" x2="${x(budgetMs)}" y2="${bottom}" stroke="#c23b3b" stroke-dasharray="5 4"/>`,
    `<text x="${x(budgetMs) - 4}" y="${top + 12}" fill="#c23b3b" text-anchor="end">p99 budget ${budgetMs} ms</text>`,
  );
  for (const p of all) {
    const fill = p.stable ? 'fill="#9aa3b5"' : 'fill="white" stroke="#9aa3b5" stroke-width="1.2"';
    parts.push(
      `<circle cx="${x(p.p99).toFixed(1)}" cy="${y(p.throughput).toFixed(1)}" r="3" ${fill}><title>${esc(p.key)} @${p.concurrency}: ${Math.round(p.throughput)} req/s, p99 ${p.p99.toFixed(1)} ms${p.stable ? '' : ', unstable'}</title></circle>`,
    );
  }
  parts.push(
    `<polyline fill="none" stroke="#2f6fde" stroke-width="2" points="${front.map((p) => `${x(p.p99).toFixed(1)},${y(p.throughput).toFixed(1)}`).join(' ')}"/>`,
  );
  for (const p of front)
    parts.push(`<circle cx="${x(p.p99).toFixed(1)}" cy="${y(p.throughput).toFixed(1)}" r="4" fill="#2f6fde"/>`);
  const pick = recommended === undefined ? undefined : measured.find((m) => m.key === keyOf(recommended))?.best;
  if (pick !== undefined) {
    parts.push(
      `<circle cx="${x(pick.p99)}" cy="${y(pick.throughput)}" r="8" fill="none" stroke="#d9822b" stroke-width="2.5"/>`,
      `<text x="${x(pick.p99) + 10}" y="${y(pick.throughput) - 8}" fill="#d9822b">recommended: ${esc(keyOf(recommended as Candidate))}</text>`,
    );
  }
  parts.push(
    `<text x="${right - 8}" y="${bottom - 22}" fill="#2f6fde" text-anchor="end">— Pareto front of the stable points (${front.length} of ${all.length} points)</text>`,
    `<text x="${right - 8}" y="${bottom - 8}" fill="#6b7385" text-anchor="end">hollow: unstable (no 3 windows agreed within 10 %)</text>`,
    '</svg>',
  );
  return `${parts.join('\n')}\n`;
}
