import type { MessagePort, ResourceLimits } from 'node:worker_threads';
import { deserializeError } from '../error-codec.js';
import type { BatchCodec } from '../options.js';
import type { WorkerStats } from '../stats.js';
import { findDetached, isMoved, transferListFor } from '../transfer.js';
import type { Executor, Outputs, Placement } from './types.js';
import { runCloneable } from './uncloneable.js';
import type { Answer, ModuleKind } from './wire.js';
import { WorkerLease } from './worker-lease.js';
import { type SlotHost, WorkerSlot } from './worker-slot.js';

const ENTRY = new URL('./worker-entry.js', import.meta.url);

export interface WorkerPoolOptions {
  module: URL;
  workers: number;
  workerData: unknown;
  resourceLimits: ResourceLimits | undefined;
  name: string;
  /** What the module exports: a batch `handler` (the default), or a stream `step` whose states the threads keep by id. */
  kind?: ModuleKind;
  /** The `connectWorker` option: a channel to every worker spawned. */
  connect?: ((port: MessagePort, worker: number) => void) | undefined;
  /** The `codec` option: batches cross packed, one message each way. */
  codec?: BatchCodec<unknown, unknown> | undefined;
}

/**
 * The one thread pool. Each slot runs one worker of the module; a crashed
 * worker restarts with backoff, a worker that overran `batchTimeout` is
 * terminated (or, when not interruptible, retired and replaced at once), and
 * every message from a thread is validated. Batches (batchedFn) go to any
 * free slot, one per worker at a time; a stream group (batchedStream) leases
 * a slot for its whole life, since its states stay in that thread.
 */
export class WorkerPool implements SlotHost {
  readonly entry = ENTRY;
  readonly boot;
  readonly name: string;
  readonly resourceLimits: ResourceLimits | undefined;
  readonly connect: ((port: MessagePort, worker: number) => void) | undefined;
  readonly #codec: BatchCodec<unknown, unknown> | undefined;
  readonly #slots: WorkerSlot[];
  #started = false;
  #finished = false;
  #terminated: Promise<void> | undefined;
  #capacityListener: () => void = () => {};

  /** Options are validated by the caller (workerData is cloneable, resourceLimits known). */
  constructor(options: WorkerPoolOptions) {
    this.boot = { moduleUrl: options.module.href, data: options.workerData, kind: options.kind ?? 'batch' };
    this.name = options.name;
    this.resourceLimits = options.resourceLimits;
    this.connect = options.connect;
    this.#codec = options.codec;
    this.#slots = Array.from({ length: options.workers }, (_, i) => new WorkerSlot(i, this));
  }

  restartable(): boolean {
    return !this.#finished;
  }

  capacity(): void {
    this.#capacityListener();
  }

  /** True when a batch or lease handed over now would start without waiting for a free worker. Starts the threads. */
  hasCapacity(): boolean {
    this.#start();
    return this.#slots.some((slot) => slot.free);
  }

  /** Called when capacity returns without a request finishing (a restarted worker). */
  onCapacity(listener: () => void): void {
    this.#capacityListener = listener;
  }

  /** Whether worker `worker` would take a batch now (`affinity`). Starts the threads. */
  hasCapacityOn(worker: number): boolean {
    this.#start();
    return this.#slots[worker]?.free === true;
  }

  /** Runs one batch on a free worker; `placement` hears which. */
  run(inputs: unknown[], placement?: Placement): Promise<Outputs<unknown>> {
    const pinned = placement?.pinned;
    const slot = pinned === undefined ? this.#freeSlot() : this.#slots[pinned];
    if (slot !== undefined && !slot.free)
      return Promise.reject(new Error('batched-fn: pinned worker is busy (engine bug)'));
    if (slot === undefined) return Promise.reject(new Error('batched-fn: no free worker (engine bug)'));
    placement?.assigned(slot.id);
    const codec = this.#codec;
    if (codec !== undefined) return this.#runPacked(slot, codec, inputs);
    let answered: Promise<Answer>;
    try {
      answered = slot.request({ type: 'run', inputs }, transferListFor(inputs), inputs);
    } catch (error) {
      // One uncloneable input (a function, a socket) must not sink its neighbours.
      return runCloneable(inputs, error, (good) => this.run(good, placement));
    }
    return answered.then((answer) => unpacked(answer));
  }

