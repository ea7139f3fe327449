import type { LaneView } from '../policy/types.js';
import { type BatchBuilder, CallQueue, type Resolve, type WaitSink } from '../queue.js';
import type { CallHandle } from './call-handle.js';

/** The handle of a cancellable call: what cancelling it hands back is its resolver. */
export type QueuedHandle<O> = CallHandle<Resolve<O>>;

/**
 * The calls that may share a batch: all of them, or with `batchKey` those
 * with one key. Inside a lane, a queue per priority: higher priorities are
 * taken first, FIFO within a priority. Its counts change only through
 * `count`, which only its LaneSet calls.
 */
export class Lane<I, O> implements LaneView {
  readonly key: unknown;
  /** With `affinity`: the worker every call of this lane must run on; undefined: any. */
  readonly worker: number | undefined;
  readonly #limits: { readonly maxBatchSize: number };
  #items = 0;
  #rows = 0;
  /** Queues by descending priority. Almost always one, for priority 0. */
  readonly #queues: { priority: number; queue: CallQueue<I, O, QueuedHandle<O>> }[] = [];
  #lastPriority = Number.NaN;
  #lastQueue: CallQueue<I, O, QueuedHandle<O>> | undefined;

  /** `limits` is the engine's live settings: the lane reads maxBatchSize there and keeps no copy. */
  constructor(key: unknown, limits: { readonly maxBatchSize: number }, worker?: number) {
    this.key = key;
    this.worker = worker;
    this.#limits = limits;
  }

  /** Live calls; tombstones in the queues are not counted. */
  get items(): number {
    return this.#items;
  }

  /** Rows of the live calls. */
  get rows(): number {
    return this.#rows;
  }

  /** Most rows the next batch may hold: maxBatchSize as it is now (what the policies read). */
  get maxRows(): number {
    return this.#limits.maxBatchSize;
  }

  /** Calls joined (positive) or left (negative). Sizes are summed as floats: an empty lane's rows are exactly 0. */
  count(items: number, rows: number): void {
    this.#items += items;
    this.#rows = this.#items === 0 ? 0 : this.#rows + rows;
  }

  queueFor(priority: number): CallQueue<I, O, QueuedHandle<O>> {
    if (priority === this.#lastPriority) return this.#lastQueue as CallQueue<I, O, QueuedHandle<O>>;
    let entry = this.#queues.find((q) => q.priority === priority);
    if (entry === undefined) {
      entry = { priority, queue: new CallQueue<I, O, QueuedHandle<O>>(this.#limits) };
      this.#queues.push(entry);
      this.#queues.sort((x, y) => y.priority - x.priority);
    }
    this.#lastPriority = priority;
    this.#lastQueue = entry.queue;
    return entry.queue;
  }

  /** Arrival of the oldest live call, whatever its priority: the delay window counts from it. */
  get oldestArrival(): number {
    let oldest = Number.POSITIVE_INFINITY;
    for (const { queue } of this.#queues) {
      if (queue.skipRemoved()) {
        const arrival = queue.headArrival();
        if (arrival < oldest) oldest = arrival;
      }
    }
    return oldest;
  }

  /** Priority of the most urgent live call; -Infinity when empty. */
  get topPriority(): number {
    for (const { priority, queue } of this.#queues) if (queue.skipRemoved()) return priority;
    return Number.NEGATIVE_INFINITY;
  }

  /** The queue whose head goes next, or undefined when the lane is empty. */
  headQueue(): CallQueue<I, O, QueuedHandle<O>> | undefined {
    for (const { queue } of this.#queues) if (queue.skipRemoved()) return queue;
    return undefined;
  }

  /** Rows of the call that goes next; 0 when the lane is empty. */
  headRows(): number {
    return this.headQueue()?.headRows() ?? 0;
  }

  /** Fills `batch` up to `maxRows`, highest priority first; stops at the first call that does not fit. */
  take(maxRows: number, started: number, batch: BatchBuilder<I, O, QueuedHandle<O>>, waits: WaitSink): void {
    for (const { queue } of this.#queues) {
      if (!queue.skipRemoved()) continue;
      if (queue.takeBatch(maxRows, started, batch, waits)) return;
    }
  }

  /** Every queue holding a live call at its head, until none does; for destroy(). */
  *drain(): Generator<CallQueue<I, O, QueuedHandle<O>>> {
    for (const { queue } of this.#queues) {
      while (queue.skipRemoved()) yield queue;
    }
  }
}
