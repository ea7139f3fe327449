import { Counter, type Registry } from 'prom-client';

/**
 * Prometheus series whose label sets are resolved once, for the per-request and per-batch path.
 *
 * Why not prom-client's own `inc(labels)` / `observe(labels, v)`: each call validates the labels and
 * builds their hash string (`model:tiny,protocol:grpc`) again, and its `labels()` children do the same
 * on every call. Here a series is looked up once per label set and kept; an event then adds to plain
 * numbers. What Prometheus reads is unchanged: the counter is prom-client's own, brought up to date
 * when the registry collects it; the histogram answers the registry as prom-client's Histogram does
 * (the same `_bucket`, `_sum` and `_count` lines), so the exposition text is the same.
 */

type Labels = Record<string, string>;

/** Nested maps, one level a label, so finding a series allocates nothing (no joined key string). */
class SeriesIndex<S> {
  readonly #root = new Map<string, unknown>();
  readonly all: S[] = [];
  constructor(
    readonly labelNames: readonly string[],
    readonly create: (labels: Labels) => S,
  ) {
    if (labelNames.length < 1 || labelNames.length > 3) throw new RangeError('A series has one to three labels');
  }

  /** The series of these label values, in `labelNames` order (up to three labels: what the server's series have). */
  get(a: string, b?: string, c?: string): S {
    const depth = this.labelNames.length;
    let level = this.#root;
    if (depth > 1) level = this.#level(level, a);
    if (depth > 2) level = this.#level(level, b as string);
    const last = (depth === 1 ? a : depth === 2 ? b : c) as string;
    let series = level.get(last) as S | undefined;
    if (series === undefined) {
      const values = [a, b, c];
      const labels: Labels = {};
      this.labelNames.forEach((name, i) => {
        labels[name] = values[i] as string;
      });
      series = this.create(labels);
      level.set(last, series);
      this.all.push(series);
    }
    return series;
  }

  #level(level: Map<string, unknown>, value: string): Map<string, unknown> {
    let next = level.get(value) as Map<string, unknown> | undefined;
    if (next === undefined) {
      next = new Map();
      level.set(value, next);
    }
    return next;
  }

  clear(): void {
    this.#root.clear();
    this.all.length = 0;
  }
}

export interface CounterSeries {
  /** Added since the registry last collected. */
  pending: number;
  readonly labels: Labels;
}

/** A prom-client Counter fed through resolved series: `series(...)` once, then `add(series, n)`. */
export class SeriesCounter {
  readonly #index: SeriesIndex<CounterSeries>;
  readonly counter: Counter;

  constructor(config: { name: string; help: string; labelNames: readonly string[]; registry: Registry }) {
    const index = new SeriesIndex<CounterSeries>(config.labelNames, (labels) => ({ pending: 0, labels }));
    this.#index = index;
    this.counter = new Counter({
      name: config.name,
      help: config.help,
      labelNames: config.labelNames,
      registers: [config.registry],
      // Brings prom-client's values up to date each time the registry reads them.
      collect() {
        for (const series of index.all) {
          if (series.pending === 0) continue;
          this.inc(series.labels, series.pending);
          series.pending = 0;
        }
      },
    });
  }

  series(a: string, b?: string, c?: string): CounterSeries {
    return this.#index.get(a, b, c);
  }
}

export interface HistogramSeries {
  readonly labels: Labels;
  /** Observations per bucket (not cumulative); the last slot is +Inf's. */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

interface ExportedValue {
  labels: Record<string, string | number>;
  sharedLabels?: Labels;
  value: number;
  metricName: string;
  /** prom-client's histograms carry `exemplar: null` on their buckets (none are kept here). */
  exemplar?: null;
}

/**
 * A histogram the registry reads as it reads prom-client's: `getForPromString` gives the same values
 * (the bucket's `le` as the value's own label and the series' as shared ones, so the text puts `le`
 * first as prom-client does), `get` the same with the labels merged.
 */
export class SeriesHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #index: SeriesIndex<HistogramSeries>;
  readonly #bounds: readonly number[];

  constructor(
    readonly config: { name: string; help: string; labelNames: readonly string[]; buckets: readonly number[] },
    registry: Registry,
  ) {
    this.#bounds = config.buckets;
    const slots = config.buckets.length + 1;
    this.#index = new SeriesIndex<HistogramSeries>(config.labelNames, (labels) => ({
      labels,
      counts: new Float64Array(slots),
      sum: 0,
      count: 0,
    }));
    registry.registerMetric(this as never);
  }

  get name(): string {
    return this.config.name;
  }

  get help(): string {
    return this.config.help;
  }

  series(a: string, b?: string, c?: string): HistogramSeries {
    return this.#index.get(a, b, c);
  }

  observe(series: HistogramSeries, value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    series.counts[i] = (series.counts[i] as number) + 1;
    series.sum += value;
    series.count++;
  }

  reset(): void {
    this.#index.clear();
  }

  getForPromString(): { name: string; help: string; type: string; aggregator: string; values: ExportedValue[] } {
    const values: ExportedValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const series of this.#index.all) {
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += series.counts[i] as number;
        values.push({
          labels: { le },
          sharedLabels: series.labels,
          value: cumulative,
          metricName: bucket,
          exemplar: null,
        });
      });
      values.push({
        labels: { le: '+Inf' },
        sharedLabels: series.labels,
        value: series.count,
        metricName: bucket,
        exemplar: null,
      });
      values.push({ labels: {}, sharedLabels: series.labels, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: {}, sharedLabels: series.labels, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  get(): ReturnType<SeriesHistogram['getForPromString']> {
    const data = this.getForPromString();
    data.values = data.values.map(({ sharedLabels, ...value }) => ({
      ...value,
      labels: { ...value.labels, ...sharedLabels },
    }));
    return data;
  }
}
