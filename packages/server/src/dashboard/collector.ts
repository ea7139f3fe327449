import type { BatchInfo, Percentiles, StepInfo } from 'batched-fn';
import type { MetricsListener, ServerMetrics } from '../metrics/metrics.js';
import type { ServedModel } from '../model/served-model.js';
import type { ModelRegistry } from '../repository/registry.js';

/** How often the dashboard's numbers move: one snapshot a second, to every open page. */
export const TICK_MS = 1000;
/** Seconds of history the time charts keep. */
const HISTORY = 60;
/** Recent (rows, ms) batches drawn under the cost curve, and requests behind the latency percentiles. */
const POINTS = 200;
const LATENCIES = 2048;

/** A fixed-size ring: the newest `size` values. */
class Ring<T> {
  readonly #items: T[] = [];
  #next = 0;
  constructor(readonly size: number) {}
  push(item: T): void {
    if (this.#items.length < this.size) this.#items.push(item);
    else this.#items[this.#next] = item;
    this.#next = (this.#next + 1) % this.size;
  }
  values(): T[] {
    return [...this.#items];
  }
}

const quantile = (sorted: number[], q: number): number | null =>
  sorted.length === 0 ? null : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);
const pair = (p: Percentiles): { p50: number | null; p99: number | null } =>
  p.count === 0 ? { p50: null, p99: null } : { p50: p.p50, p99: p.p99 };

interface ModelTrack {
  requests: number;
  errors: number;
  rows: number;
  latencies: Ring<number>;
  points: Ring<[number, number]>;
  sizes: Ring<number>;
  reasons: Record<string, number>[];
  lastReasons: Record<string, number> | undefined;
  lastBusy: Map<number, number>;
}

interface GeneratorTrack {
  tokens: number;
  firstTokens: Ring<number>;
  tokensPerSecond: number[];
}

/** One model's panel, as the page draws it. */
export interface ModelPanel {
  name: string;
  state: string;
  reqPerSecond: number;
  rowsPerSecond: number;
  errorsPerSecond: number;
  latencyMs: { p50: number | null; p99: number | null };
  waitMs: { p50: number | null; p99: number | null };
  execMs: { p50: number | null; p99: number | null };
  batchSizes: [number, number][];
  meanBatch: number | null;
  maxBatchSize: number;
  queueDepth: number;
  /** The batcher's `channelCap`, by the name the dashboard page reads; null: no cap (a remote frontend). */
  queueCap: number | null;
  maxDelay: number | 'auto' | null;
  reasons: Record<string, number>[];
  workers: { id: number; utilisation: number; restarts: number; state: string }[];
  /** The learned cost curve, and what a second batch slot gains (stats.costModel.slotEfficiency). */
  cost: { fixedMs: number; perRowMs: number; slotEfficiency: number } | null;
  points: [number, number][];
}

export interface Snapshot {
  at: number;
  models: ModelPanel[];
  generators: {
    name: string;
    active: number;
    waiting: number;
    tokensPerSecond: number;
    history: number[];
    ttftMs: { p50: number | null; p99: number | null };
  }[];
}

/**
 * What the dashboard shows, gathered from the same events and stats the metrics read: per
 * model, rates over the last second, recent latency and batch sizes, a minute of dispatch
 * reasons, worker utilisation, and the learned cost curve over recent batches. Keyed only by the
 * names of models the server has (events for other names are ignored).
 */
export class DashboardCollector {
  readonly #registry: ModelRegistry;
  readonly #models = new Map<string, ModelTrack>();
  readonly #gens = new Map<string, GeneratorTrack>();
  readonly #unlisten: () => void;
  #last = performance.now();

  constructor(registry: ModelRegistry, metrics: ServerMetrics) {
    this.#registry = registry;
    const listener: MetricsListener = {
      batch: (info: BatchInfo) => {
        const track = this.#track(info.name);
        if (track === undefined) return;
        track.rows += info.rows;
        track.sizes.push(info.rows);
        if (info.ok) track.points.push([info.rows, Math.round(info.execMs * 1000) / 1000]);
      },
      request: (model, status, seconds) => {
        const track = this.#track(model);
        if (track === undefined) return;
        track.requests++;
        if (status !== 200) track.errors++;
        else track.latencies.push(seconds * 1000);
      },
      step: (info: StepInfo) => {
        const track = this.#gen(info.name);
        if (track !== undefined) track.tokens += info.values;
      },
      firstToken: (model, seconds) => this.#gen(model)?.firstTokens.push(seconds * 1000),
    };
    this.#unlisten = metrics.listen(listener);
  }

  /** A generator's track, made on its first event (only for names the registry has). */
  #gen(name: string): GeneratorTrack | undefined {
    let track = this.#gens.get(name);
    if (track === undefined) {
      if (this.#registry.get(name) === undefined) return undefined;
      track = { tokens: 0, firstTokens: new Ring(LATENCIES), tokensPerSecond: [] };
      this.#gens.set(name, track);
    }
    return track;
  }

