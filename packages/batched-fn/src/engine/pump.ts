import { ItemTooLargeError } from '../errors.js';
import { LoopYield } from '../loop-yield.js';
import type { Traffic } from '../policy/traffic.js';
import type { PumpTrigger } from '../policy/types.js';
import { WakeTimer } from '../wake-timer.js';
import { choose, type Go, judge } from './choice.js';
import type { Lane } from './lane.js';
import type { LaneSet } from './lane-set.js';
import type { Lifecycle } from './lifecycle.js';
import type { Resolve, WaitSink } from '../queue.js';
import type { Runner } from './runner.js';
import { RunningBatch } from './running-batch.js';
import type { Release, SequenceGate } from './sequence-gate.js';
import type { LiveSettings } from './settings.js';

export const now = (): number => performance.now();

/**
 * The pump is scheduled as a reaction on a settled promise rather than with
 * `queueMicrotask`, which in Node wraps every callback in an async resource
 * and costs several times more per tick.
 */
const settled = Promise.resolve();

/**
 * WHEN and WHAT: turns queued calls into batches. The pump runs from a
 * microtask (a call arrived), the wake timer (a window ends) or a batch
 * settling, and never inside a caller's stack. While the runner has a free
 * slot it asks the rules whether a lane's head should go now, takes that
 * batch from the queue and hands it to the runner. A running stream group
 * takes more from the queue at each step boundary (`join`).
 */
export class Pump<I, O> {
  readonly #lanes: LaneSet<I, O>;
  readonly #settings: LiveSettings;
  readonly #runner: Runner<I, O>;
  readonly #life: Lifecycle;
  readonly #waits: WaitSink;
  readonly #traffic: Traffic;
  #scheduled = false;
  /** Clock reading shared by every call until the scheduled pump runs (one reading per tick). */
  #tickTime = 0;
  /** Rows that arrived since the last pump, for the arrival rate. */
  #arrivedRows = 0;
  #inPump = false;
  readonly #gate: SequenceGate<I, O> | undefined;
  readonly #canRun: ((worker: number) => boolean) | undefined;
  readonly #wake = new WakeTimer(() => this.run('timer'));
  readonly #loopYield = new LoopYield();
  #yielding: ReturnType<typeof setImmediate> | undefined = undefined;

  /** `waits` records each call's queue wait as it leaves the queue. */
  constructor(
    lanes: LaneSet<I, O>,
    settings: LiveSettings,
    runner: Runner<I, O>,
    life: Lifecycle,
    waits: WaitSink,
    traffic: Traffic,
    gate: SequenceGate<I, O> | undefined,
  ) {
    this.#gate = gate;
    this.#canRun = runner.hasCapacityOn === undefined ? undefined : (worker) => runner.hasCapacityOn?.(worker) === true;
    this.#lanes = lanes;
    this.#settings = settings;
    this.#runner = runner;
    this.#life = life;
    this.#waits = waits;
    this.#traffic = traffic;
  }

  /**
   * A call of `rows` is about to be queued: makes sure a pump is scheduled and returns the clock
   * reading it arrives at. Reading the clock costs about as much as the rest of a call, so calls
   * made before the scheduled pump runs share one reading. They arrive in the same run of
   * microtasks, so their true arrival times differ by less than the work queued ahead of the pump.
   */
  arrive(rows: number): number {
    if (!this.#scheduled) this.schedule();
    this.#arrivedRows += rows;
    return this.#tickTime;
  }

  /** The handler never runs inside a caller's stack: dispatch always starts from a microtask. */
  schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    this.#tickTime = now();
    void settled.then(this.#pumpOnArrival);
  }

  /** The rules changed (configure): a shorter delay or a smaller batch may make the queue due right now. */
  rejudge(): void {
    this.#wake.disarm();
    this.schedule();
  }

  /** destroy(): no timer or yield may call back. */
  stop(): void {
    this.#wake.disarm();
    if (this.#yielding !== undefined) clearImmediate(this.#yielding);
    this.#yielding = undefined;
  }

  readonly #pumpOnArrival = (): void => {
    this.#scheduled = false;
    if (this.#arrivedRows > 0) {
      this.#traffic.arrived(this.#arrivedRows, this.#tickTime);
      this.#arrivedRows = 0;
    }
    this.run('arrival');
  };

  readonly #pumpAfterYield = (): void => {
    this.#yielding = undefined;
    this.run('completion');
  };

