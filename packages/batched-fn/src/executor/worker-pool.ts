import { type ResourceLimits, Worker } from 'node:worker_threads';
import { WorkerExitedError } from '../errors.js';
import type { WorkerStats } from '../stats.js';
import { findDetached, isMoved, transferListFor } from '../transfer.js';
import type { Executor, Outputs } from './types.js';
import { deserializeError } from '../error-codec.js';
import { type FromWorker, parseFromWorker, type ToWorker, type WorkerBootData } from './wire.js';
import { runCloneable } from './uncloneable.js';
import { type Job, slotStats, WorkerSlot } from './worker-slot.js';

const ENTRY = new URL('./worker-entry.js', import.meta.url);

/** First restart is quick; a crash loop backs off to this ceiling so it never spins a core. */
const RESTART_BASE_MS = 50;
const RESTART_MAX_MS = 5_000;
/** A worker asked to close gets this long to dispose its context before it is terminated. */
const CLOSE_GRACE_MS = 5_000;

export interface WorkerPoolOptions {
  module: URL;
  workers: number;
  workerData: unknown;
  resourceLimits: ResourceLimits | undefined;
  name: string;
}

/**
 * Runs batches in worker threads, one batch per worker at a time. A batch is handed only to a free
 * worker, so batches keep filling in the queue while all workers are busy (Triton's instance groups).
 */
export class WorkerPoolExecutor<I, O> implements Executor<I, O> {
  readonly #options: WorkerPoolOptions;
  readonly #slots: WorkerSlot[];
  #started = false;
  #finished = false;
  #terminated: Promise<void> | undefined;
  #nextJobId = 1;
  #capacityListener: () => void = () => {};
  lastWorker: number | undefined = undefined;

  /** Options are validated by batchedFn() (workerData is cloneable, resourceLimits known). */
  constructor(options: WorkerPoolOptions) {
    this.#options = options;
    this.#slots = Array.from({ length: options.workers }, (_, i) => new WorkerSlot(i));
  }

  hasCapacity(): boolean {
    this.#start();
    return this.#slots.some((slot) => slot.state === 'idle' || slot.state === 'starting');
  }

  onCapacity(listener: () => void): void {
    this.#capacityListener = listener;
  }

  run(inputs: I[]): Promise<Outputs<O>> {
    this.#start();
    const slot =
      this.#slots.find((s) => s.state === 'idle') ?? this.#slots.find((s) => s.state === 'starting');
    if (slot === undefined) return Promise.reject(new Error('batched-fn: no free worker (dispatcher bug)'));
    this.lastWorker = slot.id;
    return new Promise<Outputs<O>>((resolve, reject) => {
      const job: Job = { id: this.#nextJobId++, size: inputs.length, inputs, resolve: resolve as Job['resolve'], reject };
      slot.job = job;
      slot.state = 'busy';
      slot.busySince = performance.now();
      (slot.worker as Worker).ref();
      this.#post(slot, job, inputs);
    });
  }

  /**
   * A batch overran `batchTimeout`. An interruptible worker is terminated and restarted (its exit
   * handler does that). Otherwise a fresh worker takes the slot at once and the old one is
   * retired: it exits on its own once its call returns.
   */
  abandon(inputs: I[]): void {
    const slot = this.#slots.find((s) => s.job?.inputs === inputs);
    if (slot === undefined) return;
    slot.failJob(new Error('batched-fn: batch abandoned after batchTimeout'));
    if (slot.interruptible) {
      // No batch may go to the worker being terminated; its exit restarts it.
      slot.state = 'restarting';
      void slot.worker?.terminate();
      return;
    }
    slot.retire();
    slot.restarts++;
    this.#spawn(slot);
    this.#capacityListener();
  }

  async ready(): Promise<void> {
    this.#start();
    await Promise.all(
      this.#slots.map(
        (slot) =>
          new Promise<void>((resolve, reject) => {
            if (slot.state === 'restarting') this.#spawn(slot);
            const worker = slot.worker as Worker;
            // Someone is waiting on this worker, so it must keep the process alive until it answers.
            worker.ref();
            const settle = (): void => {
              if (slot.job === undefined && slot.worker === worker) worker.unref();
            };
            slot.initWaiters.push({
              resolve: () => {
                settle();
                resolve();
              },
              reject: (error) => {
                settle();
                reject(error);
              },
            });
            this.#send(slot, { type: 'init' });
          }),
      ),
    );
  }