  #track(name: string): ModelTrack | undefined {
    let track = this.#models.get(name);
    if (track === undefined) {
      if (this.#registry.get(name) === undefined) return undefined;
      track = {
        requests: 0,
        errors: 0,
        rows: 0,
        latencies: new Ring(LATENCIES),
        points: new Ring(POINTS),
        sizes: new Ring(POINTS * 5),
        reasons: [],
        lastReasons: undefined,
        lastBusy: new Map(),
      };
      this.#models.set(name, track);
    }
    return track;
  }

  /** The numbers since the last snapshot; call once per tick. */
  snapshot(): Snapshot {
    const now = performance.now();
    const seconds = Math.max(1e-3, (now - this.#last) / 1000);
    this.#last = now;
    const models = this.#registry
      .entries()
      .filter((entry) => entry.model?.generator === undefined)
      .map((entry) => this.#panel(entry.name, entry.state, entry.model, seconds));
    // Generators are models of the registry: each READY one has a panel of its own, not a batch panel.
    const served = this.#registry
      .entries()
      .flatMap((entry) => (entry.state === 'READY' && entry.model?.generator !== undefined ? [entry.model] : []));
    const generators = served.map((m) => {
      const g = { name: m.name, generate: (m.generator as NonNullable<typeof m.generator>).stream };
      const track = this.#gen(g.name) as GeneratorTrack;
      const rate = track.tokens / seconds;
      track.tokens = 0;
      track.tokensPerSecond = [...track.tokensPerSecond, Math.round(rate)].slice(-HISTORY);
      const ttft = track.firstTokens.values().sort((a, b) => a - b);
      return {
        name: g.name,
        active: g.generate.stats.active,
        waiting: g.generate.stats.waiting,
        tokensPerSecond: Math.round(rate),
        history: track.tokensPerSecond,
        ttftMs: { p50: quantile(ttft, 0.5), p99: quantile(ttft, 0.99) },
      };
    });
    return { at: Date.now(), models, generators };
  }

  #panel(name: string, state: string, model: ServedModel | undefined, seconds: number): ModelPanel {
    const track = this.#track(name) as ModelTrack;
    const stats = model?.batcher.stats;
    const settings = model?.batcher.settings;
    const reasons = { ...(stats?.dispatchReasons ?? {}) } as Record<string, number>;
    // Per second of the time since the last snapshot: after a gap with no page watching, the first
    // point is the gap's mean rate, not every batch of the gap counted as one second's.
    const delta = Object.fromEntries(
      Object.entries(reasons).map(([k, v]) => [k, (v - (track.lastReasons?.[k] ?? v)) / seconds]),
    );
    track.lastReasons = reasons;
    track.reasons = [...track.reasons, delta].slice(-HISTORY);
    const workers = (stats?.workers ?? []).map((w) => {
      const busy = w.busyMs - (track.lastBusy.get(w.id) ?? w.busyMs);
      track.lastBusy.set(w.id, w.busyMs);
      return {
        id: w.id,
        utilisation: Math.min(1, Math.max(0, busy / (seconds * 1000))),
        restarts: w.restarts,
        state: w.state,
      };
    });
    const sizes = new Map<number, number>();
    for (const rows of track.sizes.values()) sizes.set(rows, (sizes.get(rows) ?? 0) + 1);
    const recent = track.sizes.values();
    const latencies = track.latencies.values().sort((a, b) => a - b);
    const panel: ModelPanel = {
      name,
      state,
      reqPerSecond: track.requests / seconds,
      rowsPerSecond: track.rows / seconds,
      errorsPerSecond: track.errors / seconds,
      latencyMs: { p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99) },
      waitMs: stats === undefined ? { p50: null, p99: null } : pair(stats.waitMs),
      execMs: stats === undefined ? { p50: null, p99: null } : pair(stats.execMs),
      batchSizes: [...sizes.entries()].sort(([a], [b]) => a - b),
      meanBatch: recent.length === 0 ? null : recent.reduce((a, b) => a + b, 0) / recent.length,
      maxBatchSize: settings?.maxBatchSize ?? 0,
      queueDepth: stats?.queued ?? 0,
      queueCap: settings === undefined || !Number.isFinite(settings.channelCap) ? null : settings.channelCap,
      maxDelay: settings?.maxDelay ?? null,
      reasons: track.reasons,
      workers,
      cost:
        stats?.costModel === undefined
          ? null
          : {
              fixedMs: stats.costModel.fixedMs,
              perRowMs: stats.costModel.perRowMs,
              slotEfficiency: stats.costModel.slotEfficiency,
            },
      points: track.points.values(),
    };
    track.requests = track.errors = track.rows = 0;
    return panel;
  }

  stop(): void {
    this.#unlisten();
  }
}
