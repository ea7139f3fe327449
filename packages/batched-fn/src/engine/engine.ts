import { ClosedError, failureKey } from '../errors.js';
import type { CallOptions, CloseOptions, RuntimeOptions } from '../options.js';
import { CostModel } from '../policy/cost-model.js';
import { Overlap } from '../policy/overlap.js';
import { Traffic } from '../policy/traffic.js';
import type { Resolve, WaitSink } from '../queue.js';
import type { BatchedFnSettings, BatchedFnStats } from '../stats.js';
import { describeValue, expectDuration } from '../validate.js';
import type { CallHandle } from './call-handle.js';
import { type CallCounter, Intake, type IntakeOptions, type Refusal } from './intake.js';
import { LaneSet } from './lane-set.js';
import { Lifecycle } from './lifecycle.js';
import { Pump } from './pump.js';
import { SequenceGate } from './sequence-gate.js';
import type { Runner } from './runner.js';
import type { RunningBatch } from './running-batch.js';
import { LiveSettings, type SettingsInit } from './settings.js';

function validateCloseOptions(options: CloseOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`Expected close options to be an object, got ${describeValue(options)}`);
  }
  if (options.timeout !== undefined) expectDuration('timeout', options.timeout);
}

export interface EngineOptions<I> extends SettingsInit, IntakeOptions<I> {
  /** What destroy() fails everything with when given no reason. */
  destroyedMessage: string;
}

/** What the engine counts: every call and refusal (the intake), and each call's queue wait (the pump). */
export interface EngineStats extends CallCounter {
  readonly wait: WaitSink;
}

/** What a runner may use of its engine. */
export interface EngineLink<I, O> {
  /** The tunables as they are now. */
  readonly settings: LiveSettings;
  /** The handler's learned cost curve: the runner teaches it, `maxDelay: 'auto'` reads it. */
  readonly cost: CostModel;
  /** Whether batches running at once share a device: the runner reports each batch's run, `'auto'` reads it. */
  readonly overlap: Overlap;
  /**
   * Arrivals and settled batches, as `maxDelay: 'auto'` reads them. batchedFn's runner reports each
   * settled batch's rows; a stream's sequences end one by one, and its runner reports none.
   */
  readonly traffic: Traffic;
  /** A batch (or group) is over and its slot free: pump again, and finish a close() once idle. */
  settled(): void;
  /** A step boundary: up to `maxRows` waiting calls join a running group. */
  join(maxRows: number): RunningBatch<I, O> | undefined;
  /** Calls waiting in the queue now. */
  readonly waiting: number;
}

/**
 * One queue and policy that form batches, and a runner that runs them. Its
 * state lives in its modules, each the only writer of its own fields:
 *
 * - `Intake`: a call's checks, its cancel handle, its place in the queue;
 * - `LaneSet`: the queue (lanes by key, queues by priority) and its totals;
 * - `Pump`: when a lane's head goes, and as what batch;
 * - the `Runner`: where batches run and how callers are settled (`Settle`
 *   for batchedFn; running groups that take joiners for batchedStream);
 * - `LiveSettings`: the tunables, the one copy every reader reads;
 * - `Lifecycle`: open, closing, destroyed.
 *
 * The narrow API: `submit` (or `enqueue` for a front with its own call
 * object), `configure`, `close`, `destroy`, `ready`, `settings` and the queue's
 * figures; batches are reported by the runner (`onBatch`, `onStep`, the
 * diagnostics channel).
 */
export class Engine<I, O> {
  readonly #settings: LiveSettings;
  readonly #cost = new CostModel();
  readonly #overlap = new Overlap();
  readonly #lanes: LaneSet<I, O>;
  readonly #life: Lifecycle;
  readonly #runner: Runner<I, O>;
  readonly #pump: Pump<I, O>;
  readonly #intake: Intake<I, O>;
  readonly #gate: SequenceGate<I, O> | undefined;
  readonly #destroyedMessage: string;
  #closed: Promise<void> | undefined;

