import type { BatchBuilder, CallQueue, Resolve, WaitSink } from '../queue.js';
import type { CallPlace } from './call-handle.js';
import { Lane, type QueuedHandle } from './lane.js';

/** A cancellable call waiting at `seq`: cancelling it takes it out of the queue (and the totals). */
class Queued<I, O> implements CallPlace<Resolve<O>> {
  readonly #set: LaneSet<I, O>;
  readonly #lane: Lane<I, O>;
  readonly #queue: CallQueue<I, O, QueuedHandle<O>>;
  readonly #seq: number;

  constructor(set: LaneSet<I, O>, lane: Lane<I, O>, queue: CallQueue<I, O, QueuedHandle<O>>, seq: number) {
    this.#set = set;
    this.#lane = lane;
    this.#queue = queue;
    this.#seq = seq;
  }

  take(): Resolve<O> | undefined {
    return this.#set.remove(this.#lane, this.#queue, this.#seq);
  }
}

/**
 * The engine's queue: every lane and the totals, in one owner. Calls enter
 * with `push`, leave with `take`, `remove` or `shiftHead`, and the totals
 * (items and rows, per lane and overall) change only here.
 */
export class LaneSet<I, O> {
  readonly #limits: { readonly maxBatchSize: number };
  readonly #default: Lane<I, O>;
  /** The default lane's priority-0 queue, where almost every call goes. */
  readonly #defaultQueue: CallQueue<I, O, QueuedHandle<O>>;
  /** Lanes by key, only with `batchKey`; a lane leaves the map when it empties. */
  readonly #keyed: Map<unknown, Lane<I, O>> | undefined;
  #items = 0;
  #rows = 0;

  constructor(keyed: boolean, limits: { readonly maxBatchSize: number }) {
    this.#limits = limits;
    this.#default = new Lane<I, O>(undefined, limits);
    this.#defaultQueue = this.#default.queueFor(0);
    this.#keyed = keyed ? new Map() : undefined;
  }

  /** Calls waiting (live ones; removed calls are not counted). */
  get items(): number {
    return this.#items;
  }

  /** Their rows. */
  get rows(): number {
    return this.#rows;
  }

  get defaultLane(): Lane<I, O> {
    return this.#default;
  }

  get defaultQueue(): CallQueue<I, O, QueuedHandle<O>> {
    return this.#defaultQueue;
  }

  /** With `batchKey`: the keyed lanes (each non-empty); undefined without keys. */
  get keyed(): Iterable<Lane<I, O>> | undefined {
    return this.#keyed?.values();
  }

  /** The lane of `key` (a batch key, with `affinity` joined with the call's `worker`). */
  laneFor(key: unknown, worker?: number): Lane<I, O> {
    if (this.#keyed === undefined) return this.#default;
    let lane = this.#keyed.get(key);
    if (lane === undefined) {
      lane = new Lane<I, O>(key, this.#limits, worker);
      this.#keyed.set(key, lane);
    }
    return lane;
  }

  push(
    lane: Lane<I, O>,
    queue: CallQueue<I, O, QueuedHandle<O>>,
    input: I,
    resolve: Resolve<O>,
    arrival: number,
    rows: number,
    handle: QueuedHandle<O> | undefined,
  ): void {
    const seq = queue.push(input, resolve, arrival, rows, handle);
    lane.count(1, rows);
    this.#items++;
    this.#rows += rows;
    if (handle !== undefined) handle.moveTo(new Queued(this, lane, queue, seq));
  }

  /** Moves calls from the lane's head into `batch`, up to `maxRows`. */
  take(
    lane: Lane<I, O>,
    maxRows: number,
    started: number,
    batch: BatchBuilder<I, O, QueuedHandle<O>>,
    waits: WaitSink,
  ): void {
    const items = batch.inputs.length;
    const rows = batch.rows;
    lane.take(maxRows, started, batch, waits);
    this.#leave(lane, batch.inputs.length - items, batch.rows - rows);
  }

  /** Takes a queued call out (abort, timeout); returns its resolver, or undefined if it already left. */
  remove(lane: Lane<I, O>, queue: CallQueue<I, O, QueuedHandle<O>>, seq: number): Resolve<O> | undefined {
    const rows = queue.rowsAt(seq);
    const resolve = queue.remove(seq);
    if (resolve !== undefined) this.#leave(lane, 1, rows);
    return resolve;
  }

  /** Takes the lane's head call out, whatever it is; for refusing it. */
  shiftHead(lane: Lane<I, O>): { resolve: Resolve<O>; rows: number; handle: QueuedHandle<O> | undefined } | undefined {
    const queue = lane.headQueue();
    if (queue === undefined) return undefined;
    const taken = { resolve: queue.headResolver(), rows: queue.headRows(), handle: queue.headHandle() };
    queue.shift();
    this.#leave(lane, 1, taken.rows);
    return taken;
  }

  /** Empties every lane, handing each call to `each`; for destroy(). */
  drain(each: (input: I, resolve: Resolve<O>, handle: QueuedHandle<O> | undefined) => void): void {
    const lanes = this.#keyed === undefined ? [this.#default] : [this.#default, ...this.#keyed.values()];
    for (const lane of lanes) {
      for (const queue of lane.drain()) {
        const input = queue.headInput();
        const resolve = queue.headResolver();
        const handle = queue.headHandle();
        queue.shift();
        each(input, resolve, handle);
      }
      lane.count(-lane.items, -lane.rows);
    }
    this.#keyed?.clear();
    this.#items = 0;
    this.#rows = 0;
  }

  /** Sizes are summed as floats: once the queue is empty, its rows are exactly 0. */
  #leave(lane: Lane<I, O>, items: number, rows: number): void {
    lane.count(-items, -rows);
    this.#items -= items;
    this.#rows = this.#items === 0 ? 0 : this.#rows - rows;
    if (lane.items === 0 && lane !== this.#default) this.#keyed?.delete(lane.key);
  }
}
