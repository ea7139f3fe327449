import { deserializeError } from '../error-codec.js';
import { BatchSizeMismatchError, BatchTimeoutError } from '../errors.js';
import type { Stepped } from '../executor/wire.js';
import type { WorkerLease } from '../executor/worker-lease.js';
import { cloneError, messageOf } from '../executor/uncloneable.js';
import type { Sequence } from './sequence.js';
import { DONE, HAS_VALUE } from './step-output.js';

const NOOP = (): void => {};

/**
 * Steps the thread may run ahead of the steps handed out here. The thread steps on its own while it
 * has credit, so waking either thread (tens to hundreds of microseconds on small machines; 300 µs
 * a round trip on our 2-core machine when idle) overlaps its steps instead of adding to each.
 * Fast steps need many: an identity step of 16 sequences took 60 µs a step with 8, 35-38 with 16,
 * 28-35 with 32 to 256. Only a main thread that falls behind lets the thread run this far ahead;
 * then a cancelled stream is stepped at most this many more times, and buffered values wait.
 */
export const STEPS_AHEAD = 64;

/** What a thread run needs from its runner (Groups): the queue, the live settings, the stats. */
export interface RunHost<I, S, T> {
  readonly continuous: boolean;
  readonly batchTimeout: number | undefined;
  readonly maxBatchSize: number;
  readonly destroyed: boolean;
  /** Sequences waiting in the queue now: while none wait, the thread need not pause when a stream ends. */
  readonly waiting: number;
  /** Up to `room` waiting sequences, taken from the queue to join now. */
  join(room: number): Sequence<I, S, T>[];
  /** A step of `sequences` ran, taking `ms` in the thread, and handed out `values`. */
  stepped(sequences: number, ms: number, values: number): void;
  /** The group is over: its lease may go, and the pump may start another. */
  over(): void;
}

/**
 * A worker-mode group: a running batch whose sequences a thread steps on its own (the run), while
 * this side hands out each step's values, drops cancelled streams, and starts waiting sequences
 * into it at step boundaries (continuous) up to `maxBatchSize`. The group ends when no sequence is
 * left, or fails as a whole when a step does, when the thread is gone, or when the thread sends
 * nothing for `batchTimeout` while it owes a step or a start (then the thread is abandoned).
 */
export class ThreadRun<I, S, T> {
  readonly #host: RunHost<I, S, T>;
  readonly #lease: WorkerLease;
  /** The sequences the thread steps, by id, as far as this side knows (it learns of ends a step late). */
  readonly #members = new Map<number, Sequence<I, S, T>>();
  /** In a start not answered yet. */
  readonly #joining = new Set<Sequence<I, S, T>>();
  #run = -1;
  #granted = 0;
  #received = 0;
  /** What the thread was last told: pause after a step in which a stream ended (someone waits to join). */
  #joins = false;
  #watchdog: ReturnType<typeof setTimeout> | undefined = undefined;
  /** Settles when the thread has answered the run's stop (or the run failed). */
  #ended: Promise<unknown> | undefined = undefined;
  #over = false;

  constructor(host: RunHost<I, S, T>, lease: WorkerLease) {
    this.#host = host;
    this.#lease = lease;
  }

