import {
  describeValue,
  expectDuration,
  expectFunction,
  expectInteger,
  expectNumber,
  validateMaxDelay,
} from './validate.js';

/**
 * Every option of `batchedFn`, declared once: its README row (type, default,
 * rule), its default value and its check. The known option names, the
 * defaults, the validation and (by a test) the README's option table all
 * come from here. A new option is a field in the `BatchingOptions` (or
 * mode) interface and a row here.
 */
export interface OptionSpec {
  /** The README's Type, Default and Rule columns, exactly. */
  readonly type: string;
  readonly shownDefault: string;
  readonly rule: string;
  /** The value used when the option is not given (absent: no default). */
  readonly default?: unknown;
  /** Throws TypeError or RangeError naming the option; returns the value to use. */
  readonly check: (value: unknown) => unknown;
}

function checkTracing(value: unknown): unknown {
  const hooks = value as { capture?: unknown; batch?: unknown } | null;
  if (
    typeof hooks !== 'object' ||
    hooks === null ||
    typeof hooks.capture !== 'function' ||
    typeof hooks.batch !== 'function'
  ) {
    throw new TypeError(
      `Expected \`tracing\` to be an object with \`capture\` and \`batch\` functions, got ${describeValue(value)}`,
    );
  }
  return value;
}

const CODEC_FUNCTIONS = ['encodeInputs', 'decodeInputs', 'encodeOutputs', 'decodeOutputs'];

function checkCodec(value: unknown): unknown {
  const codec = value as Record<string, unknown> | null;
  if (typeof codec !== 'object' || codec === null || CODEC_FUNCTIONS.some((name) => typeof codec[name] !== 'function'))
    throw new TypeError(
      `Expected \`codec\` to be an object with ${CODEC_FUNCTIONS.map((n) => `\`${n}\``).join(', ')} functions, ` +
        `got ${describeValue(value)}`,
    );
  return value;
}

const fn = (name: string) => (value: unknown) => {
  expectFunction(name, value);
  return value;
};
const int1 = (name: string) => (value: unknown) => expectInteger(name, value, 1);

const RESOURCE_LIMITS = ['maxYoungGenerationSizeMb', 'maxOldGenerationSizeMb', 'codeRangeSizeMb', 'stackSizeMb'];

/** Node's Worker would ignore unknown keys and misread others: checked like every option. */
function checkResourceLimits(limits: unknown): unknown {
  if (typeof limits !== 'object' || limits === null || Array.isArray(limits)) {
    throw new TypeError(`Expected \`resourceLimits\` to be an object, got ${describeValue(limits)}`);
  }
  for (const [key, value] of Object.entries(limits)) {
    if (!RESOURCE_LIMITS.includes(key)) {
      throw new TypeError(
        `Unknown \`resourceLimits\` key \`${key}\`; known keys are ${RESOURCE_LIMITS.map((k) => `\`${k}\``).join(', ')}`,
      );
    }
    expectNumber(`resourceLimits.${key}`, value, 'a finite number of MB above 0', (n) => Number.isFinite(n) && n > 0);
  }
  return limits;
}

function checkWorkerData(value: unknown): unknown {
  try {
    structuredClone(value);
  } catch (error) {
    throw new TypeError(`Expected \`workerData\` to be structured-cloneable: ${(error as Error).message}`);
  }
  return value;
}

function checkWorker(value: unknown): unknown {
  if (value instanceof URL || (typeof value === 'string' && value.length > 0)) return value;
  throw new TypeError(`Expected \`worker\` to be a URL or a path to a module, got ${describeValue(value)}`);
}

function checkPreferred(value: unknown): number[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new TypeError(
      `Expected \`preferredBatchSizes\` to be a non-empty array of integers, got ${describeValue(value)}`,
    );
  }
  const sizes = value.map((size, i) => expectInteger(`preferredBatchSizes[${i}]`, size, 1));
  return [...new Set(sizes)].sort((a, b) => a - b);
}

