import type { BatchInfo } from './stats.js';

/**
 * A handler turns a batch of inputs into one output per input, in order.
 * Putting an `Error` in slot i rejects only caller i.
 */
export type Handler<I, O, C> = (batch: I[], context: C) => ReadonlyArray<O | Error> | Promise<ReadonlyArray<O | Error>>;

/** Options shared by inline and worker mode. Each can be validated on its own. */
export interface BatchingOptions<I> {
  /**
   * Most rows one batch may hold, counted with `size`.
   * @default 8
   */
  maxBatchSize?: number;
  /**
   * Milliseconds the oldest queued item may wait for a batch to fill. Counted
   * from that item's arrival, not from when a dispatcher looked at it. `0`
   * dispatches whatever is queued at the end of the current tick. `'auto'`
   * learns the handler's cost curve and waits only while waiting pays.
   * @default 50
   */
  maxDelay?: number | 'auto';
  /**
   * Latency objective in ms. With `maxDelay: 'auto'` the policy never waits past it, and calls
   * predicted to miss it (from the learned cost curve and the queue ahead) are rejected at once
   * with `ERR_TIMEOUT` (`predicted: true`) instead of costing model time.
   */
  latencyTarget?: number;
  /** Calls whose keys differ never share a batch (a model name, a length bucket). Keys are served oldest-first. */
  batchKey?: (input: I) => string | number;
  /**
   * Batch sizes (in rows) the handler runs best at. When the queue holds at least one of them,
   * the largest that fits is sent at once, as Triton's preferred_batch_size.
   */
  preferredBatchSizes?: readonly number[];
  /**
   * For fixed-shape models: returns `batch` padded with filler inputs up to `targetRows`
   * (the next preferred size, or maxBatchSize). The outputs of filler rows are dropped.
   */
  pad?: (batch: I[], targetRows: number) => I[];
  /**
   * Most items waiting in the queue (dispatched items do not count). A call
   * beyond it rejects at once with `ERR_QUEUE_FULL`.
   * @default Infinity
   */
  channelCap?: number;
  /**
   * Batches in flight at once. In worker mode it defaults to `workers`.
   * @default 1
   */
  concurrency?: number;
  /**
   * How many rows (or tokens) an input counts against `maxBatchSize`.
   * @default () => 1
   */
  size?: (input: I) => number;
  /** Called after every batch settles, with what it held and why it was sent. */
  onBatch?: (info: BatchInfo) => void;
  /** Shows up in error messages, stats and diagnostics events. */
  name?: string;
  /**
   * Longest a batch may run, in ms. A batch running longer rejects its callers with
   * `ERR_BATCH_TIMEOUT`; in worker mode its worker is terminated and restarted, inline its slot is
   * freed and the late result dropped (an inline handler cannot be stopped).
   */
  batchTimeout?: number;
}

/** Run the handler on this thread: async handlers, remote GPUs, cheap models. */
export interface InlineOptions<I, O, C> extends BatchingOptions<I> {
  handler: Handler<I, O, C>;
  /** Built once, lazily before the first batch (or by `ready()`); retried after a failure. */
  context?: () => C | Promise<C>;
  worker?: undefined;
}

/** Run the handler in worker threads: CPU-bound and blocking runtimes such as ONNX Runtime. */
export interface WorkerOptions<I> extends BatchingOptions<I> {
  /** A module exporting `handler(batch, context)` and optionally `context(workerData)`. */
  worker: URL | string;
  /**
   * Worker threads in the pool.
   * @default 1
   */
  workers?: number;
  /** Passed to the module's `context(workerData)` in every worker. */
  workerData?: unknown;
  /** Memory limits for each worker; exceeding them ends the worker like a crash. */
  resourceLimits?: import('node:worker_threads').ResourceLimits;
  handler?: undefined;
  context?: undefined;
}

export type BatchedFnOptions<I, O, C> = InlineOptions<I, O, C> | WorkerOptions<I>;

