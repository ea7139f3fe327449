/**
 * What `--otel` traces, changed at run time by Triton's trace extension (`GET/POST
 * /v2[/models/{m}]/trace/setting`, gRPC `TraceSetting`: protocol/trace-settings.ts). It is the
 * tracer provider's sampler (otel/setup.ts), so a request it passes over costs a non-recording span.
 *
 * - `trace_level`: `["OFF"]` traces nothing; `["TIMESTAMPS"]` (the start) traces; `TENSORS` is
 *   accepted and traced as TIMESTAMPS is (spans carry timings, never tensor data).
 * - `trace_rate` N: one inference request in N is traced, the Nth, 2Nth, ... as Triton counts
 *   them; 0 traces only requests whose client's trace context is sampled.
 * - `trace_count` N: N more traces, then none (the setting shows what is left); -1 is unlimited.
 *
 * Rate and count apply to inference requests (REST infer and generate routes, gRPC ModelInfer:
 * spans started with a `batched_fn.model` attribute), as Triton traces only those; any other
 * request (metadata, health, /metrics) is traced while the level is not OFF. A request whose
 * client sent a sampled `traceparent` is traced whatever the rate (Triton's forced sampling),
 * while the level is not OFF; it does not use up `trace_count`. A batch span is kept when one of
 * the requests it served was traced.
 *
 * A model may have settings of its own: the first change copies the global settings for it, and
 * a setting set to null follows the global one again. Each setting keeps its own rate counter
 * and remaining count.
 */

export type TraceLevel = 'OFF' | 'TIMESTAMPS' | 'TENSORS';
export const TRACE_LEVELS: readonly TraceLevel[] = ['OFF', 'TIMESTAMPS', 'TENSORS'];

/** One setting's values; counters live beside them. */
interface Values {
  level: TraceLevel[];
  rate: number;
  count: number;
}

/** A checked change: a value sets, null clears (a model's: follow the global one; the global one: its start value). */
export interface TraceChange {
  level?: TraceLevel[] | null;
  rate?: number | null;
  count?: number | null;
}

/** Triton's response, in its wire form (every value a string or a list of strings). */
export interface TraceSettingsView {
  trace_level: string[];
  trace_rate: string;
  trace_count: string;
  trace_mode: 'opentelemetry';
}

/** The attribute a server span starts with when it is an inference request for a model. */
export const MODEL_ATTRIBUTE = 'batched_fn.model';

/** OpenTelemetry's SamplingDecision and SpanKind, as numbers (this module imports no OpenTelemetry). */
const NOT_RECORD = 0;
const RECORD_AND_SAMPLED = 2;
const KIND_SERVER = 1;
const KIND_CONSUMER = 4;
const SAMPLED_FLAG = 1;

/** One setting's values, and its rate counter (requests seen since its rate was set). */
class Setting {
  values: Values;
  seen = 0;

  constructor(values: Values) {
    this.values = { ...values, level: [...values.level] };
  }
}

/** Per model: each field its own (a Setting of its own for counters) or the global one's. */
interface ModelSetting {
  own: Setting;
  /** Fields that follow the global setting (cleared with null). */
  follows: Set<keyof Values>;
}

export class TraceSwitch {
  readonly #start: Values;
  readonly #global: Setting;
  readonly #models = new Map<string, ModelSetting>();

  constructor(start: Values = { level: ['TIMESTAMPS'], rate: 1, count: -1 }) {
    this.#start = { ...start, level: [...start.level] };
    this.#global = new Setting(start);
  }

  /** The settings in force for `model` (or the global ones), as Triton answers them. */
  view(model?: string): TraceSettingsView {
    const values = this.#effective(model);
    return {
      trace_level: [...values.level],
      trace_rate: String(values.rate),
      trace_count: String(values.count),
      trace_mode: 'opentelemetry',
    };
  }

  /** Applies a checked change (protocol/trace-settings.ts checks it) to `model`'s settings or the global ones. */
  update(model: string | undefined, change: TraceChange): TraceSettingsView {
    if (model === undefined || model === '') {
      const values = this.#global.values;
      if (change.level !== undefined) values.level = [...(change.level ?? this.#start.level)];
      if (change.rate !== undefined) {
        values.rate = change.rate ?? this.#start.rate;
        this.#global.seen = 0;
      }
      if (change.count !== undefined) values.count = change.count ?? this.#start.count;
      return this.view();
    }
    let entry = this.#models.get(model);
    if (entry === undefined) {
      // A model's first settings start as a copy of the global ones, as Triton's do.
      entry = { own: new Setting(this.#global.values), follows: new Set() };
      this.#models.set(model, entry);
    }
    const set = <K extends keyof Values>(key: K, value: Values[K] | null | undefined): void => {
      if (value === undefined) return;
      if (value === null) entry.follows.add(key);
      else {
        entry.follows.delete(key);
        entry.own.values[key] = (Array.isArray(value) ? [...value] : value) as Values[K];
      }
      if (key === 'rate') entry.own.seen = 0;
    };
    set('level', change.level);
    set('rate', change.rate);
    set('count', change.count);
    return this.view(model);
  }

  /**
   * The sampler's decision for a span about to start: its kind, its start attributes, its links'
   * trace flags, and whether its parent (a client's `traceparent`) is sampled.
   */
  decide(
    kind: number,
    attributes: Record<string, unknown>,
    linkFlags: readonly number[],
    parentSampled: boolean,
  ): 0 | 2 {
    if (kind === KIND_CONSUMER)
      return linkFlags.some((flags) => (flags & SAMPLED_FLAG) !== 0) ? RECORD_AND_SAMPLED : NOT_RECORD;
    // A span inside a request (none are started today) lives and dies with its parent.
    if (kind !== KIND_SERVER) return parentSampled ? RECORD_AND_SAMPLED : NOT_RECORD;
    const model = attributes[MODEL_ATTRIBUTE];
    const name = typeof model === 'string' ? model : undefined;
    if (this.#effective(name).level.includes('OFF')) return NOT_RECORD;
    if (name === undefined) return RECORD_AND_SAMPLED;
    return this.#sample(name) || parentSampled ? RECORD_AND_SAMPLED : NOT_RECORD;
  }

  /** Triton's rule: every request advances the rate counter; each Nth is traced while traces remain. */
  #sample(model: string): boolean {
    const entry = this.#models.get(model);
    const rateOwner = entry !== undefined && !entry.follows.has('rate') ? entry.own : this.#global;
    const countOwner = entry !== undefined && !entry.follows.has('count') ? entry.own : this.#global;
    const { rate } = rateOwner.values;
    const { count } = countOwner.values;
    if (rate === 0 || count === 0) return false;
    rateOwner.seen++;
    if (rateOwner.seen % rate !== 0) return false;
    if (count > 0) countOwner.values.count = count - 1;
    return true;
  }

  #effective(model: string | undefined): Values {
    const entry = model === undefined ? undefined : this.#models.get(model);
    const global = this.#global.values;
    if (entry === undefined) return global;
    const pick = <K extends keyof Values>(key: K): Values[K] =>
      entry.follows.has(key) ? global[key] : entry.own.values[key];
    return { level: pick('level'), rate: pick('rate'), count: pick('count') };
  }
}
