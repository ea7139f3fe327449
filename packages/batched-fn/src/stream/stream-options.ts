import { pathToFileURL } from 'node:url';
import { OPTION_SCHEMA } from '../option-schema.js';
import { describeValue, expectFunction } from '../validate.js';

/** One sequence's output of one step: a value, the end (after the value, if any), or an error ending it alone. */
export type StepOutput<O> = { value?: O; done?: boolean } | Error;

/** What `onStep` hears after every step. */
export interface StepInfo {
  name: string;
  /** Sequences in the step. */
  sequences: number;
  /**
   * Values the step handed to streams: a slot without a value (a row still prefilling) hands none,
   * nor does a stream that ended (cancelled) while its thread stepped it.
   */
  values: number;
  ms: number;
}

export interface BatchedStreamOptions<I, S, T, C> {
  /** The prefill of sequences joining now, one state per input (sync or async). Default: the input is the state. */
  start?: (inputs: I[], context: C) => S[] | Promise<S[]>;
  /** One step of every active sequence, one output per state, in order (sync or async). Inline mode only. */
  step?: (states: S[], context: C) => readonly StepOutput<T>[] | Promise<readonly StepOutput<T>[]>;
  /** Built once, lazily before the first group (or by `ready()`); retried after a failure. */
  context?: () => C | Promise<C>;
  /** Most sequences in one step. @default 8 */
  maxBatchSize?: number;
  /** How long an idle generator waits to gather its first group: ms, or 'auto'. @default 50 */
  maxDelay?: number | 'auto';
  /** Most sequences waiting to join (running ones do not count). @default Infinity */
  channelCap?: number;
  /** 'continuous': sequences join and leave at every step; 'static': a group runs to the end of its longest sequence. @default 'continuous' */
  mode?: 'continuous' | 'static';
  /** Independent running groups. @default 1 */
  concurrency?: number;
  name?: string;
  onStep?: (info: StepInfo) => void;
  /**
   * Longest one `start` or `step` may run, in ms. Past it, every stream of its group ends with
   * ERR_BATCH_TIMEOUT and the group's slot is freed; in worker mode the thread is terminated and
   * replaced (or, for a module exporting `interruptible = false`, replaced at once and retired
   * when its step returns); inline, the late result is dropped. @default none
   */
  batchTimeout?: number;
  /** Run `start` and `step` in worker threads: a module exporting `step`, and optionally `start`, `context(workerData)`, `dispose`, and `interruptible = false` for a step that blocks in native code. States stay in the worker. */
  worker?: URL | string;
  /** Worker threads, one running group each. @default 1 */
  workers?: number;
  workerData?: unknown;
}

export interface ResolvedStreamOptions<I, S, T, C> {
  start: BatchedStreamOptions<I, S, T, C>['start'];
  step: NonNullable<BatchedStreamOptions<I, S, T, C>['step']>;
  context: BatchedStreamOptions<I, S, T, C>['context'];
  maxBatchSize: number;
  maxDelay: number | 'auto';
  channelCap: number;
  mode: 'continuous' | 'static';
  concurrency: number;
  name: string;
  onStep: BatchedStreamOptions<I, S, T, C>['onStep'];
  batchTimeout: number | undefined;
  /** Worker mode: the module's URL and what its `context()` receives. */
  worker: { moduleUrl: string; data: unknown } | undefined;
}

const KNOWN = new Set([
  'start',
  'step',
  'context',
  'maxBatchSize',
  'maxDelay',
  'channelCap',
  'mode',
  'concurrency',
  'name',
  'onStep',
  'batchTimeout',
  'worker',
  'workers',
  'workerData',
]);

/** Checked like batchedFn's options: the shared ones by the same schema rows, and the same messages. */
export function resolveStreamOptions<I, S, T, C>(
  options: BatchedStreamOptions<I, S, T, C>,
): ResolvedStreamOptions<I, S, T, C> {
  if (typeof options !== 'object' || options === null)
    throw new TypeError(`Expected options to be an object, got ${describeValue(options)}`);
  for (const key of Object.keys(options)) if (!KNOWN.has(key)) throw new TypeError(`Unknown option \`${key}\``);
  const inWorkers = options.worker !== undefined;
  if (inWorkers === (options.step !== undefined))
    throw new TypeError('Expected exactly one of `step` (run inline) or `worker` (run in worker threads)');
  let worker: ResolvedStreamOptions<I, S, T, C>['worker'];
  if (inWorkers) {
    if (options.start !== undefined || options.context !== undefined)
      throw new TypeError('In worker mode, `start` and `context` come from the worker module');
    const url = OPTION_SCHEMA.worker.check(options.worker) as URL | string;
    OPTION_SCHEMA.workerData.check(options.workerData);
    worker = {
      moduleUrl: url instanceof URL ? url.href : /^(file|data):/.test(url) ? url : pathToFileURL(url).href,
      data: options.workerData,
    };
  } else {
    expectFunction('step', options.step);
    if (options.start !== undefined) expectFunction('start', options.start);
    if (options.context !== undefined) expectFunction('context', options.context);
  }
  const workers = options.workers === undefined ? 1 : (OPTION_SCHEMA.workers.check(options.workers) as number);
  if (options.onStep !== undefined) expectFunction('onStep', options.onStep);
  if (options.mode !== undefined && options.mode !== 'continuous' && options.mode !== 'static') {
    throw new TypeError(`Expected \`mode\` to be 'continuous' or 'static', got ${describeValue(options.mode)}`);
  }
  const check = <K extends 'maxBatchSize' | 'maxDelay' | 'channelCap' | 'concurrency' | 'name' | 'batchTimeout'>(
    key: K,
    fallback: unknown,
  ) => (options[key] === undefined ? fallback : OPTION_SCHEMA[key].check(options[key]));
  return {
    start: options.start,
    step: options.step ?? (() => []),
    context: options.context,
    maxBatchSize: check('maxBatchSize', OPTION_SCHEMA.maxBatchSize.default) as number,
    maxDelay: check('maxDelay', OPTION_SCHEMA.maxDelay.default) as number | 'auto',
    channelCap: check('channelCap', OPTION_SCHEMA.channelCap.default) as number,
    mode: options.mode ?? 'continuous',
    concurrency: check('concurrency', workers) as number,
    name: check('name', OPTION_SCHEMA.name.default) as string,
    onStep: options.onStep,
    batchTimeout: check('batchTimeout', undefined) as number | undefined,
    worker,
  };
}