/** Per-call options. */
export interface CallOptions {
  /** Aborting removes a queued call, or releases a dispatched one; rejects with `signal.reason`. */
  signal?: AbortSignal;
  /** Milliseconds from the call until it rejects with `ERR_TIMEOUT`. */
  timeout?: number;
  /**
   * Higher goes first; FIFO within a priority. Strict: while higher-priority calls keep batches
   * full, lower ones wait (give them a `timeout` to bound that).
   * @default 0
   */
  priority?: number;
  /**
   * When the call really arrived, in ms on this process's `performance.now()` clock, for calls
   * that waited elsewhere first (a Redis stream entry, say: `epochMs - performance.timeOrigin`).
   * The batching window counts from the oldest call's arrival, so a call that already waited
   * does not wait a full window again. Later than now counts as now.
   * @default now
   */
  arrival?: number;
}

/** The single place defaults live; docs and validation read from here. */
export const DEFAULTS = Object.freeze({
  maxBatchSize: 8,
  maxDelay: 50,
  channelCap: Number.POSITIVE_INFINITY,
  concurrency: 1,
  workers: 1,
});

export interface ResolvedBatchingOptions<I> {
  maxBatchSize: number;
  maxDelay: number | 'auto';
  latencyTarget: number | undefined;
  batchKey: ((input: I) => string | number) | undefined;
  preferredBatchSizes: number[] | undefined;
  pad: ((batch: I[], targetRows: number) => I[]) | undefined;
  channelCap: number;
  concurrency: number;
  size: ((input: I) => number) | undefined;
  onBatch: ((info: BatchInfo) => void) | undefined;
  name: string;
  batchTimeout: number | undefined;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `\`${JSON.stringify(value)}\` (string)`;
  if (typeof value === 'function') return `a function`;
  if (value === null) return '`null`';
  if (typeof value === 'object') return `an object`;
  return `\`${String(value)}\` (${typeof value})`;
}

export function expectNumber(name: string, value: unknown, rule: string, ok: (n: number) => boolean): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`Expected \`${name}\` to be ${rule}, got ${describe(value)}`);
  }
  if (!ok(value)) throw new RangeError(`Expected \`${name}\` to be ${rule}, got ${describe(value)}`);
  return value;
}

export function expectInteger(name: string, value: unknown, min: number, allowInfinity = false): number {
  const rule = `an integer from ${min} and up${allowInfinity ? ', or Infinity' : ''}`;
  return expectNumber(
    name,
    value,
    rule,
    (n) => (Number.isInteger(n) && n >= min) || (allowInfinity && n === Number.POSITIVE_INFINITY),
  );
}

export function expectFunction(name: string, value: unknown): void {
  if (typeof value !== 'function') throw new TypeError(`Expected \`${name}\` to be a function, got ${describe(value)}`);
}

/**
 * Longest delay a Node timer honours: `setTimeout` clamps anything longer to 1 ms (and warns), so a
 * longer duration would fire at once. Every duration option and call option is held to it.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** A duration in ms that one timer can hold: from 0 (or above 0) up to MAX_TIMER_MS. */
export function expectDuration(name: string, value: unknown, above: 0 | undefined = undefined, suffix = ''): number {
  const rule = `a number of milliseconds ${above === undefined ? 'from 0' : 'above 0'} to ${MAX_TIMER_MS}${suffix}`;
  return expectNumber(name, value, rule, (n) => (above === undefined ? n >= 0 : n > 0) && n <= MAX_TIMER_MS);
}

export function validateMaxDelay(value: unknown): number | 'auto' {
  if (value === 'auto') return value;
  return expectDuration('maxDelay', value, undefined, ", or 'auto'");
}

/** Options of `close()`. */
export interface CloseOptions {
  /** Milliseconds to let queued and running batches finish; what is left then is destroyed. */
  timeout?: number;
}

/** The options `configure()` may change while the batcher runs. */
export interface RuntimeOptions {
  maxBatchSize?: number;
  maxDelay?: number | 'auto';
  channelCap?: number;
  concurrency?: number;
}