  /** Sequences stepped now that have not ended. */
  get active(): number {
    let active = 0;
    for (const s of this.#members.values()) if (!s.ended) active++;
    return active;
  }

  /** Opens the run, then starts its first sequences (a start is read after the run it joins). */
  begin(first: Sequence<I, S, T>[]): void {
    this.#joins = this.#wantsJoins();
    const { id, ended } = this.#lease.run(STEPS_AHEAD, this.#joins, (step) => this.#stepped(step));
    this.#run = id;
    this.#ended = ended;
    this.#granted = STEPS_AHEAD;
    // The run is answered only after this side stopped it: an answer before is not the thread's
    // (user code can post on its port) and leaves no way to hear the run's steps.
    ended.then(
      () => this.fail(new Error('batched-fn: the worker thread ended a stream group unasked')),
      (error: unknown) => this.fail(error),
    );
    this.#start(first);
    this.#heard();
    this.#next();
  }

  /** The group fails as a whole: every stream in it ends with `error`. */
  fail(error: unknown): void {
    if (this.#over) return;
    for (const s of this.#members.values()) s.end('error', true, error);
    for (const s of this.#joining) s.end('error', true, error);
    this.#finish();
  }

  #start(sequences: Sequence<I, S, T>[]): void {
    const live = sequences.filter((s) => !s.ended);
    if (live.length === 0) return;
    for (const s of live) this.#joining.add(s);
    let started: Promise<unknown>;
    try {
      started = this.#lease.start(
        live.map((s) => s.id),
        live.map((s) => s.input),
      );
    } catch (cause) {
      // Nothing was sent. One input that cannot be cloned (a function, a socket) must not sink
      // its neighbours: its stream ends, named by its own clone error, and the others start without it.
      const sendable: Sequence<I, S, T>[] = [];
      let unsent = 0;
      for (const s of live) {
        const error = cloneError(s.input);
        if (error === undefined) {
          sendable.push(s);
          continue;
        }
        unsent++;
        this.#joining.delete(s);
        s.end(
          'error',
          true,
          new TypeError(`This stream's input cannot be sent to a worker thread: ${messageOf(error)}`),
        );
      }
      if (unsent === 0) started = Promise.reject(cause);
      else {
        this.#start(sendable);
        return;
      }
    }
    // The thread owes this start's answer, and the watchdog may not be running: the last answer (a
    // start that failed and left the group empty) armed nothing.
    this.#owe();
    void started
      .then(
        () => {
          for (const s of live) {
            this.#joining.delete(s);
            // One cancelled meanwhile joins too, and leaves through the next drop.
            this.#members.set(s.id, s);
          }
        },
        (error: unknown) => {
          for (const s of live) {
            this.#joining.delete(s);
            s.end('error', true, error);
          }
        },
      )
      .then(() => {
        if (this.#over) return;
        this.#heard();
        this.#next();
      });
  }

  /** One step of the thread's: values out, then the boundary (drops, joins, credit). */
  #stepped(step: Stepped): void {
    if (this.#over) return;
    this.#received++;
    this.#heard();
    const { ids, values, flags, errors } = step;
    if (values === null || flags === null) {
      this.fail(new BatchSizeMismatchError(ids.length, step.received));
      return;
    }
    const failed = errors.length === 0 ? undefined : new Map<number, unknown>();
    for (const [i, error] of errors) failed?.set(i, deserializeError(error));
    const members = this.#members;
    // Whether a stream left the thread's run in this step (done, or its slot failed): then the thread
    // pauses for this side's word. Read from the step itself, whether or not that stream is still
    // wanted here (one cancelled meanwhile is not), or the thread would wait for good.
    let shrank = errors.length > 0;
    let handed = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      const flag = flags[i] as number;
      if ((flag & DONE) !== 0) shrank = true;
      const s = members.get(id);
      if (s === undefined || s.ended) continue; // dropped, or cancelled during the step: its output is dropped
      if (failed?.has(i)) {
        s.end('error', true, failed.get(i));
        members.delete(id);
        continue;
      }
      if ((flag & HAS_VALUE) !== 0) {
        s.push(values[i] as T);
        handed++;
      }
      if ((flag & DONE) !== 0) {
        s.end('done', false);
        members.delete(id);
      }
    }
    this.#host.stepped(ids.length, step.ms, handed);
    this.#next(shrank);
  }

  /**
   * A step boundary here: cancelled streams leave, waiting ones join, the thread gets credit; or
   * the group ends. After a step in which a stream ended (`shrank`), a continuous run's thread
   * waits for this side's word, sent after any joiners' start.
   */
  #next(shrank = false): void {
    // An observer (`onStep`) may have ended the group (destroy) while its step was handed out.
    if (this.#over) return;
    const members = this.#members;
    let drop: number[] | undefined;
    // Every step: the values alone, no [key, value] pair made per member.
    for (const s of members.values()) {
      if (!s.ended) continue;
      members.delete(s.id);
      drop ??= [];
      drop.push(s.id);
    }
    if (drop !== undefined) this.#lease.drop(drop).catch(NOOP);
    const host = this.#host;
    // Joiners whose input cannot be sent leave at once and give their room back: take more until
    // the room is full or nobody waits (each pass takes at least one sequence off the queue).
    while (host.continuous && !host.destroyed) {
      const room = host.maxBatchSize - members.size - this.#joining.size;
      if (room <= 0) break;
      const joiners = host.join(room);
      if (joiners.length === 0) break;
      this.#start(joiners);
    }
    if (members.size === 0 && this.#joining.size === 0) {
      this.#finish();
      return;
    }
    const joins = this.#wantsJoins();
    if (this.#granted - this.#received <= STEPS_AHEAD / 2 || shrank || joins !== this.#joins) {
      this.#granted = this.#received + STEPS_AHEAD;
      this.#joins = joins;
      this.#lease.grant(this.#run, this.#granted, this.#received, joins);
    }
  }

  /** Whether the thread should pause after a step in which a stream ended: continuous, and someone waits to join. */
  #wantsJoins(): boolean {
    const host = this.#host;
    return host.continuous && !host.destroyed && host.waiting > 0;
  }

  /**
   * The thread answered (a step, a start): it has `batchTimeout` for the next answer while it owes
   * one. Its jobs run one after another, so the gap between answers is one job's time.
   */
  #heard(): void {
    if (this.#watchdog !== undefined) clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    if (this.#members.size === 0 && this.#joining.size === 0) return;
    this.#owe();
  }

  /** The thread owes an answer: the watchdog runs, from now unless it already does. */
  #owe(): void {
    const limit = this.#host.batchTimeout;
    if (limit === undefined || this.#watchdog !== undefined) return;
    const watchdog = setTimeout(() => {
      // Timers run before the port is read: when something else held this (main) thread past the
      // limit, the thread's answers may be waiting there. Decide once they are read (the poll
      // phase comes before setImmediate's): an answer read meanwhile has re-armed the watchdog.
      setImmediate(() => {
        if (this.#watchdog === watchdog && !this.#over) this.#expire(limit);
      });
    }, limit);
    this.#watchdog = watchdog;
  }

  /** The thread sent nothing for `limit` ms while it owed an answer: it is abandoned, with the group. */
  #expire(limit: number): void {
    this.#watchdog = undefined;
    const error = new BatchTimeoutError(limit);
    for (const s of this.#members.values()) s.end('error', true, error);
    for (const s of this.#joining) s.end('error', true, error);
    // Before the lease goes: the slot gets a new thread before it takes another group.
    this.#lease.abandon(error);
    this.#finish();
  }

  /** The run stops (the thread frees what it still steps), and the lease goes. */
  #finish(): void {
    if (this.#over) return;
    this.#over = true;
    if (this.#watchdog !== undefined) clearTimeout(this.#watchdog);
    this.#watchdog = undefined;
    this.#lease.stop(this.#run);
    this.#boundStop();
    this.#host.over();
  }

  /**
   * The thread answers the stop once the step it may still be in has returned (it handles messages
   * in order). That answer, too, must come within `batchTimeout`: a step that never returns would
   * otherwise keep the states of streams already cancelled, and the thread would serve no one.
   */
  #boundStop(): void {
    const limit = this.#host.batchTimeout;
    const ended = this.#ended;
    if (limit === undefined || ended === undefined) return;
    const lease = this.#lease;
    let answered = false;
    const timer = setTimeout(() => {
      // As the watchdog: decided once the port has been read, in case this thread was held past the limit.
      setImmediate(() => {
        if (!answered) lease.abandon(new BatchTimeoutError(limit));
      });
    }, limit);
    timer.unref();
    const settle = (): void => {
      answered = true;
      clearTimeout(timer);
    };
    ended.then(settle, settle);
  }
}
