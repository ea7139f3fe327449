// The public types, as a user's compiler sees them: these import the built .d.ts through the package's
// exports map. Run by `vitest run` in typecheck mode (vitest.config.ts), and compiled by tsconfig.tests.json.
// Each `@ts-expect-error` is a misuse that must stay a compile error: if the types loosen, the directive is unused
// and that is an error too.
import { describe, expectTypeOf, test } from 'vitest';
import {
  type BatchCodec,
  isMoved,
  type PackedBatch,
  transferListFor,
  type BatchedFn,
  type BatchedFnError,
  type BatchedFnErrorCode,
  type BatchedFnSettings,
  type BatchedFnStats,
  type BatchedStream,
  type BatchedStreamStats,
  type BatchInfo,
  type BatchSizeMismatchError,
  type BatchTimeoutError,
  batchedFn,
  batchedStream,
  type CallOptions,
  type ClosedError,
  DEFAULTS,
  type DispatchReason,
  type InvalidOutputError,
  type InvalidPadError,
  type ItemTooLargeError,
  MAX_TIMER_MS,
  move,
  QueueFullError,
  type RuntimeOptions,
  type StepOutput,
  TimeoutError,
  type UnavailableError,
  type WorkerExitedError,
} from 'batched-fn';
import {
  DISPATCH_REASONS,
  deserializeError,
  PendingCalls,
  type SerializedError,
  type StatsRecorder,
  serializeError,
  validateCallOptions,
} from 'batched-fn/adapter';

const model = { scores: (texts: string[]) => texts.map((text) => text.length) };

describe('batchedFn, inline', () => {
  test('infers the input from the handler and the output from what it returns', () => {
    const predict = batchedFn({ handler: (texts: string[]) => model.scores(texts) });
    expectTypeOf(predict).toEqualTypeOf<BatchedFn<string, number>>();
    expectTypeOf(predict).toBeCallableWith('hello');
    expectTypeOf(predict).toBeCallableWith('hello', { timeout: 100, priority: 1, signal: AbortSignal.timeout(1) });
    expectTypeOf(predict).parameter(1).toEqualTypeOf<CallOptions | undefined>();
    expectTypeOf(predict('hello')).resolves.toBeNumber();
    // @ts-expect-error the input type is the handler's element type
    void predict(42);
  });

  test('an async handler, and the context it is handed', () => {
    const predict = batchedFn({
      handler: async (texts: string[], m: typeof model) => m.scores(texts),
      context: async () => model,
    });
    expectTypeOf(predict).toEqualTypeOf<BatchedFn<string, number>>();
    batchedFn({
      handler: (texts: string[], m: typeof model) => m.scores(texts),
      // @ts-expect-error the context must be what the handler takes
      context: () => 'not the model',
    });
  });

  test('an Error in a slot fails that caller alone: allowed in the result, and not part of the output type', () => {
    const root = batchedFn({
      handler: (xs: number[]) => xs.map((x) => (x < 0 ? new RangeError('negative') : Math.sqrt(x))),
    });
    expectTypeOf(root).toEqualTypeOf<BatchedFn<number, number>>();
    const label = batchedFn({ handler: async (xs: number[]) => xs.map((x) => (x < 0 ? new Error('no') : String(x))) });
    expectTypeOf(label).toEqualTypeOf<BatchedFn<number, string>>();
  });

  test('the methods and snapshots', () => {
    const predict = batchedFn({ handler: (xs: number[]) => xs });
    expectTypeOf(predict.ready).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(predict.close).toBeCallableWith();
    expectTypeOf(predict.close).toBeCallableWith({ timeout: 1000 });
    expectTypeOf(predict.close).returns.toEqualTypeOf<Promise<void>>();
    expectTypeOf(predict.destroy).toBeCallableWith(new Error('shutdown'));
    expectTypeOf(predict.destroy).returns.toBeVoid();
    expectTypeOf(predict.configure).parameter(0).toEqualTypeOf<RuntimeOptions>();
    expectTypeOf(predict.stats).toEqualTypeOf<BatchedFnStats>();
    expectTypeOf(predict.stats.dispatchReasons).toEqualTypeOf<Record<DispatchReason, number>>();
    expectTypeOf(predict.settings).toEqualTypeOf<BatchedFnSettings>();
    expectTypeOf(predict.settings.maxDelay).toEqualTypeOf<number | 'auto'>();
    // @ts-expect-error stats is a read-only snapshot
    predict.stats = {} as BatchedFnStats;
    // @ts-expect-error configure() changes only the run-time tunables
    predict.configure({ name: 'renamed' });
    // @ts-expect-error maxDelay is milliseconds or 'auto'
    predict.configure({ maxDelay: 'fast' });
  });

  test('options are checked by the compiler before they are checked at run time', () => {
    batchedFn({
      handler: (xs: number[]) => xs,
      maxBatchSize: 32,
      maxDelay: 'auto',
      latencyTarget: 50,
      batchKey: (x) => (x > 0 ? 'positive' : 1),
      preferredBatchSizes: [8, 16, 32],
      pad: (batch, rows) => [...batch, ...new Array<number>(rows - batch.length).fill(0)],
      channelCap: Number.POSITIVE_INFINITY,
      concurrency: 2,
      size: (x) => x,
      onBatch: (info) => expectTypeOf(info).toEqualTypeOf<BatchInfo>(),
      name: 'typed',
      batchTimeout: 1000,
    });
    // @ts-expect-error an unknown option
    batchedFn({ handler: (xs: number[]) => xs, maxBatch: 8 });
    // @ts-expect-error workers belong to worker mode
    batchedFn({ handler: (xs: number[]) => xs, workers: 2 });
    // @ts-expect-error batchKey returns a string or a number
    batchedFn({ handler: (xs: number[]) => xs, batchKey: (x: number) => [x] });
    // @ts-expect-error the handler returns one output per input: an array
    batchedFn({ handler: (xs: number[]) => xs.length });
    // @ts-expect-error exactly one of handler and worker
    batchedFn({ handler: (xs: number[]) => xs, worker: new URL('file:///model.js') });
    // @ts-expect-error exactly one of handler and worker
    batchedFn({ maxBatchSize: 8 });
  });

  test('call options', () => {
    const predict = batchedFn({ handler: (xs: number[]) => xs });
    // @ts-expect-error priority is a number (higher goes first)
    void predict(1, { priority: 'high' });
    // @ts-expect-error signal is an AbortSignal
    void predict(1, { signal: 'abort' });
    // @ts-expect-error an unknown call option
    void predict(1, { deadline: 5 });
  });
});

