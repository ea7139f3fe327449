import { type BatchedStream, batchedStream, type StepInfo } from 'batched-fn';
import { CHARLM, ensureCharLm } from '../builtin/charlm.js';
import type { CharLmRequest, CharLmWorkerData } from '../builtin/charlm.worker.js';
import { maxOf, SETTING_DEFAULTS } from '../settings/settings.js';

/** A model that answers with a stream of tokens (Triton's generate extension). */
export interface GenerativeModel {
  readonly name: string;
  readonly version: string;
  readonly generate: BatchedStream<CharLmRequest, string>;
}

export interface CharLmOptions {
  name?: string;
  /** Most sequences in one step. @default SETTING_DEFAULTS.maxActive */
  maxActive?: number;
  /** 'continuous' re-forms the batch at every step; 'static' runs a group to its longest sequence. @default SETTING_DEFAULTS.batching */
  batching?: 'continuous' | 'static';
  /** Sequences waiting to join; beyond it, 503. @default SETTING_DEFAULTS.channelCap */
  channelCap?: number;
  /** Longest a step (or a prefill) may run, in ms, before its group's streams end with ERR_BATCH_TIMEOUT. */
  batchTimeout?: number;
  /**
   * Most prompt characters a sequence is fed per decode step (chunked prefill): a step costs at
   * most this many runs however many long prompts join, so running streams keep their pace,
   * and a prompt of L characters answers its first token after ⌈L / prefillChunk⌉ steps.
   * @default SETTING_DEFAULTS.prefillChunk
   */
  prefillChunk?: number;
  cacheDir?: string;
  /** After every step that produced tokens; `sequences` counts the sequences that produced one (rows still prefilling produce none). */
  onStep?: (info: StepInfo) => void;
}

/** charlm served by a batchedStream in a worker thread (session.run blocks its thread). */
export function createCharLmGenerator(options: CharLmOptions = {}): GenerativeModel {
  const name = options.name ?? 'charlm';
  const prefillChunk = options.prefillChunk ?? SETTING_DEFAULTS.prefillChunk;
  const most = maxOf('prefillChunk');
  if (typeof prefillChunk !== 'number' || !Number.isInteger(prefillChunk) || prefillChunk < 1 || prefillChunk > most) {
    throw new (typeof prefillChunk === 'number' ? RangeError : TypeError)(
      `Expected \`prefillChunk\` to be an integer from 1 to ${most}, got \`${String(prefillChunk)}\` (${typeof prefillChunk})`,
    );
  }
  // The worker counts the values its steps produce here, before it answers the step; onStep reads
  // the difference, so a step's tokens are known without a message of their own.
  const produced = new Int32Array(new SharedArrayBuffer(4));
  let seen = 0;
  const onStep = options.onStep;
  const workerData: CharLmWorkerData = {
    modelPath: ensureCharLm(CHARLM, options.cacheDir),
    hidden: CHARLM.hidden,
    prefillChunk,
    produced,
  };
  const generate = batchedStream<CharLmRequest, unknown, string>({
    worker: new URL('../builtin/charlm.worker.js', import.meta.url),
    workerData,
    maxBatchSize: options.maxActive ?? SETTING_DEFAULTS.maxActive,
    maxDelay: 'auto',
    channelCap: options.channelCap ?? SETTING_DEFAULTS.channelCap,
    mode: options.batching ?? SETTING_DEFAULTS.batching,
    ...(options.batchTimeout === undefined ? {} : { batchTimeout: options.batchTimeout }),
    name,
    ...(onStep === undefined
      ? {}
      : {
          onStep: (info: StepInfo) => {
            const now = Atomics.load(produced, 0);
            const sequences = (now - seen) | 0;
            seen = now;
            if (sequences > 0) onStep({ ...info, sequences });
          },
        }),
  });
  return { name, version: '1', generate };
}