  async close(): Promise<void> {
    // After destroy(), closing waits for the terminated threads to be gone.
    if (this.#finished) return this.#terminated;
    this.#finished = true;
    await Promise.all(this.#slots.map((slot) => this.#stop(slot, false)));
  }

  destroy(reason: unknown): void {
    this.#finished = true;
    const stopped: Promise<void>[] = [];
    for (const slot of this.#slots) {
      const job = slot.job;
      slot.job = undefined;
      job?.reject(reason);
      if (!slot.interruptible) slot.state = 'stopped';
      stopped.push(slot.interruptible ? this.#stop(slot, true) : slot.retire());
    }
    // A retired worker exits when its native call returns; waiting longer than the close grace
    // for one that never does would hold close() forever, so the wait is bounded.
    const grace = new Promise<void>((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref());
    this.#terminated = Promise.race([Promise.all(stopped).then(() => {}), grace]);
  }

  workerStats(): WorkerStats[] {
    return this.#slots.map(slotStats);
  }

  /** A moved input whose buffer is already detached would be lost on the way to the thread: refuse it here. */
  admit(input: I): Error | undefined {
    if (!isMoved(input)) return undefined;
    const where = findDetached(input);
    return where === undefined
      ? undefined
      : new TypeError(`Input cannot be sent to a worker thread: ${where} was already transferred (detached), by an earlier move() perhaps`);
  }

  #start(): void {
    if (this.#started || this.#finished) return;
    this.#started = true;
    for (const slot of this.#slots) this.#spawn(slot);
  }

  #spawn(slot: WorkerSlot): void {
    if (slot.restartTimer !== undefined) clearTimeout(slot.restartTimer);
    slot.restartTimer = undefined;
    const boot: WorkerBootData = { moduleUrl: this.#options.module.href, data: this.#options.workerData };
    const worker = new Worker(ENTRY, {
      workerData: boot,
      name: `${this.#options.name}#${slot.id}`,
      ...(this.#options.resourceLimits === undefined ? {} : { resourceLimits: this.#options.resourceLimits }),
    });
    slot.worker = worker;
    slot.state = 'starting';
    slot.interruptible = true;
    slot.lastError = undefined;
    // A retired worker (see #retire) still runs and answers; only the slot's current worker counts.
    worker.on('message', (raw: unknown) => {
      if (slot.worker !== worker) return;
      const message = parseFromWorker(raw);
      if (message === undefined) slot.ignoredMessages++;
      else this.#onMessage(slot, message);
    });
    worker.on('messageerror', (error) => {
      if (slot.worker === worker) slot.failJob(error);
    });
    worker.on('error', (error) => {
      slot.lastError = error;
    });
    worker.on('exit', (code) => this.#onExit(slot, worker, code));
    worker.on('online', () => {
      if (slot.state === 'starting' && slot.worker === worker) slot.state = slot.job === undefined ? 'idle' : 'busy';
    });
    // An idle pool must not keep the process alive; a busy worker must. This comes after the
    // listeners because attaching a 'message' listener refs the worker's port again.
    worker.unref();
  }

  #post(slot: WorkerSlot, job: Job, inputs: unknown[]): void {
    try {
      this.#send(slot, { type: 'run', id: job.id, inputs }, transferListFor(inputs));
    } catch (error) {
      // One uncloneable input (a function, a socket) must not sink its neighbours.
      slot.job = undefined;
      slot.state = 'idle';
      (slot.worker as Worker).unref();
      void runCloneable(inputs, error, (good) => this.run(good as I[])).then(job.resolve, job.reject);
    }
  }

  #send(slot: WorkerSlot, message: ToWorker, transfer?: ArrayBuffer[]): void {
    (slot.worker as Worker).postMessage(message, transfer);
  }

  #onMessage(slot: WorkerSlot, message: FromWorker): void {
    switch (message.type) {
      case 'loaded':
        slot.interruptible = message.interruptible !== false;
        break;
      case 'ready':
        for (const waiter of slot.initWaiters.splice(0)) waiter.resolve();
        break;
      case 'init-error': {
        const error = deserializeError(message.error);
        for (const waiter of slot.initWaiters.splice(0)) waiter.reject(error);
        break;
      }
      case 'result': {
        const job = slot.takeJob(message.id);
        if (job === undefined) return;
        slot.failuresInARow = 0;
        const outputs = message.outputs;
        if (outputs !== null) for (const [i, wire] of message.errors) outputs[i] = deserializeError(wire);
        // Not an array: the batcher reports the mismatch with the batch's real size.
        job.resolve(outputs as Outputs<unknown>);
        break;
      }
      case 'error': {
        const job = slot.takeJob(message.id);
        job?.reject(deserializeError(message.error));
        break;
      }
      case 'lost':
        slot.failJob(deserializeError(message.error));
        break;
      case 'closed':
        break;
    }
  }

  #onExit(slot: WorkerSlot, worker: Worker, code: number): void {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    const job = slot.job;
    slot.job = undefined;
    if (job !== undefined) slot.busyMs += performance.now() - slot.busySince;
    const exited = new WorkerExitedError(slot.id, code, slot.lastError);
    for (const waiter of slot.initWaiters.splice(0)) waiter.reject(slot.lastError ?? exited);
    if (slot.stopping || this.#finished) {
      slot.state = 'stopped';
      job?.reject(exited);
      slot.onExit?.();
      return;
    }
    slot.state = 'restarting';
    slot.restarts++;
    slot.failuresInARow++;
    const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** (slot.failuresInARow - 1));
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.#finished) return;
      this.#spawn(slot);
      this.#capacityListener();
    }, delay);
    job?.reject(exited);
  }

  #stop(slot: WorkerSlot, force: boolean): Promise<void> {
    if (slot.restartTimer !== undefined) clearTimeout(slot.restartTimer);
    slot.restartTimer = undefined;
    const worker = slot.worker;
    if (worker === undefined) {
      slot.state = 'stopped';
      return Promise.resolve();
    }
    slot.stopping = true;
    return new Promise<void>((resolve) => {
      slot.onExit = resolve;
      if (force) {
        void worker.terminate();
        return;
      }
      // Let the module dispose its context (close a session, flush a log); terminate if it takes too long.
      const grace = setTimeout(() => void worker.terminate(), CLOSE_GRACE_MS).unref();
      worker.once('exit', () => clearTimeout(grace));
      worker.ref();
      this.#send(slot, { type: 'close' });
    });
  }
}