function checkName(value: unknown): string {
  if (typeof value !== 'string') throw new TypeError(`Expected \`name\` to be a string, got ${describeValue(value)}`);
  return value;
}

const ONE_OF = '(one of `handler`, `worker`)';

export const OPTION_SCHEMA = {
  handler: {
    type: '`(batch: I[], context: C) => (O \\| Error)[] \\| Promise<...>`',
    shownDefault: ONE_OF,
    rule: 'Returns one output per input, in order. An `Error` in slot *i* rejects caller *i* only.',
    check: fn('handler'),
  },
  context: {
    type: '`() => C \\| Promise<C>`',
    shownDefault: 'none',
    rule: 'Built once, lazily before the first batch or by `ready()`; a failed build is retried on the next batch.',
    check: fn('context'),
  },
  worker: {
    type: '`URL \\| string`',
    shownDefault: ONE_OF,
    rule: 'Module path or URL exporting `handler(batch, context)`, and optionally `context(workerData)` and `dispose(context)`.',
    check: checkWorker,
  },
  workers: {
    type: '`number`',
    shownDefault: '`1`',
    default: 1,
    rule: 'Integer >= 1. Worker threads in the pool.',
    check: int1('workers'),
  },
  workerData: {
    type: 'structured-cloneable',
    shownDefault: '`undefined`',
    rule: "Passed to the module's `context()` in every worker.",
    check: checkWorkerData,
  },
  resourceLimits: {
    type: '`ResourceLimits`',
    shownDefault: "Node's",
    rule: 'Per-worker memory limits; exceeding them is a crash (`ERR_WORKER_EXITED`).',
    check: checkResourceLimits,
  },
  connectWorker: {
    type: '`(port: MessagePort, worker: number) => void`',
    shownDefault: 'none',
    rule: "Called with one end of a channel to each worker spawned; the module's `context(workerData, { port })` gets the other.",
    check: fn('connectWorker'),
  },
  codec: {
    type: '`BatchCodec`',
    shownDefault: 'none',
    rule: 'Worker mode: packs each batch into one message each way; the worker module exports the same object as `codec`.',
    check: checkCodec,
  },
  maxBatchSize: {
    type: '`number`',
    shownDefault: '`8`',
    default: 8,
    rule: 'Integer >= 1. Most rows in one batch.',
    check: int1('maxBatchSize'),
  },
  maxDelay: {
    type: "`number` (ms) or `'auto'`",
    shownDefault: '`50`',
    default: 50,
    rule: "Finite, >= 0, fractions allowed, or `'auto'`. Counted from the oldest queued call's arrival. `'auto'` learns the handler's cost and waits only while waiting pays (see Scheduling).",
    check: validateMaxDelay,
  },
  latencyTarget: {
    type: '`number` (ms)',
    shownDefault: 'none',
    rule: "> 0. With `'auto'`, never wait past it; calls predicted to miss it are rejected at once with `ERR_TIMEOUT` (`predicted: true`).",
    check: (value: unknown) => expectDuration('latencyTarget', value, 0),
  },
  batchKey: {
    type: '`(input: I) => string \\| number`',
    shownDefault: 'none',
    rule: 'Calls with different keys never share a batch.',
    check: fn('batchKey'),
  },
  sequenceKey: {
    type: '`(input: I) => string \\| number \\| undefined`',
    shownDefault: 'none',
    rule: 'Calls with one key run one at a time, in arrival order: never two in a batch, and the next waits until the batch holding the previous one has ended (stateful sequences).',
    check: fn('sequenceKey'),
  },
  affinity: {
    type: '`(input: I) => number \\| undefined`',
    shownDefault: 'none',
    rule: 'Worker mode only. The worker (0 to `workers` - 1) a call must run on, where its state lives; calls for different workers never share a batch. A worker out of range rejects that call with a `RangeError`.',
    check: fn('affinity'),
  },
  preferredBatchSizes: {
    type: '`number[]`',
    shownDefault: 'none',
    rule: 'Integers from 1 to `maxBatchSize`. The largest one the queue can fill, and the oldest call fits in, is sent at once.',
    check: checkPreferred,
  },
  pad: {
    type: '`(batch: I[], targetRows: number) => I[]`',
    shownDefault: 'none',
    rule: "Returns the batch padded with filler up to `targetRows` (next preferred size, or `maxBatchSize`, in rows); filler outputs are dropped. The result must be the batch's own inputs, in order, followed by filler; anything else rejects that batch with `ERR_INVALID_PAD` (with fractional `size`, rows and items differ: count rows).",
    check: fn('pad'),
  },
  channelCap: {
    type: '`number`',
    shownDefault: '`Infinity`',
    default: Number.POSITIVE_INFINITY,
    rule: 'Integer >= 1, or `Infinity`. Most calls waiting (running batches do not count); beyond it calls reject with `ERR_QUEUE_FULL`.',
    check: (value: unknown) => expectInteger('channelCap', value, 1, true),
  },
  concurrency: {
    type: '`number`',
    shownDefault: '`1` (`workers` in worker mode)',
    default: 1,
    rule: 'Integer >= 1. Batches in flight at once.',
    check: int1('concurrency'),
  },
  size: {
    type: '`(input: I) => number`',
    shownDefault: '`() => 1`',
    rule: 'Must return a finite number > 0. Rows (or tokens) the input counts against `maxBatchSize`.',
    check: fn('size'),
  },
  onBatch: {
    type: '`(info: BatchInfo) => void`',
    shownDefault: 'none',
    rule: 'Called after each batch settles: items, rows, reason, oldest wait, exec time, ok.',
    check: fn('onBatch'),
  },
  tracing: {
    type: '`BatchTracing`',
    shownDefault: 'none',
    rule: "`{ capture, batch }` functions; `otelTracing()` from `batched-fn/otel` (needs `@opentelemetry/api`) makes a span per batch, linked to each caller's span.",
    check: checkTracing,
  },
  name: {
    type: '`string`',
    shownDefault: "`'batched-fn'`",
    default: 'batched-fn',
    rule: 'Shown in `BatchInfo` and worker thread names.',
    check: checkName,
  },
  batchTimeout: {
    type: '`number` (ms)',
    shownDefault: 'none',
    rule: "> 0. A batch running longer rejects its callers with `ERR_BATCH_TIMEOUT`, decided once the event loop has read what waits in its ports (a worker's answer held up behind other work on the main thread is not a timeout). In worker mode the worker is terminated and restarted (or, for a module exporting `interruptible = false`, replaced at once and retired when its call returns); inline, the slot is freed and the late result dropped.",
    check: (value: unknown) => expectDuration('batchTimeout', value, 0),
  },
} as const satisfies Record<string, OptionSpec>;

export type OptionName = keyof typeof OPTION_SCHEMA;

/** Validates every option given, by its row; returns the checked values (defaults not applied). */
export function checkOptions(options: object): Partial<Record<OptionName, unknown>> {
  const checked: Partial<Record<OptionName, unknown>> = {};
  for (const [key, value] of Object.entries(options)) {
    const spec = (OPTION_SCHEMA as Record<string, OptionSpec>)[key];
    if (spec === undefined) throw new TypeError(`Unknown option \`${key}\``);
    if (value !== undefined) checked[key as OptionName] = spec.check(value);
  }
  return checked;
}

/** The defaults, from the schema: the single place they live. */
export const DEFAULTS = Object.freeze({
  maxBatchSize: OPTION_SCHEMA.maxBatchSize.default,
  maxDelay: OPTION_SCHEMA.maxDelay.default as number | 'auto',
  channelCap: OPTION_SCHEMA.channelCap.default,
  concurrency: OPTION_SCHEMA.concurrency.default,
  workers: OPTION_SCHEMA.workers.default,
  name: OPTION_SCHEMA.name.default,
});