describe('batchedFn, in worker threads', () => {
  test('input and output are unknown unless given', () => {
    expectTypeOf(batchedFn({ worker: new URL('file:///model.js') })).toEqualTypeOf<BatchedFn<unknown, unknown>>();
    const predict = batchedFn<Float32Array, number[]>({ worker: '/models/model.js', workers: 4, workerData: { t: 1 } });
    expectTypeOf(predict).toEqualTypeOf<BatchedFn<Float32Array, number[]>>();
    expectTypeOf(predict(move(new Float32Array(4)))).resolves.toEqualTypeOf<number[]>();
  });

  test('the handler and context live in the module, not in the options', () => {
    // @ts-expect-error context comes from the worker module
    batchedFn({ worker: '/models/model.js', context: () => 1 });
    // @ts-expect-error worker is a URL or a path
    batchedFn({ worker: 42 });
  });
});

describe('move', () => {
  test('returns what it is given, marked for transfer', () => {
    const floats = new Float32Array(4);
    expectTypeOf(move(floats)).toEqualTypeOf(floats);
    const image = { pixels: new Uint8Array(4), width: 2 };
    expectTypeOf(move(image)).toEqualTypeOf(image);
    // @ts-expect-error only objects (buffers, typed arrays, objects holding them) can be moved
    move(42);
  });
});

