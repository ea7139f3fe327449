import type { BatchInfo } from './stats.js';
import { checkOptions, DEFAULTS, OPTION_SCHEMA } from './option-schema.js';
import { describeValue as describe, expectDuration, expectNumber } from './validate.js';

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
   * Calls with one sequence key run one at a time, in arrival order: never two in a batch, and the
   * next waits (outside the queue's lanes) until the batch holding the previous one has ended. For
   * stateful models, where each call changes its sequence's state (Triton's sequence batcher).
   * `undefined`: the call belongs to no sequence.
   */
  sequenceKey?: (input: I) => string | number | undefined;
  /**
   * Worker mode: the worker (0 to `workers` - 1) a call must run on, for state a thread keeps
   * between calls; `undefined`: any. Calls for different workers never share a batch. If that
   * worker crashes, the call runs on its restarted thread.
   */
  affinity?: (input: I) => number | undefined;
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
  /**
   * Traces each batch and the calls it served, with no dependency here: `otelTracing()` from
   * `batched-fn/otel` makes one span per batch linked to every caller's span (OpenTelemetry).
   */
  tracing?: BatchTracing;
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
  /**
   * A channel to every worker, for a module that calls back into this thread (a model calling other
   * models, say). Each worker spawned, restarts included, gets one end of a new MessageChannel as the
   * `port` of its module's `context(workerData, { port })`; this is called in this thread with the
   * other end and the worker's slot (0 to `workers` - 1). The port closes when its worker exits.
   */
  connectWorker?: (port: import('node:worker_threads').MessagePort, worker: number) => void;
  /**
   * Packs each batch into one message each way instead of one object per call: fewer objects to
   * clone on the way to the thread and back (see `BatchCodec`). The worker module exports the same
   * object as `codec`.
   */
  codec?: BatchCodec<I, unknown>;
  handler?: undefined;
  context?: undefined;
}

/** What `encodeInputs` and `encodeOutputs` give: the message's value, and the buffers it hands over, not copies. */
export interface PackedBatch {
  value: unknown;
  /** Transferred, so detached on the sending side: only buffers nothing else there still reads. */
  transfer?: ArrayBuffer[];
}

/**
 * How a batch crosses to a worker thread and back, packed. Without a codec each call's input and
 * output is cloned as its own object graph; with one, the batch travels as one message each way
 * (say, one tensor of all its rows), which costs less to post and to read on either side. Give it
 * as the `codec` option and export the same object as `codec` from the worker module: import it
 * from one file in both places. The handler still gets one input per call and returns one output
 * per call. A batch whose handler answers an `Error` for some call, or not one output per input,
 * comes back unpacked. A module may also export `packedHandler(value, context)`, which takes the packed
 * batch as it is and answers what `encodeOutputs` would: no object per call in the worker at all.
 */
export interface BatchCodec<I, O> {
  /** In this thread: the batch's inputs as one message. */
  encodeInputs(inputs: readonly I[]): PackedBatch;
  /** In the worker: the inputs again, one per call, in order. */
  decodeInputs(value: unknown): I[];
  /** In the worker: the handler's outputs (one per input, none an Error) as one message. */
  encodeOutputs(outputs: readonly O[]): PackedBatch;
  /** In this thread: one output per input, in order. */
  decodeOutputs(value: unknown, inputs: readonly I[]): O[];
}

export type BatchedFnOptions<I, O, C> = InlineOptions<I, O, C> | WorkerOptions<I>;

/** Per-call options. */
/**
 * The tracing seam. `capture` runs inside each call (in the caller's context) unless the call
 * passes its own `trace`; `batch` runs once the batch settles, with every traced caller.
 */
export interface BatchTracing {
  /** What identifies the caller to the tracer (an OpenTelemetry span, say); undefined: not traced. */
  capture(): unknown;
  /** A batch settled: its report, each traced caller's `trace` and queue wait in ms, and its error if it failed. */
  batch(info: BatchInfo, callers: readonly TracedCall[], error: unknown): void;
}

export interface TracedCall {
  trace: unknown;
  waitMs: number;
}

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
  /** The caller's trace (its OpenTelemetry span), for the batcher's `tracing`; default: what `tracing.capture()` finds. */
  trace?: unknown;
}

/** The options after validation, with defaults applied where the schema has one. */
export type ResolvedBatchingOptions<I> = Omit<
  BatchingOptions<I>,
  'maxBatchSize' | 'maxDelay' | 'channelCap' | 'concurrency' | 'name' | 'preferredBatchSizes'
> & {
  maxBatchSize: number;
  maxDelay: number | 'auto';
  channelCap: number;
  concurrency: number;
  name: string;
  /** Sorted ascending, without duplicates. */
  preferredBatchSizes: number[] | undefined;
};

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

const RUNTIME_OPTIONS = ['maxBatchSize', 'maxDelay', 'channelCap', 'concurrency'] as const;

/** Validates the run-time tunables, by the same schema rows as construction; for `configure()`. */
export function validateRuntimeOptions(options: RuntimeOptions): RuntimeOptions {
  const out: Record<string, unknown> = {};
  for (const key of RUNTIME_OPTIONS) if (options[key] !== undefined) out[key] = OPTION_SCHEMA[key].check(options[key]);
  return out as RuntimeOptions;
}

/**
 * Validates every option by its schema row (unknown names throw), applies the schema's
 * defaults, then the rules that tie options together.
 */
export function resolveBatchingOptions<I>(
  options: BatchingOptions<I>,
  defaultConcurrency: number,
): ResolvedBatchingOptions<I> {
  const checked = checkOptions(options) as Partial<ResolvedBatchingOptions<I>>;
  const resolved: ResolvedBatchingOptions<I> = {
    ...checked,
    maxBatchSize: checked.maxBatchSize ?? DEFAULTS.maxBatchSize,
    maxDelay: checked.maxDelay ?? DEFAULTS.maxDelay,
    channelCap: checked.channelCap ?? DEFAULTS.channelCap,
    concurrency: checked.concurrency ?? defaultConcurrency,
    name: checked.name ?? DEFAULTS.name,
    preferredBatchSizes: checked.preferredBatchSizes,
  };
  const largest = resolved.preferredBatchSizes?.at(-1);
  if (largest !== undefined && largest > resolved.maxBatchSize) {
    throw new RangeError(
      `Expected every \`preferredBatchSizes\` entry to be at most maxBatchSize (${resolved.maxBatchSize}), got ${largest}`,
    );
  }
  return resolved;
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
