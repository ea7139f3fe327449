import type { CallHandle } from './call-handle.js';
import { Lane } from './lane.js';
import type { BatchBuilder, CallQueue, Resolve } from './queue.js';

/**
 * Every lane of a batcher and the queue's totals, in one owner: calls enter
 * with `push`, leave with `take`, `remove` or `shiftHead`, and the totals
 * (items and rows, per lane and overall) change only here.
 */
export class LaneSet<I, O> {
  readonly defaultLane = new Lane<I, O>(undefined);
  /** The default lane's priority-0 queue, where almost every call goes. */
  readonly defaultQueue = this.defaultLane.queueFor(0);
  /** Lanes by key, only with `batchKey`; a lane leaves the map when it empties. */
  readonly keyed: Map<unknown, Lane<I, O>> | undefined;
  items = 0;
  rows = 0;

  constructor(keyed: boolean) {
    this.keyed = keyed ? new Map() : undefined;
  }

  laneFor(key: unknown): Lane<I, O> {
    if (this.keyed === undefined) return this.defaultLane;
    let lane = this.keyed.get(key);
    if (lane === undefined) {
      lane = new Lane<I, O>(key);
      this.keyed.set(key, lane);
    }
    return lane;
  }

  push(lane: Lane<I, O>, queue: CallQueue<I, O>, input: I, resolve: Resolve<O>, arrival: number, rows: number, handle: CallHandle<I, O> | undefined): void {
    const seq = queue.push(input, resolve, arrival, rows, handle);
    lane.items++;
    lane.rows += rows;
    this.items++;
    this.rows += rows;
    if (handle !== undefined) handle.place = { state: 'queued', lane, queue, seq };
  }

  /** Moves calls from the lane's head into `batch`, up to `maxRows`. */
  take(lane: Lane<I, O>, maxRows: number, started: number, batch: BatchBuilder<I, O>, waits: { record(value: number): void }): void {
    const items = batch.inputs.length;
    const rows = batch.rows;
    lane.take(maxRows, started, batch, waits);
    this.#leave(lane, batch.inputs.length - items, batch.rows - rows);
  }

  /** Takes a queued call out (abort, timeout); returns its resolver, or undefined if it already left. */
  remove(lane: Lane<I, O>, queue: CallQueue<I, O>, seq: number): Resolve<O> | undefined {
    const rows = queue.rowsAt(seq);
    const resolve = queue.remove(seq);
    if (resolve !== undefined) this.#leave(lane, 1, rows);
    return resolve;
  }

  /** Takes the lane's head call out, whatever it is; for refusing it. */
  shiftHead(lane: Lane<I, O>): { resolve: Resolve<O>; rows: number; handle: CallHandle<I, O> | undefined } | undefined {
    const queue = lane.headQueue();
    if (queue === undefined) return undefined;
    const taken = { resolve: queue.headResolver(), rows: queue.headRows(), handle: queue.headHandle() };
    queue.shift();
    this.#leave(lane, 1, taken.rows);
    return taken;
  }

  /** Empties every lane, handing each call to `each`; for destroy(). */
  drain(each: (resolve: Resolve<O>, handle: CallHandle<I, O> | undefined) => void): void {
    for (const lane of this.all()) {
      for (const queue of lane.drain()) {
        const resolve = queue.headResolver();
        const handle = queue.headHandle();
        queue.shift();
        each(resolve, handle);
      }
      lane.items = 0;
      lane.rows = 0;
    }
    this.keyed?.clear();
    this.items = 0;
    this.rows = 0;
  }

  all(): Lane<I, O>[] {
    return this.keyed === undefined ? [this.defaultLane] : [this.defaultLane, ...this.keyed.values()];
  }

  /** Sizes are summed as floats: once a lane (or the queue) is empty, its rows are exactly 0. */
  #leave(lane: Lane<I, O>, items: number, rows: number): void {
    lane.items -= items;
    lane.rows -= rows;
    this.items -= items;
    this.rows -= rows;
    if (lane.items === 0) {
      lane.rows = 0;
      if (lane !== this.defaultLane) this.keyed?.delete(lane.key);
    }
    if (this.items === 0) this.rows = 0;
  }
}