describe('batchedStream', () => {
  test('inline: typed by its parameters, values typed by what step emits', () => {
    const spell = batchedStream<string, { word: string; at: number }, string>({
      start: (words) => words.map((word) => ({ word, at: 0 })),
      step: (states) =>
        states.map((s) => ({ value: s.word[s.at++] as string, done: s.at >= s.word.length }) as StepOutput<string>),
      maxBatchSize: 16,
      maxDelay: 'auto',
      mode: 'continuous',
    });
    expectTypeOf(spell).toEqualTypeOf<BatchedStream<string, string>>();
    expectTypeOf(spell('hi')).toEqualTypeOf<AsyncIterableIterator<string>>();
    expectTypeOf(spell).toBeCallableWith('hi', { signal: AbortSignal.timeout(1), timeout: 10 });
    expectTypeOf(spell.stats).toEqualTypeOf<BatchedStreamStats>();
    expectTypeOf(spell.close).returns.toEqualTypeOf<Promise<void>>();
    // @ts-expect-error the input type is the start's element type
    spell(42);
  });

  test('inferred from start and step', () => {
    const count = batchedStream({
      start: (words: string[]) => words.map((word) => word.length),
      step: (states) => states.map((n) => ({ value: n, done: true })),
    });
    expectTypeOf(count).toEqualTypeOf<BatchedStream<string, number>>();
  });

  test('the state is the input when there is no start', () => {
    const count = batchedStream({ step: (states: number[]) => states.map((n) => ({ value: n, done: n > 3 })) });
    expectTypeOf(count).toEqualTypeOf<BatchedStream<unknown, number>>();
  });

  test('misuse', () => {
    // @ts-expect-error step returns `{ value?, done? }` or an Error per state, not bare values
    batchedStream({ step: (states: number[]) => states });
    // @ts-expect-error mode is 'continuous' or 'static'
    batchedStream({ step: (states: number[]) => states.map(() => ({ done: true })), mode: 'dynamic' });
    // @ts-expect-error done is a boolean
    batchedStream({ step: (states: number[]) => states.map(() => ({ done: 'yes' })) });
  });
});

describe('errors', () => {
  test('every error is a BatchedFnError with a literal code', () => {
    expectTypeOf<BatchedFnError['code']>().toEqualTypeOf<BatchedFnErrorCode>();
    expectTypeOf<QueueFullError['code']>().toEqualTypeOf<'ERR_QUEUE_FULL'>();
    expectTypeOf<ClosedError['code']>().toEqualTypeOf<'ERR_CLOSED'>();
    expectTypeOf<TimeoutError['code']>().toEqualTypeOf<'ERR_TIMEOUT'>();
    expectTypeOf<BatchSizeMismatchError['code']>().toEqualTypeOf<'ERR_BATCH_SIZE_MISMATCH'>();
    expectTypeOf<ItemTooLargeError['code']>().toEqualTypeOf<'ERR_ITEM_TOO_LARGE'>();
    expectTypeOf<WorkerExitedError['code']>().toEqualTypeOf<'ERR_WORKER_EXITED'>();
    expectTypeOf<UnavailableError['code']>().toEqualTypeOf<'ERR_UNAVAILABLE'>();
    expectTypeOf<BatchTimeoutError['code']>().toEqualTypeOf<'ERR_BATCH_TIMEOUT'>();
    expectTypeOf<InvalidPadError['code']>().toEqualTypeOf<'ERR_INVALID_PAD'>();
    expectTypeOf<InvalidOutputError['code']>().toEqualTypeOf<'ERR_INVALID_OUTPUT'>();
    expectTypeOf<BatchedFnErrorCode>().toEqualTypeOf<
      | 'ERR_QUEUE_FULL'
      | 'ERR_CLOSED'
      | 'ERR_TIMEOUT'
      | 'ERR_BATCH_SIZE_MISMATCH'
      | 'ERR_ITEM_TOO_LARGE'
      | 'ERR_WORKER_EXITED'
      | 'ERR_UNAVAILABLE'
      | 'ERR_BATCH_TIMEOUT'
      | 'ERR_INVALID_PAD'
      | 'ERR_INVALID_OUTPUT'
    >();
    expectTypeOf<QueueFullError>().toExtend<BatchedFnError>();
    expectTypeOf<BatchedFnError>().toExtend<Error>();
  });

  test('the fields each error carries', () => {
    expectTypeOf<QueueFullError['capacity']>().toBeNumber();
    expectTypeOf<TimeoutError['timeout']>().toBeNumber();
    expectTypeOf<TimeoutError['predicted']>().toBeBoolean();
    expectTypeOf<BatchSizeMismatchError['received']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<WorkerExitedError['exitCode']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<InvalidOutputError['index']>().toBeNumber();
    expectTypeOf(TimeoutError).constructorParameters.toEqualTypeOf<[timeout: number, predicted?: boolean]>();
  });

  test('a code narrows in a switch, and a wrong one is a compile error', () => {
    const status = (error: BatchedFnError): number => {
      switch (error.code) {
        case 'ERR_QUEUE_FULL':
          return 503;
        case 'ERR_TIMEOUT':
          return 504;
        default:
          return 500;
      }
    };
    expectTypeOf(status).returns.toBeNumber();
    const error = new QueueFullError(8);
    // @ts-expect-error a QueueFullError's code is ERR_QUEUE_FULL, never ERR_CLOSED
    expectTypeOf(error.code === 'ERR_CLOSED').toBeBoolean();
    // @ts-expect-error codes are read-only
    error.code = 'ERR_QUEUE_FULL';
  });
});

