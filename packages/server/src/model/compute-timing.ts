import type { BatchInfo } from 'batched-fn';
import type { InferResult } from './tensor.js';

/**
 * Triton's `compute_input` / `compute_infer` / `compute_output` for a batch that ran in a worker
 * thread. The batcher measures one span per batch, dispatch to outputs back (`execMs`); the worker
 * knows when the model itself started and finished. Together they split the span in three:
 *
 *   compute_input  = dispatch → model starts: posting the inputs to the thread, stacking the
 *                    requests into one batch (concatRows), building the runtime's tensors;
 *   compute_infer  = the model's own run (session.run, or a JS model's handler);
 *   compute_output = model done → outputs back: splitting the batch per request and posting back.
 *
 * Both threads read one clock, `performance.timeOrigin + performance.now()` (epoch ms at µs
 * resolution, consistent across the threads of a process). The worker stamps its two instants
 * on every result of the batch; the batcher's `onBatch` (which runs just before the batch's
 * callers resume, in the same task) gives the dispatch and arrival; the first caller to resume
 * joins the two, once per batch. A batch whose callers all left (aborted, timed out) is counted
 * by `onBatch` alone, its whole span as compute_infer.
 */

/** The worker's stamp, under a key no tensor name takes; stripped before anyone reads the result. */
export const COMPUTE_KEY = '\u0000compute';

export interface WorkerStamp {
  /** When the model started and finished, on `now()`'s clock. */
  inferStart: number;
  inferEnd: number;
}

/** One executed batch, split: the batch's rows and its three phases in ms (they add up to its execMs). */
export interface BatchCompute {
  rows: number;
  execMs: number;
  inputMs: number;
  inferMs: number;
  outputMs: number;
}

/** The clock both threads share (see above). */
export const now = (): number => performance.timeOrigin + performance.now();

/** In the worker: stamps each of a batch's results (plain objects, so the stamp crosses the thread). */
export function stampResults<T extends object>(results: T[], stamp: WorkerStamp): T[] {
  for (const result of results)
    if (result !== null && typeof result === 'object' && !(result instanceof Error))
      (result as Record<string, unknown>)[COMPUTE_KEY] = stamp;
  return results;
}

const computed = new WeakMap<InferResult, BatchCompute>();

/** The split of the batch that answered `result`, for the first of its callers only (undefined for the others). */
export function batchComputeOf(result: InferResult): BatchCompute | undefined {
  return computed.get(result);
}

/** Strips a stamp (from a remote worker, say) without using it. */
export function stripStamp(result: InferResult): InferResult {
  delete (result as Record<string, unknown>)[COMPUTE_KEY];
  return result;
}

/** One batcher's join of its `onBatch` reports with its workers' stamps. */
export class ComputeJoin {
  #last: { at: number; execMs: number; rows: number } | undefined;

  /** Wraps the batcher's onBatch: notes the batch that just settled. */
  onBatch(info: BatchInfo): void {
    this.#last = info.ok ? { at: now(), execMs: info.execMs, rows: info.rows } : undefined;
  }

  /** A caller's result: its stamp is removed, and the first of its batch records the split. */
  readonly take = (result: InferResult): InferResult => {
    const stamp = (result as Record<string, unknown>)[COMPUTE_KEY] as WorkerStamp | undefined;
    if (stamp === undefined) return result;
    delete (result as Record<string, unknown>)[COMPUTE_KEY];
    const last = this.#last;
    this.#last = undefined;
    if (last === undefined || typeof stamp.inferStart !== 'number' || typeof stamp.inferEnd !== 'number') return result;
    const dispatched = last.at - last.execMs;
    const clamp = (ms: number, most: number): number => Math.min(Math.max(ms, 0), most);
    const inputMs = clamp(stamp.inferStart - dispatched, last.execMs);
    const outputMs = clamp(last.at - stamp.inferEnd, last.execMs - inputMs);
    computed.set(result, {
      rows: last.rows,
      execMs: last.execMs,
      inputMs,
      inferMs: last.execMs - inputMs - outputMs,
      outputMs,
    });
    return result;
  };
}