  constructor(options: EngineOptions<I>, stats: EngineStats, makeRunner: (link: EngineLink<I, O>) => Runner<I, O>) {
    const keyed = options.batchKey !== undefined || options.affinity !== undefined;
    const traffic = new Traffic(this.#cost, { lanes: keyed ? 'keyed' : 'one' });
    this.#destroyedMessage = options.destroyedMessage;
    this.#settings = new LiveSettings(options, this.#cost, traffic, this.#overlap);
    this.#lanes = new LaneSet<I, O>(keyed, this.#settings);
    const gate = options.sequenceKey === undefined ? undefined : new SequenceGate<I, O>();
    this.#gate = gate;
    // A parked call always has its sequence's current call queued or running ahead of it.
    this.#life = new Lifecycle(() => this.#lanes.items === 0 && this.#runner.size === 0);
    const lanes = this.#lanes;
    this.#runner = makeRunner({
      settings: this.#settings,
      cost: this.#cost,
      overlap: this.#overlap,
      traffic,
      settled: () => {
        this.#life.checkIdle();
        this.#pump.run('completion');
      },
      join: (maxRows) => this.#pump.join(maxRows),
      get waiting() {
        return lanes.items;
      },
    });
    this.#pump = new Pump<I, O>(this.#lanes, this.#settings, this.#runner, this.#life, stats.wait, traffic, gate);
    this.#intake = new Intake<I, O>(
      this.#lanes,
      this.#settings,
      this.#pump,
      this.#runner,
      this.#runner.shedding,
      this.#life,
      stats,
      options,
      gate,
      (resolve) => this.#pump.left(resolve),
    );
    this.#runner.onCapacity(() => this.#pump.run('completion'));
  }

  /** One call, answered by a promise that settles exactly once and never throws synchronously. */
  submit(input: I, options?: CallOptions): Promise<O> {
    return this.#intake.submit(input, options);
  }

  /**
   * For a front with its own call object (batchedStream's sequences): queues `input`, to be settled
   * through `resolve`; undefined once queued, else the refusal, for the front to count and answer.
   */
  enqueue(
    input: I,
    resolve: Resolve<O>,
    options: CallOptions | undefined,
    handle: CallHandle<Resolve<O>> | undefined,
  ): Refusal | undefined {
    return this.#intake.enqueue(input, resolve, options, handle);
  }

  /** A cancel handle on the engine's cancel path, for a call the front can cancel by other means. */
  handle(): CallHandle<Resolve<O>> {
    return this.#intake.handle();
  }

  ready(): Promise<void> {
    if (this.#life.closing) return Promise.reject(new ClosedError());
    return this.#runner.ready();
  }

  /**
   * Stops intake and drains. With `timeout`, whatever is still queued or running when it is up
   * is destroyed (ERR_CLOSED), so a hung handler cannot hold shutdown forever.
   */
  close(options?: CloseOptions): Promise<void> {
    if (options !== undefined) {
      try {
        validateCloseOptions(options);
      } catch (error) {
        return Promise.reject(error);
      }
    }
    if (this.#closed === undefined) {
      // Queued calls go now, without waiting for their window ('close').
      this.#pump.schedule();
      this.#closed = this.#life.drain().then(() => this.#runner.close());
    }
    const limit = options?.timeout;
    if (limit !== undefined && !this.#life.destroyed) {
      const timer = setTimeout(
        () =>
          this.destroy(
            new ClosedError(`close() timed out after ${limit} ms; calls still queued or running were rejected`),
          ),
        limit,
      );
      const clear = (): void => clearTimeout(timer);
      this.#closed.then(clear, clear);
    }
    return this.#closed;
  }

  /** Fails everything queued or running at once (with `reason`, or ERR_CLOSED) and stops the runner. */
  destroy(reason?: unknown): void {
    if (!this.#life.destroy()) return;
    this.#closed ??= Promise.resolve();
    this.#pump.stop();
    const error = reason ?? new ClosedError(this.#destroyedMessage);
    const key = reason === undefined ? 'ERR_CLOSED' : failureKey(reason);
    const runner = this.#runner;
    const each = (_input: I, resolve: Resolve<O>, handle: CallHandle<Resolve<O>> | undefined): void => {
      handle?.dispose();
      runner.fail(resolve, error, key);
    };
    this.#lanes.drain(each);
    this.#gate?.drain(each);
    // Running batches are released too: a late result finds its batch gone and is neither
    // delivered nor reported, and a handler that never settles holds nothing.
    runner.releaseAll(error, key);
    runner.destroy(error);
  }

  /** Changes tunables while running; validated like the constructor's options, effective from the next batch. */
  configure(options: RuntimeOptions): void {
    this.#settings.configure(options);
    this.#pump.rejudge();
  }

  get settings(): BatchedFnSettings {
    return this.#settings.snapshot();
  }

  /** Calls waiting in the queue. */
  get queued(): number {
    return this.#lanes.items + (this.#gate?.parked ?? 0);
  }

  /** Their rows. */
  get queuedRows(): number {
    return this.#lanes.rows;
  }

  /** The learned cost curve, once it is confident, and what a second batch slot gains. */
  get costModel(): BatchedFnStats['costModel'] {
    const cost = this.#cost;
    return cost.confident
      ? { fixedMs: cost.a, perRowMs: cost.b, samples: cost.samples, slotEfficiency: this.#overlap.efficiency }
      : undefined;
  }
}
