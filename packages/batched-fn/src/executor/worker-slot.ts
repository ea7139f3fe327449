import type { Worker } from 'node:worker_threads';
import type { WorkerStats } from '../stats.js';
import type { Outputs } from './types.js';
import type { ToWorker } from './wire.js';

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

  /** The job `id` answered: it leaves the slot, which is idle again. Undefined for a stale answer. */
  takeJob(id: number): Job | undefined {
    const job = this.job;
    if (job === undefined || job.id !== id) return undefined;
    this.job = undefined;
    this.batches++;
    this.items += job.size;
    this.busyMs += performance.now() - this.busySince;
    if (this.state === 'busy') this.state = 'idle';
    this.worker?.unref();
    return job;
  }

  /** The running job failed without an answer (a lost message, an abandoned batch). */
  failJob(error: unknown): void {
    const job = this.job;
    if (job === undefined) return;
    this.job = undefined;
    this.busyMs += performance.now() - this.busySince;
    if (this.state === 'busy') this.state = 'idle';
    job.reject(error);
  }

  /** Detaches the worker and lets it finish what it runs, then close; never terminated. Resolves at its exit. */
  retire(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker === undefined) return Promise.resolve();
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.ref();
    worker.postMessage({ type: 'close' } satisfies ToWorker);
    return exited;
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