describe('constants', () => {
  test('DEFAULTS and MAX_TIMER_MS are read-only numbers', () => {
    expectTypeOf(DEFAULTS.maxBatchSize).toBeNumber();
    expectTypeOf(DEFAULTS.maxDelay).toEqualTypeOf<number | 'auto'>();
    expectTypeOf(MAX_TIMER_MS).toBeNumber();
    // @ts-expect-error DEFAULTS is frozen
    DEFAULTS.maxBatchSize = 1;
  });
});

describe('batched-fn/adapter', () => {
  test('PendingCalls: the call lifecycle for a remote executor', () => {
    const calls = new PendingCalls<number[]>();
    expectTypeOf(calls.open('id-1', { timeout: 10 }, 1, () => {})).toEqualTypeOf<Promise<number[]>>();
    expectTypeOf(calls.resolve).parameters.toEqualTypeOf<[id: string, value: number[]]>();
    expectTypeOf(calls.fail).toBeCallableWith('id-1', new Error('lost'));
    expectTypeOf(calls.refuse(new Error('full'))).toEqualTypeOf<Promise<never>>();
    expectTypeOf(calls.stats).toEqualTypeOf<StatsRecorder>();
    // @ts-expect-error the value must be the call's output type
    calls.resolve('id-1', 'not numbers');
  });

  test('the error codec and the shared validators', () => {
    expectTypeOf(serializeError(new QueueFullError(1))).toEqualTypeOf<SerializedError>();
    expectTypeOf(deserializeError).returns.toEqualTypeOf<Error>();
    expectTypeOf(deserializeError).parameter(0).toBeUnknown();
    expectTypeOf(DISPATCH_REASONS).toEqualTypeOf<readonly DispatchReason[]>();
    expectTypeOf(validateCallOptions).toBeFunction();
  });
});

describe('codec', () => {
  test('a BatchCodec of the batcher input and output types, in worker mode only', () => {
    const codec: BatchCodec<number, string> = {
      encodeInputs: (inputs) => ({ value: Float64Array.from(inputs) }),
      decodeInputs: (value) => Array.from(value as Float64Array),
      encodeOutputs: (outputs) => ({ value: outputs.join('\n') }),
      decodeOutputs: (value) => String(value).split('\n'),
    };
    batchedFn<number, string>({ worker: './model.worker.js', codec });
    const packed: PackedBatch = codec.encodeInputs([1, 2]);
    expectTypeOf(packed.transfer).toEqualTypeOf<ArrayBuffer[] | undefined>();
    expectTypeOf(transferListFor([move(new Float32Array(2))])).toEqualTypeOf<ArrayBuffer[] | undefined>();
    expectTypeOf(isMoved(packed)).toEqualTypeOf<boolean>();
    // @ts-expect-error a codec must have all four functions
    batchedFn<number, string>({ worker: './model.worker.js', codec: { encodeInputs: codec.encodeInputs } });
  });
});
