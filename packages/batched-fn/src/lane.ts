import type { LaneView } from './policy/types.js';
import { type BatchBuilder, CallQueue } from './queue.js';

/**
 * The calls that may share a batch: all of them, or with `batchKey` those
 * with one key. Inside a lane, a queue per priority: higher priorities are
 * taken first, FIFO within a priority.
 */
export class Lane<I, O> implements LaneView {
  readonly key: unknown;
  /** Live calls and their rows; tombstones in the queues are not counted. */
  items = 0;
  rows = 0;
  /** Kept equal to the batcher's maxBatchSize, for the policies. */
  maxRows = 0;
  /** Queues by descending priority. Almost always one, for priority 0. */
  readonly #queues: { priority: number; queue: CallQueue<I, O> }[] = [];
  #lastPriority = Number.NaN;
  #lastQueue: CallQueue<I, O> | undefined;

  constructor(key: unknown) {
    this.key = key;
  }

  queueFor(priority: number): CallQueue<I, O> {
    if (priority === this.#lastPriority) return this.#lastQueue as CallQueue<I, O>;
    let entry = this.#queues.find((q) => q.priority === priority);
    if (entry === undefined) {
      entry = { priority, queue: new CallQueue<I, O>(priority === 0 ? 256 : 16) };
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
  headQueue(): CallQueue<I, O> | undefined {
    for (const { queue } of this.#queues) if (queue.skipRemoved()) return queue;
    return undefined;
  }

  /** Fills `batch` up to `maxRows`, highest priority first; stops at the first call that does not fit. */
  take(maxRows: number, started: number, batch: BatchBuilder<I, O>, waits: { record(value: number): void }): void {
    for (const { queue } of this.#queues) {
      if (!queue.skipRemoved()) continue;
      if (queue.takeBatch(maxRows, started, batch, waits)) return;
    }
  }

  /** Every live call, for destroy(). */
  *drain(): Generator<CallQueue<I, O>> {
    for (const { queue } of this.#queues) {
      while (queue.skipRemoved()) yield queue;
    }
  }
}