  /**
   * The batch as the codec packs it. What it cannot pack or send fails the batch (the codec owns
   * the message, so there is no one input to blame); the worker may answer unpacked (an output that
   * is an Error, a count mismatch), which reads as without a codec.
   */
  #runPacked(slot: WorkerSlot, codec: BatchCodec<unknown, unknown>, inputs: unknown[]): Promise<Outputs<unknown>> {
    let answered: Promise<Answer>;
    try {
      const { value, transfer } = codec.encodeInputs(inputs);
      answered = slot.request({ type: 'run-packed', packed: value }, transfer, inputs);
    } catch (error) {
      return Promise.reject(error);
    }
    return answered.then((answer) =>
      answer.type === 'packed-result'
        ? (codec.decodeOutputs(answer.packed, inputs) as Outputs<unknown>)
        : unpacked(answer),
    );
  }

  /** A batch overran `batchTimeout`: its worker is let go (see WorkerSlot.abandon). */
  abandon(inputs: unknown[]): void {
    this.#slots.find((slot) => slot.runs(inputs))?.abandon(new Error('batched-fn: batch abandoned after batchTimeout'));
  }

  /** A free slot for a stream group, held until the lease is released; undefined when none is free. */
  lease(): WorkerLease | undefined {
    const slot = this.#freeSlot();
    return slot === undefined ? undefined : new WorkerLease(slot);
  }

  /** Sequence states the threads hold, as each last reported. */
  get held(): number {
    let held = 0;
    for (const slot of this.#slots) held += slot.held;
    return held;
  }

  /** Starts every worker and builds its context now. */
  async ready(): Promise<void> {
    this.#start();
    await Promise.all(this.#slots.map((slot) => slot.init()));
  }

  /** Called once nothing runs: each worker disposes its context and exits (retired ones too, within the grace). */
  async close(): Promise<void> {
    // After destroy(), closing waits for the terminated threads to be gone.
    if (this.#finished) return this.#terminated;
    this.#finished = true;
    await Promise.all(this.#slots.map((slot) => slot.stop(false)));
  }

  /** Everything pending rejects with `reason`; workers are terminated, or retired when they may not be. */
  destroy(reason: unknown): void {
    this.#finished = true;
    this.#terminated = Promise.all(this.#slots.map((slot) => slot.destroy(reason))).then(() => {});
  }

  workerStats(): WorkerStats[] {
    return this.#slots.map((slot) => slot.stats());
  }

  /** A moved input whose buffer is already detached would be lost on the way to the thread: refuse it here. */
  admit(input: unknown): Error | undefined {
    if (!isMoved(input)) return undefined;
    const where = findDetached(input);
    return where === undefined
      ? undefined
      : new TypeError(
          `Input cannot be sent to a worker thread: ${where} was already transferred (detached), by an earlier move() perhaps`,
        );
  }

  #freeSlot(): WorkerSlot | undefined {
    this.#start();
    return this.#slots.find((slot) => slot.free && slot.state === 'idle') ?? this.#slots.find((slot) => slot.free);
  }

  #start(): void {
    if (this.#started || this.#finished) return;
    this.#started = true;
    for (const slot of this.#slots) slot.spawn();
  }
}

/** A batch's unpacked answer: its outputs, each failed slot's error in place. */
function unpacked(answer: Answer): Outputs<unknown> {
  // A module's own message can imitate an answer of the other kind: a batch is never answered by one.
  if (answer.type !== 'result')
    throw new TypeError('batched-fn: the worker answered a batch with a message of another kind');
  const { outputs, errors } = answer;
  if (outputs !== null) for (const [i, wire] of errors) outputs[i] = deserializeError(wire);
  // Not an array: the batcher reports the mismatch with the batch's real size.
  return outputs as Outputs<unknown>;
}

/**
 * Runs batches in the pool's worker threads, one batch per worker at a time. A batch is handed only
 * to a free worker, so batches keep filling in the queue while all workers are busy (Triton's
 * instance groups).
 */
export class WorkerPoolExecutor<I, O> implements Executor<I, O> {
  readonly #pool: WorkerPool;

  constructor(options: WorkerPoolOptions) {
    this.#pool = new WorkerPool({ ...options, kind: 'batch' });
  }

  run(inputs: I[], placement?: Placement): Promise<Outputs<O>> {
    return this.#pool.run(inputs, placement) as Promise<Outputs<O>>;
  }

  hasCapacity(): boolean {
    return this.#pool.hasCapacity();
  }

  hasCapacityOn(worker: number): boolean {
    return this.#pool.hasCapacityOn(worker);
  }

  onCapacity(listener: () => void): void {
    this.#pool.onCapacity(listener);
  }

  admit(input: I): Error | undefined {
    return this.#pool.admit(input);
  }

  ready(): Promise<void> {
    return this.#pool.ready();
  }

  close(): Promise<void> {
    return this.#pool.close();
  }

  abandon(inputs: I[]): void {
    this.#pool.abandon(inputs);
  }

  destroy(reason: unknown): void {
    this.#pool.destroy(reason);
  }

  workerStats(): WorkerStats[] {
    return this.#pool.workerStats();
  }
}
