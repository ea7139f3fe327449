import type { FailureKey } from '../errors.js';
import type { Resolve } from '../queue.js';
import type { RunningBatch } from './running-batch.js';

/**
 * WHERE the engine's batches run, and how their callers are settled: the
 * engine's client side. `Settle` runs batchedFn's batches on an executor
 * (inline or the worker pool); batchedStream's groups run step loops that
 * take joiners at each step boundary. The engine (queue, pump, intake,
 * lifecycle) is the same for both.
 */
export interface Runner<I, O> {
  /** Batches (or groups) running now; the pump keeps it under `concurrency`. */
  readonly size: number;
  /** True when a batch handed over now would start without waiting for a free runner. */
  hasCapacity(): boolean;
  /** With `affinity`: whether worker `worker` would take a batch now. */
  hasCapacityOn?(worker: number): boolean;
  /** Called when capacity returns without a batch finishing (a restarted worker). */
  onCapacity(listener: () => void): void;
  /** A batch left the queue: run it, settle its callers, and call the engine's `settled` once its slot is free. */
  run(batch: RunningBatch<I, O>): void;
  /** Settles one call as failed, counted under `key`: the one way any caller learns of a failure. */
  fail(resolve: Resolve<O>, error: unknown, key: FailureKey): void;
  /** destroy(): every caller of every running batch fails now; late results are dropped. */
  releaseAll(error: unknown, key: FailureKey): void;
  /** Builds the context (and starts workers) now. */
  ready(): Promise<void>;
  /** Called once nothing is queued or running: releases threads and contexts. */
  close(): Promise<void>;
  /** Stops at once. */
  destroy(reason: unknown): void;
  /** Present when the runner can predict finishes: the intake then refuses calls that would miss their deadline. */
  readonly shedding?: Shedding | undefined;
}

/** Predicted finishes, for shedding calls that cannot meet their deadline (batchedFn's runner has them). */
export interface Shedding {
  /** Whether predictions may shed calls now. */
  active(t: number): boolean;
  /** When a call of `rows` made at `t` would be answered, with `queuedRows` ahead of it. */
  predictFinish(rows: number, t: number, queuedRows: number): number;
}
