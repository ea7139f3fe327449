import type { CallHandle } from './call-handle.js';
import type { BatchBuilder, Resolve } from './queue.js';
import { InvalidPadError } from './errors.js';
import { describeValue } from './validate.js';
import type { DispatchReason } from './stats.js';

/** A dispatched batch. A resolver slot is emptied when its caller is released early. */
export class RunningBatch<I, O> implements BatchBuilder<I, O> {
  inputs: I[] = [];
  resolvers: (Resolve<O> | undefined)[] = [];
  handles: CallHandle<I, O>[] | undefined = undefined;
  rows = 0;
  maxWait = 0;
  totalWait = 0;
  /** Inputs handed to the handler, filler included, when `pad` grew the batch. */
  padded = 0;
  /** What the executor was given (the padded inputs, with `pad`): identifies the run to abandon. */
  sent: I[] | undefined = undefined;
  /** The worker thread running it (worker mode). */
  worker: number | undefined = undefined;
  /** Armed with `batchTimeout`. */
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  readonly reason: DispatchReason;
  readonly started: number;

  constructor(reason: DispatchReason, started: number) {
    this.reason = reason;
    this.started = started;
  }

  addHandle(handle: CallHandle<I, O>, index: number): void {
    this.handles ??= [];
    this.handles[index] = handle;
    handle.place = { state: 'running', batch: this, index };
  }
}

/** Callers of a batch still waiting (not released by abort, timeout or shedding). */
export function liveCount(resolvers: readonly unknown[]): number {
  let live = 0;
  for (const resolve of resolvers) if (resolve !== undefined) live++;
  return live;
}

export function isOutputArray(value: unknown): value is ArrayLike<unknown> {
  return Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
}

/** Why `pad`'s result cannot be run, or undefined when it is the batch followed by filler. */
export function padProblem<I>(padded: unknown, batch: readonly I[]): string | undefined {
  if (!Array.isArray(padded)) return `got ${describeValue(padded)}`;
  if (padded.length < batch.length) return `got ${padded.length} inputs for a batch of ${batch.length}`;
  for (let i = 0; i < batch.length; i++) if (padded[i] !== batch[i]) return `input ${i} is not the batch's input ${i}`;
  return undefined;
}

/** Runs `pad` up to `target` rows (if the batch has fewer): the inputs to run, or why the batch fails. */
export function padBatch<I, O>(batch: RunningBatch<I, O>, pad: (batch: I[], targetRows: number) => I[], target: number): { inputs: I[] } | { error: unknown } {
  if (target <= batch.rows) return { inputs: batch.inputs };
  let padded: unknown;
  try {
    padded = pad(batch.inputs.slice(), target);
  } catch (error) {
    return { error };
  }
  const problem = padProblem(padded, batch.inputs);
  if (problem !== undefined) return { error: new InvalidPadError(problem) };
  batch.padded = (padded as I[]).length;
  return { inputs: padded as I[] };
}
