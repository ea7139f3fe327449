import type { Worker } from 'node:worker_threads';
import type { WorkerStats } from '../stats.js';
import type { Outputs } from './types.js';

/** A batch handed to one worker. */
export interface Job {
  id: number;
  size: number;
  /** The array the batcher handed to `run`, by identity: how `abandon` finds the job. */
  inputs: unknown[];
  resolve: (outputs: Outputs<unknown>) => void;
  reject: (error: unknown) => void;
}

export type SlotState = WorkerStats['state'];

/** One place in the pool. The Worker inside is replaced when it dies; the slot and its counters stay. */
export class WorkerSlot {
  readonly id: number;
  worker: Worker | undefined;
  state: SlotState = 'stopped';
  job: Job | undefined;
  busySince = 0;
  batches = 0;
  items = 0;
  busyMs = 0;
  restarts = 0;
  /** Messages on the worker's port that were not ours (user code posting on parentPort): ignored. */
  ignoredMessages = 0;
  failuresInARow = 0;
  lastError: unknown;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  stopping = false;
  /**
   * False when the module says its handler blocks in native code. Terminating a thread inside
   * onnxruntime-node's session.run aborts the whole process (its binding throws a C++ exception
   * into the dying environment), so such a worker is never terminated mid-batch: it is retired.
   */
  interruptible = true;
  readonly initWaiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  onExit: (() => void) | undefined;

  constructor(id: number) {
    this.id = id;
  }
}


/** The slot's figures for `stats.workers`. */
export function slotStats(slot: WorkerSlot): WorkerStats {
  return {
    id: slot.id,
    threadId: slot.worker?.threadId,
    state: slot.state,
    batches: slot.batches,
    items: slot.items,
    busyMs: slot.busyMs + (slot.state === 'busy' ? performance.now() - slot.busySince : 0),
    restarts: slot.restarts,
    ignoredMessages: slot.ignoredMessages,
  };
}
