import type { Resolve } from '../queue.js';
import type { CallPlace } from './call-handle.js';
import type { QueuedHandle } from './lane.js';

/** A call parked behind its sequence's current one, with what it needs to join its lane later. */
interface Parked<I, O> {
  input: I;
  resolve: Resolve<O> | undefined;
  arrival: number;
  rows: number;
  handle: QueuedHandle<O> | undefined;
  laneKey: unknown;
  worker: number | undefined;
  priority: number;
}

/** A parked call that can be cancelled: taking it leaves an empty record, skipped on release. */
class InPark<I, O> implements CallPlace<Resolve<O>> {
  readonly #gate: SequenceGate<I, O>;
  readonly #record: Parked<I, O>;

  constructor(gate: SequenceGate<I, O>, record: Parked<I, O>) {
    this.#gate = gate;
    this.#record = record;
  }

  take(): Resolve<O> | undefined {
    return this.#gate.unpark(this.#record);
  }
}

/** What a released call needs to be queued: the engine pushes it into its lane. */
export type Release<I, O> = (
  input: I,
  resolve: Resolve<O>,
  arrival: number,
  rows: number,
  handle: QueuedHandle<O> | undefined,
  laneKey: unknown,
  worker: number | undefined,
  priority: number,
) => void;

/**
 * `sequenceKey`: the calls of one sequence run one at a time, in arrival order. A key is held from
 * the moment its current call enters a lane until the batch that ran it has ended (or the call left
 * the queue before running); later calls of the key are parked here, in order, outside the lanes.
 * So a lane never holds two calls of one sequence: a batch never does either, and the policies
 * (full, preferred sizes, the window) read lanes whose every call could go now. The next call of a
 * key joins its lane when the key is released, keeping its arrival time, so its queue wait and the
 * window count from when it really came: it is overdue at once and goes in the next batch.
 *
 * Why the wait for the end of the batch, not only one call per batch: a sequence's state is
 * changed by each call, so call n + 1 must not run until call n has (with `concurrency` > 1, two
 * batches run at once).
 */
export class SequenceGate<I, O> {
  /** Held keys, each with the calls parked behind its current one (FIFO, from `head`). */
  readonly #held = new Map<unknown, { queue: Parked<I, O>[]; head: number }>();
  /** The key of every current call still in a lane, by its resolver (each call's is its own). */
  readonly #queued = new Map<Resolve<O>, unknown>();
  #parked = 0;

  /** Calls parked behind their sequence's current call. */
  get parked(): number {
    return this.#parked;
  }

  /** Sequences with a call queued or running. */
  get held(): number {
    return this.#held.size;
  }

  /** True when `key` is free: it is now held by the call about to be queued, which must be `entered`. */
  acquire(key: unknown): boolean {
    if (this.#held.has(key)) return false;
    this.#held.set(key, { queue: [], head: 0 });
    return true;
  }

  /** The call holding `key` entered a lane. */
  entered(resolve: Resolve<O>, key: unknown): void {
    this.#queued.set(resolve, key);
  }

  /** Parks a call behind `key`'s current one; returns where it waits, for its cancel handle. */
  park(
    key: unknown,
    input: I,
    resolve: Resolve<O>,
    arrival: number,
    rows: number,
    handle: QueuedHandle<O> | undefined,
    laneKey: unknown,
    worker: number | undefined,
    priority: number,
  ): CallPlace<Resolve<O>> {
    const record: Parked<I, O> = { input, resolve, arrival, rows, handle, laneKey, worker, priority };
    (this.#held.get(key) as { queue: Parked<I, O>[] }).queue.push(record);
    this.#parked++;
    return new InPark(this, record);
  }

  /** A parked call is cancelled: it leaves its record, which release skips. */
  unpark(record: Parked<I, O>): Resolve<O> | undefined {
    const resolve = record.resolve;
    if (resolve === undefined) return undefined;
    record.resolve = undefined;
    record.handle = undefined;
    this.#parked--;
    return resolve;
  }

  /**
   * Calls leave the lanes for a batch: returns their keys (the batch releases them when it ends),
   * or undefined when none of them has one.
   */
  dispatched(resolvers: readonly (Resolve<O> | undefined)[]): unknown[] | undefined {
    if (this.#queued.size === 0) return undefined;
    const keys: unknown[] = [];
    for (const resolve of resolvers) {
      if (resolve === undefined || !this.#queued.has(resolve)) continue;
      keys.push(this.#queued.get(resolve));
      this.#queued.delete(resolve);
    }
    return keys.length === 0 ? undefined : keys;
  }

  /** A call left a lane without running (cancelled, refused): its key goes to the next parked call. */
  left(resolve: Resolve<O>, release: Release<I, O>): void {
    if (!this.#queued.has(resolve)) return;
    const key = this.#queued.get(resolve);
    this.#queued.delete(resolve);
    this.release(key, release);
  }

  /**
   * `key`'s current call is over: its next live parked call is handed to `release` (and holds the
   * key from now on); with none, the key is free.
   */
  release(key: unknown, release: Release<I, O>): void {
    const entry = this.#held.get(key);
    if (entry === undefined) return;
    const { queue } = entry;
    while (entry.head < queue.length) {
      const next = queue[entry.head] as Parked<I, O>;
      queue[entry.head++] = undefined as unknown as Parked<I, O>;
      const resolve = next.resolve;
      if (resolve === undefined) continue;
      this.#parked--;
      if (entry.head === queue.length) {
        queue.length = 0;
        entry.head = 0;
      }
      this.#queued.set(resolve, key);
      release(next.input, resolve, next.arrival, next.rows, next.handle, next.laneKey, next.worker, next.priority);
      return;
    }
    this.#held.delete(key);
  }

  /** destroy(): every parked call, handed to `each`; nothing is held afterwards. */
  drain(each: (input: I, resolve: Resolve<O>, handle: QueuedHandle<O> | undefined) => void): void {
    for (const { queue, head } of this.#held.values()) {
      for (let i = head; i < queue.length; i++) {
        const record = queue[i] as Parked<I, O>;
        if (record.resolve !== undefined) each(record.input, record.resolve, record.handle);
      }
    }
    this.#held.clear();
    this.#queued.clear();
    this.#parked = 0;
  }
}