  run(trigger: PumpTrigger): void {
    if (this.#inPump || this.#life.destroyed) return;
    this.#inPump = true;
    try {
      const lanes = this.#lanes;
      const settings = this.#settings;
      const runner = this.#runner;
      while (lanes.items > 0 && runner.size < settings.concurrency && runner.hasCapacity()) {
        // One clock reading serves the yield check, the policy and the batch's start time.
        const t = now();
        if (this.#loopYield.due(t)) {
          this.#yielding ??= setImmediate(this.#pumpAfterYield);
          return;
        }
        const keyed = lanes.keyed;
        const verdict =
          keyed === undefined
            ? judge(lanes.defaultLane, t, trigger, settings, this.#life.closing, runner.size)
            : choose(keyed, t, trigger, settings, this.#life.closing, runner.size, this.#canRun);
        if (!verdict.go) {
          this.#wake.arm(verdict.until);
          return;
        }
        this.#dispatch(verdict, t);
      }
      // Nothing left to wait for: a batch finishing will pump again.
      this.#wake.disarm();
      this.#life.checkIdle();
    } finally {
      this.#inPump = false;
    }
  }

  #dispatch(go: Go<I, O>, started: number): void {
    const { lane, reason } = go;
    this.#rejectOversized(lane);
    // A batch always takes at least the head call (which fits in maxBatchSize once oversized calls are gone).
    const maxRows = Math.max(Math.min(go.maxRows, this.#settings.maxBatchSize), lane.headRows());
    const batch = new RunningBatch<I, O>(reason, started);
    this.#lanes.take(lane, maxRows, started, batch, this.#waits);
    if (lane.worker !== undefined) batch.pin(lane.worker);
    const gate = this.#gate;
    if (gate !== undefined) {
      // Its sequences stay held until the batch has ended, however it ends.
      const keys = gate.dispatched(batch.resolvers);
      if (keys !== undefined) batch.onEnded(() => this.#releaseAll(keys));
    }
    this.#runner.run(batch);
  }

  /**
   * A step boundary of a running group: up to `maxRows` of the default lane's calls join it now,
   * taken as a batch (so a joiner cancelled later leaves through its slot, like any running call).
   */
  join(maxRows: number): RunningBatch<I, O> | undefined {
    const lanes = this.#lanes;
    if (maxRows <= 0 || lanes.items === 0) return undefined;
    const started = now();
    const batch = new RunningBatch<I, O>('join', started);
    lanes.take(lanes.defaultLane, maxRows, started, batch, this.#waits);
    return batch;
  }

  /** A batch holding these sequences ended: each one's next call joins its lane, and the pump looks again. */
  #releaseAll(keys: readonly unknown[]): void {
    const gate = this.#gate as SequenceGate<I, O>;
    for (const key of keys) gate.release(key, this.#requeue);
    this.schedule();
  }

  readonly #requeue: Release<I, O> = (input, resolve, arrival, rows, handle, laneKey, worker, priority) => {
    const lane = this.#lanes.laneFor(laneKey, worker);
    this.#lanes.push(lane, lane.queueFor(priority), input, resolve, arrival, rows, handle);
  };

  /** A sequence's call left the queue without running (cancelled, refused): the next one of its sequence joins. */
  left(resolve: Resolve<O>): void {
    const gate = this.#gate;
    if (gate === undefined) return;
    gate.left(resolve, this.#requeue);
    this.schedule();
  }

  /** Only reachable after configure() lowered maxBatchSize below calls already queued. */
  #rejectOversized(lane: Lane<I, O>): void {
    const max = this.#settings.maxBatchSize;
    while (lane.headRows() > max) {
      const head = this.#lanes.shiftHead(lane);
      if (head === undefined) return;
      head.handle?.dispose();
      this.left(head.resolve);
      this.#runner.fail(head.resolve, new ItemTooLargeError(head.rows, max), 'ERR_ITEM_TOO_LARGE');
    }
  }
}
