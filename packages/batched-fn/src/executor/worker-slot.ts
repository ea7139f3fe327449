import { MessageChannel, type MessagePort, type ResourceLimits, Worker } from 'node:worker_threads';
import { deserializeError } from '../error-codec.js';
import { WorkerExitedError } from '../errors.js';
import type { WorkerStats } from '../stats.js';
import {
  type Answer,
  type FromWorker,
  type Notice,
  parseFromWorker,
  type RequestBody,
  type Stepped,
  type ToWorker,
  type WorkerBootData,
} from './wire.js';

/** First restart is quick; a crash loop backs off to this ceiling so it never spins a core. */
const RESTART_BASE_MS = 50;
const RESTART_MAX_MS = 5_000;
/** A worker asked to close gets this long to dispose its context; then it is terminated (if it may be) or no longer waited for. */
export const CLOSE_GRACE_MS = 5_000;

/** `promise`, or after CLOSE_GRACE_MS whatever it has not done: shutdown waits for a thread, never forever. */
export function withinGrace(promise: Promise<void>): Promise<void> {
  return Promise.race([promise, new Promise<void>((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref())]);
}

/** What every slot of one pool shares. */
export interface SlotHost {
  readonly entry: URL;
  readonly boot: WorkerBootData;
  readonly name: string;
  readonly resourceLimits: ResourceLimits | undefined;
  /** Called with this thread's end of a channel to each worker spawned (the `connectWorker` option). */
  readonly connect?: ((port: MessagePort, worker: number) => void) | undefined;
  /** False once the pool closes or is destroyed: an exit is then final. */
  restartable(): boolean;
  /** A restarted worker can take work again (capacity returned without a request finishing). */
  capacity(): void;
}

/** A request on its way: a batch job (with its inputs, by identity, for `abandon`), or a stream request. */
interface Pending {
  resolve: (answer: Answer) => void;
  reject: (error: unknown) => void;
  /** A batch job's inputs; undefined for stream requests. */
  job: unknown[] | undefined;
  /** A stream run's steps, as they come (the run itself is answered when it stops). */
  progress: ((step: Stepped) => void) | undefined;
}

/** A request sent: its id (what notices about it name), and its answer. */
export interface Sent {
  id: number;
  answered: Promise<Answer>;
}

/**
 * One place in the pool, and the only writer of its state. The Worker inside
 * is replaced when it dies (after a backoff) or is abandoned; the slot, its
 * counters and its id stay. A slot is busy while it runs a batch job or is
 * leased to a stream group; requests it sends are answered by id.
 */
export class WorkerSlot {
  readonly id: number;
  readonly #host: SlotHost;
  #worker: Worker | undefined = undefined;
  /** Bumped at every spawn: a lease is bound to the worker it started on. */
  #generation = 0;
  #state: WorkerStats['state'] = 'stopped';
  readonly #pending = new Map<number, Pending>();
  #nextRequest = 1;
  #jobs = 0;
  #leased = false;
  #busySince = 0;
  #batches = 0;
  #items = 0;
  #busyMs = 0;
  #restarts = 0;
  /** Messages on the worker's port that were not ours (user code posting on parentPort): ignored. */
  #ignoredMessages = 0;
  #failuresInARow = 0;
  #lastError: unknown = undefined;
  /** Why the last worker is gone (its exit, or the reason it was abandoned): what late requests reject with. */
  #gone: unknown = undefined;
  #restartTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #stopping = false;
  /**
   * False when the module says it blocks in native code. Terminating a thread inside
   * onnxruntime-node's session.run aborts the whole process (its binding throws a C++ exception
   * into the dying environment), so such a worker is never terminated mid-request: it is retired.
   */
  #interruptible = true;
  /** States a stream thread holds, as it last reported; 0 once it has exited. */
  #held = 0;
  readonly #initWaiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  #onExit: (() => void) | undefined = undefined;
  /** Retired workers: finishing a native call, then exiting on their own. close() waits for them. */
  readonly #retiring = new Set<Promise<void>>();

  constructor(id: number, host: SlotHost) {
    this.id = id;
    this.#host = host;
  }

  get state(): WorkerStats['state'] {
    return this.#state;
  }

  get interruptible(): boolean {
    return this.#interruptible;
  }

  get held(): number {
    return this.#held;
  }

  get generation(): number {
    return this.#generation;
  }

  /** Takes a batch or a lease now: running or starting, with no batch in it, not leased. */
  get free(): boolean {
    return (this.#state === 'idle' || this.#state === 'starting') && this.#jobs === 0 && !this.#leased;
  }

  /** Whether this slot runs the batch `inputs` (the very array given to the pool's `run`). */
  runs(inputs: unknown[]): boolean {
    for (const pending of this.#pending.values()) if (pending.job === inputs) return true;
    return false;
  }

  /** Whether generation `generation` is still the running worker. */
  alive(generation: number): boolean {
    return (
      this.#generation === generation &&
      this.#worker !== undefined &&
      this.#state !== 'restarting' &&
      this.#state !== 'stopped'
    );
  }

  /** Why the last worker can take no more requests (its exit, or why it was abandoned). */
  goneReason(): unknown {
    return this.#gone ?? new WorkerExitedError(this.id, undefined);
  }

  spawn(): void {
    if (this.#restartTimer !== undefined) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    const host = this.#host;
    // A fresh channel per spawn: a port can be transferred once, and a restarted worker is a new thread.
    const channel = host.connect === undefined ? undefined : new MessageChannel();
    const boot = channel === undefined ? host.boot : { ...host.boot, port: channel.port2 };
    const worker = new Worker(host.entry, {
      workerData: boot,
      ...(channel === undefined ? {} : { transferList: [channel.port2] }),
      name: `${host.name}#${this.id}`,
      ...(host.resourceLimits === undefined ? {} : { resourceLimits: host.resourceLimits }),
    });
    if (channel !== undefined) host.connect?.(channel.port1, this.id);
    this.#worker = worker;
    this.#generation++;
    this.#state = 'starting';
    this.#interruptible = true;
    this.#lastError = undefined;
    this.#gone = undefined;
    // A retired worker still runs and answers; only the slot's current worker counts.
    worker.on('message', (raw: unknown) => {
      if (this.#worker !== worker) return;
      const message = parseFromWorker(raw);
      if (message === undefined) this.#ignoredMessages++;
      else this.#answer(message);
    });
    worker.on('messageerror', (error) => {
      if (this.#worker === worker) this.#failAll(error);
    });
    worker.on('error', (error) => {
      if (this.#worker === worker) this.#lastError = error;
    });
    worker.on('exit', (code) => this.#exited(worker, code));
    worker.on('online', () => {
      if (this.#state === 'starting' && this.#worker === worker)
        this.#state = this.#jobs > 0 || this.#leased ? 'busy' : 'idle';
    });
    // An idle pool must not keep the process alive; a busy worker must. This comes after the
    // listeners because attaching a 'message' listener refs the worker's port again.
    worker.unref();
  }

  /** Leased to a stream group until `unlease`: no batch and no other group goes here meanwhile. */
  lease(): void {
    this.#leased = true;
    this.#state = 'busy';
  }

  unlease(): void {
    this.#leased = false;
    if (this.#state === 'busy' && this.#jobs === 0) this.#state = 'idle';
  }

  /**
   * Sends a request; its answer (or the worker's exit) settles the promise. Throws, having sent
   * nothing, when the message cannot be cloned, so the caller can isolate the culprit.
   */
  request(message: RequestBody, transfer: ArrayBuffer[] | undefined, job: unknown[] | undefined): Promise<Answer> {
    return this.send(message, transfer, job, undefined).answered;
  }

  /**
   * `request`, also telling its id, and with `progress` for a stream run: each of the run's
   * `stepped` messages goes there, until the run is answered (or the worker is gone).
   */
  send(
    message: RequestBody,
    transfer: ArrayBuffer[] | undefined,
    job: unknown[] | undefined,
    progress: ((step: Stepped) => void) | undefined,
  ): Sent {
    const worker = this.#worker as Worker;
    const id = this.#nextRequest++;
    let settle!: Pending;
    const answered = new Promise<Answer>((resolve, reject) => {
      settle = { resolve, reject, job, progress };
    });
    this.#pending.set(id, settle);
    if (job !== undefined) {
      this.#jobs++;
      this.#busySince = performance.now();
      this.#state = 'busy';
    }
    worker.ref();
    try {
      this.#post(worker, { ...message, id } as ToWorker, transfer);
    } catch (error) {
      this.#take(id);
      throw error;
    }
    return { id, answered };
  }

  /** A notice about a request (a run's credit, its stop): nothing when the worker is gone. */
  notify(notice: Notice): void {
    const worker = this.#worker;
    if (worker !== undefined) this.#post(worker, notice);
  }

  #post(worker: Worker, message: ToWorker, transfer?: ArrayBuffer[]): void {
    worker.postMessage(message, transfer);
  }

  /** Builds the context now (for `ready()`); a slot waiting to restart starts at once. */
  init(): Promise<void> {
    if (this.#state === 'restarting') this.spawn();
    const worker = this.#worker as Worker;
    return new Promise<void>((resolve, reject) => {
      // Someone is waiting on this worker, so it must keep the process alive until it answers.
      worker.ref();
      const done = (): void => {
        if (this.#pending.size === 0 && this.#worker === worker && !this.#stopping) worker.unref();
      };
      this.#initWaiters.push({
        resolve: () => {
          done();
          resolve();
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
      this.#post(worker, { type: 'init' });
    });
  }

  /**
   * A request overran `batchTimeout`: everything pending rejects with `reason`. An interruptible
   * worker is terminated, and restarted by its exit. Otherwise a fresh worker takes the slot at
   * once and the old one is retired: it exits on its own once its call returns.
   */
  abandon(reason: unknown): void {
    if (this.#worker === undefined) return;
    this.#gone = reason;
    this.#failAll(reason);
    // A ready() waiting on this thread's context is waiting on a thread let go: its answer is ignored.
    for (const waiter of this.#initWaiters.splice(0)) waiter.reject(reason);
    if (this.#interruptible) {
      // No request may go to the worker being terminated; its exit restarts it.
      this.#state = 'restarting';
      void this.#worker.terminate();
      return;
    }
    this.#retire();
    this.#restarts++;
    this.spawn();
    this.#host.capacity();
  }

  /** Closes the worker (after it disposes its context), or terminates it at once with `force`. Resolves at its exit, and once retired ones are gone. */
  stop(force: boolean): Promise<void> {
    if (this.#restartTimer !== undefined) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    const retiring = [...this.#retiring];
    const worker = this.#worker;
    if (worker === undefined) {
      this.#state = 'stopped';
      return withinGrace(Promise.all(retiring).then(() => {}));
    }
    this.#stopping = true;
    const exited = new Promise<void>((resolve) => {
      this.#onExit = resolve;
      if (force) {
        void worker.terminate();
        return;
      }
      // Let the module dispose its context (close a session, flush a log); after the grace,
      // terminate it if it may be, else stop waiting.
      const grace = setTimeout(() => {
        if (this.#interruptible || this.#pending.size === 0) void worker.terminate();
      }, CLOSE_GRACE_MS).unref();
      worker.once('exit', () => clearTimeout(grace));
      worker.ref();
      this.#post(worker, { type: 'close' });
    });
    return withinGrace(Promise.all([exited, ...retiring]).then(() => {}));
  }

  /**
   * destroy(): everything pending rejects with `reason`; the worker is terminated, or retired if
   * it is in a non-interruptible call (or building its context) and may not be.
   */
  destroy(reason: unknown): Promise<void> {
    const busy = this.#pending.size > 0 || this.#initWaiters.length > 0;
    this.#gone = reason;
    this.#failAll(reason);
    for (const waiter of this.#initWaiters.splice(0)) waiter.reject(reason);
    if (this.#interruptible || !busy) return this.stop(true);
    if (this.#restartTimer !== undefined) clearTimeout(this.#restartTimer);
    this.#restartTimer = undefined;
    this.#retire();
    this.#state = 'stopped';
    return withinGrace(Promise.all(this.#retiring).then(() => {}));
  }

  /** The slot's figures for `stats.workers`. */
  stats(): WorkerStats {
    return {
      id: this.id,
      threadId: this.#worker?.threadId,
      state: this.#state,
      batches: this.#batches,
      items: this.#items,
      busyMs: this.#busyMs + (this.#state === 'busy' && this.#jobs > 0 ? performance.now() - this.#busySince : 0),
      restarts: this.#restarts,
      ignoredMessages: this.#ignoredMessages,
    };
  }

  /** Request `id` left (answered, failed): the counters and the state follow. */
  #take(id: number): Pending | undefined {
    const pending = this.#pending.get(id);
    if (pending === undefined) return undefined;
    this.#pending.delete(id);
    if (pending.job !== undefined) {
      this.#jobs--;
      this.#busyMs += performance.now() - this.#busySince;
      if (this.#state === 'busy' && this.#jobs === 0 && !this.#leased) this.#state = 'idle';
    }
    // A closing worker stays referenced: someone waits for its exit.
    if (this.#pending.size === 0 && this.#initWaiters.length === 0 && !this.#stopping) this.#worker?.unref();
    return pending;
  }

  /** Every request still waiting fails with `error` (a lost message, an abandoned run, destroy). */
  #failAll(error: unknown): void {
    for (const id of [...this.#pending.keys()]) this.#take(id)?.reject(error);
  }

  #answer(message: FromWorker): void {
    switch (message.type) {
      case 'loaded':
        this.#interruptible = message.interruptible;
        break;
      case 'ready':
        for (const waiter of this.#initWaiters.splice(0)) waiter.resolve();
        break;
      case 'init-error': {
        const error = deserializeError(message.error);
        for (const waiter of this.#initWaiters.splice(0)) waiter.reject(error);
        break;
      }
      case 'stepped': {
        const pending = this.#pending.get(message.id);
        // Not a run of this worker's (an abandoned one's late step, a forgery): ignored.
        if (pending?.progress === undefined) return;
        this.#held = message.held;
        this.#failuresInARow = 0;
        pending.progress(message);
        break;
      }
      case 'result':
      case 'packed-result': {
        if (message.type === 'result' && message.held !== undefined) this.#held = message.held;
        const pending = this.#take(message.id);
        if (pending === undefined) return; // an abandoned request's late answer
        this.#failuresInARow = 0;
        if (pending.job !== undefined) {
          this.#batches++;
          this.#items += pending.job.length;
        }
        pending.resolve(message);
        break;
      }
      case 'error': {
        if (message.held !== undefined) this.#held = message.held;
        this.#take(message.id)?.reject(deserializeError(message.error));
        break;
      }
      case 'lost':
        this.#failAll(deserializeError(message.error));
        break;
      case 'closed':
        break;
    }
  }

  /** Detaches the worker and lets it finish what it runs, then close; never terminated. */
  #retire(): void {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#held = 0;
    if (worker === undefined) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    this.#retiring.add(exited);
    void exited.then(() => this.#retiring.delete(exited));
    // It keeps the process alive meanwhile, as a running native call must (exiting the process
    // under it would abort it as well).
    worker.ref();
    this.#post(worker, { type: 'close' });
  }

  #exited(worker: Worker, code: number): void {
    if (this.#worker !== worker) return;
    this.#worker = undefined;
    this.#held = 0;
    const exited = new WorkerExitedError(this.id, code, this.#lastError);
    this.#gone ??= exited;
    this.#failAll(exited);
    for (const waiter of this.#initWaiters.splice(0)) waiter.reject(this.#lastError ?? exited);
    if (this.#stopping || !this.#host.restartable()) {
      this.#state = 'stopped';
      this.#onExit?.();
      return;
    }
    this.#state = 'restarting';
    this.#restarts++;
    this.#failuresInARow++;
    const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** (this.#failuresInARow - 1));
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      if (!this.#host.restartable()) return;
      this.spawn();
      this.#host.capacity();
    }, delay);
  }
}
