import type { WorkerStats } from '../stats.js';

export type Outputs<O> = ReadonlyArray<O | Error>;

/** The batch being run, told where it runs (the worker's id) as the executor places it. */
export interface Placement {
  /** With `affinity`: the worker the batch must run on (its calls' states live there). */
  readonly pinned?: number | undefined;
  assigned(worker: number): void;
}

/**
 * Runs a batch somewhere and returns its outputs in input order. The batcher
 * decides what goes in a batch and when; an executor only decides where.
 */
export interface Executor<I, O> {
  /** Runs one batch; `placement`, if given, hears which worker took it (worker mode). */
  run(inputs: I[], placement?: Placement): Outputs<O> | Promise<Outputs<O>>;
  /** Checks one input at the call: an Error refuses that call alone (optional; worker mode uses it). */
  admit?(input: I): Error | undefined;
  /** True when a batch handed over now would start without waiting for a free runner. */
  hasCapacity(): boolean;
  /** With `affinity`: whether worker `worker` would take a batch now (worker mode). */
  hasCapacityOn?(worker: number): boolean;
  /** Called when capacity returns without a batch finishing (a restarted worker). */
  onCapacity(listener: () => void): void;
  /** Build the context (and start workers) now. */
  ready(): Promise<void>;
  /** Called once every batch has settled; releases threads and contexts. */
  close(): Promise<void>;
  /**
   * The batch run with these inputs (the very array given to `run`) passed `batchTimeout`: free
   * its runner. A worker is terminated and restarted; inline, nothing can be stopped.
   */
  abandon(inputs: I[]): void;
  /** Stops at once; running batches reject through their own promises. */
  destroy(reason: unknown): void;
  workerStats(): WorkerStats[];
}