/** Validates the run-time tunables; shared by construction and `configure()`. */
export function validateRuntimeOptions(options: RuntimeOptions): RuntimeOptions {
  const out: RuntimeOptions = {};
  if (options.maxBatchSize !== undefined) out.maxBatchSize = expectInteger('maxBatchSize', options.maxBatchSize, 1);
  if (options.maxDelay !== undefined) out.maxDelay = validateMaxDelay(options.maxDelay);
  if (options.channelCap !== undefined) out.channelCap = expectInteger('channelCap', options.channelCap, 1, true);
  if (options.concurrency !== undefined) out.concurrency = expectInteger('concurrency', options.concurrency, 1);
  return out;
}

export function resolveBatchingOptions<I>(options: BatchingOptions<I>, defaultConcurrency: number): ResolvedBatchingOptions<I> {
  const runtime = validateRuntimeOptions(options);
  if (options.size !== undefined) expectFunction('size', options.size);
  if (options.onBatch !== undefined) expectFunction('onBatch', options.onBatch);
  if (options.name !== undefined && typeof options.name !== 'string') {
    throw new TypeError(`Expected \`name\` to be a string, got ${describe(options.name)}`);
  }
  if (options.latencyTarget !== undefined) expectDuration('latencyTarget', options.latencyTarget, 0);
  if (options.batchTimeout !== undefined) expectDuration('batchTimeout', options.batchTimeout, 0);
  if (options.batchKey !== undefined) expectFunction('batchKey', options.batchKey);
  if (options.pad !== undefined) expectFunction('pad', options.pad);
  let preferred: number[] | undefined;
  if (options.preferredBatchSizes !== undefined) {
    if (!Array.isArray(options.preferredBatchSizes) || options.preferredBatchSizes.length === 0) {
      throw new TypeError(`Expected \`preferredBatchSizes\` to be a non-empty array of integers, got ${describe(options.preferredBatchSizes)}`);
    }
    preferred = options.preferredBatchSizes.map((size, i) => expectInteger(`preferredBatchSizes[${i}]`, size, 1));
    preferred = [...new Set(preferred)].sort((a, b) => a - b);
  }
  const maxBatchSize = runtime.maxBatchSize ?? DEFAULTS.maxBatchSize;
  if (preferred !== undefined && (preferred.at(-1) as number) > maxBatchSize) {
    throw new RangeError(`Expected every \`preferredBatchSizes\` entry to be at most maxBatchSize (${maxBatchSize}), got ${preferred.at(-1)}`);
  }
  return {
    maxBatchSize,
    maxDelay: runtime.maxDelay ?? DEFAULTS.maxDelay,
    latencyTarget: options.latencyTarget,
    batchKey: options.batchKey,
    preferredBatchSizes: preferred,
    pad: options.pad,
    channelCap: runtime.channelCap ?? DEFAULTS.channelCap,
    concurrency: runtime.concurrency ?? defaultConcurrency,
    size: options.size,
    onBatch: options.onBatch,
    name: options.name ?? 'batched-fn',
    batchTimeout: options.batchTimeout,
  };
}

export function validateCallOptions(options: CallOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`Expected call options to be an object, got ${describe(options)}`);
  }
  if (options.timeout !== undefined) expectDuration('timeout', options.timeout);
  if (options.priority !== undefined) {
    expectNumber('priority', options.priority, 'a finite number', (n) => Number.isFinite(n));
  }
  if (options.arrival !== undefined) {
    expectNumber('arrival', options.arrival, 'a finite performance.now() time in ms', (n) => Number.isFinite(n));
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new TypeError(`Expected \`signal\` to be an AbortSignal, got ${describe(options.signal)}`);
  }
}

export { describe as describeValue };

/** Rows one input counts, from the user's `size`; throws what `size` throws, or a RangeError for a bad count. */
export function rowsOf<I>(size: (input: I) => number, input: I): number {
  const rows = size(input);
  if (typeof rows !== 'number' || !(rows > 0) || !Number.isFinite(rows)) {
    throw new RangeError(`Expected \`size(input)\` to return a finite number above 0, got ${String(rows)}`);
  }
  return rows;
}
