import { Worker } from 'node:worker_threads';
import { deserializeError } from '../error-codec.js';
import { WorkerExitedError } from '../errors.js';
import { transferListFor } from '../transfer.js';
import type { StepOutput } from './stream-options.js';
import { type FromStreamWorker, parseFromStreamWorker, type ToStreamWorker } from './stream-wire.js';

const ENTRY = new URL('./stream-worker-entry.js', import.meta.url);

/** A thread asked to close gets this long to dispose its context; then it is terminated (if it may be) or no longer waited for. */
const CLOSE_GRACE_MS = 5_000;

type Done = Extract<FromStreamWorker, { type: 'done' }>;

interface Waiter {
  resolve: (message: Done) => void;
  reject: (error: unknown) => void;
}

/** `promise`, or after CLOSE_GRACE_MS whatever it has not done: shutdown waits for a thread, never forever. */
function withinGrace(promise: Promise<void>): Promise<void> {
  return Promise.race([promise, new Promise<void>((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref())]);
}

/**
 * One worker thread serving one running group of a batchedStream: it holds
 * the group's states by id. Requests are answered in order; if the thread
 * dies, every pending request rejects with ERR_WORKER_EXITED and the thread
 * is replaced for the next group.
 */
export class StreamThread {
  readonly id: number;
  readonly #worker: Worker;
  readonly #pending = new Map<number, Waiter>();
  #next = 1;
  #exit: unknown;
  #gone = false;
  /** Takes requests: false once it exited, or was abandoned, stopped or destroyed. */
  alive = true;
  /**
   * False when the module exports `interruptible = false`: its step blocks in native code, and
   * terminating a thread inside onnxruntime-node's `session.run` aborts the whole process. Such a
   * thread is never terminated while a request is in it: it is retired (see `#retire`).
   */
  interruptible = true;
  /** States the thread holds, as it last reported; 0 once it has exited. */
  held = 0;
  /** Resolves when the thread has exited. */
  readonly exited: Promise<void>;

  constructor(moduleUrl: string, data: unknown, name: string, id: number) {
    this.id = id;
    const worker = new Worker(ENTRY, { workerData: { moduleUrl, data }, name });
    this.#worker = worker;
    this.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
    let lastError: unknown;
    worker.on('error', (error) => {
      lastError = error;
    });
    // Anything user code posts on the port that is not exactly our protocol is ignored.
    worker.on('message', (raw: unknown) => {
      const message = parseFromStreamWorker(raw);
      if (message !== undefined) this.#answer(message);
    });
    // Idle threads must not keep the process alive; one with a request on its way must.
    worker.unref();
    worker.on('exit', (code) => {
      this.alive = false;
      this.#gone = true;
      this.held = 0;
      this.#exit = new WorkerExitedError(id, code, lastError);
      this.#rejectAll(this.#exit);
    });
  }

  #answer(message: FromStreamWorker): void {
    if (message.type === 'loaded') {
      this.interruptible = message.interruptible;
      return;
    }
    this.held = message.held;
    const waiter = this.#pending.get(message.req);
    if (waiter === undefined) return; // an abandoned request's late answer
    this.#pending.delete(message.req);
    // A closing or retiring thread stays referenced: someone waits for its exit.
    if (this.#pending.size === 0 && this.alive) this.#worker.unref();
    if (message.type === 'failed') waiter.reject(deserializeError(message.error));
    else waiter.resolve(message);
  }

  #rejectAll(error: unknown): void {
    const waiters = [...this.#pending.values()];
    this.#pending.clear();
    for (const waiter of waiters) waiter.reject(error);
  }

  #request(message: Exclude<ToStreamWorker, { type: 'close' }>, transfer?: ArrayBuffer[]): Promise<Done> {
    if (!this.alive) return Promise.reject(this.#exit);
    return new Promise((resolve, reject) => {
      this.#pending.set(message.req, { resolve, reject });
      this.#worker.ref();
      try {
        this.#worker.postMessage(message, transfer);
      } catch (error) {
        this.#pending.delete(message.req);
        if (this.#pending.size === 0 && this.alive) this.#worker.unref();
        reject(error);
      }
    });
  }

  async start(ids: number[], inputs: unknown[]): Promise<void> {
    await this.#request({ type: 'start', req: this.#next++, ids, inputs }, transferListFor(inputs));
  }

  /** One step of `ids`, freeing the states of `drop` first. Null when the step returned the wrong count. */
  async step(ids: number[], drop: number[]): Promise<StepOutput<unknown>[] | null> {
    const { outputs, errors } = await this.#request({ type: 'step', req: this.#next++, ids, drop });
    if (outputs === null) return null;
    for (const [i, error] of errors) outputs[i] = deserializeError(error);
    return outputs as StepOutput<unknown>[];
  }

  /** Frees the states of `ids` (a group that ended or failed, cancelled sequences). */
  async drop(ids: number[]): Promise<void> {
    await this.#request({ type: 'drop', req: this.#next++, ids });
  }

  /**
   * A start or step overran `batchTimeout`: the thread takes no more requests and the group's
   * slot gets a new one. An interruptible thread is terminated now; one that is not is retired.
   */
  abandon(reason: unknown): void {
    if (!this.alive) return;
    this.alive = false;
    this.#exit = reason;
    this.#rejectAll(reason);
    if (this.interruptible) void this.#worker.terminate();
    else this.#retire();
  }

  /**
   * Lets the thread finish the request it is in, then dispose and exit on its own: its entry
   * handles `close` only after the step before it returns. It keeps the process alive meanwhile,
   * as a running native call must (exiting the process under it would abort it as well).
   */
  #retire(): void {
    this.#worker.ref();
    this.#worker.postMessage({ type: 'close' } satisfies ToStreamWorker);
  }

  /** Disposes the module's context and exits; terminated after the grace if it may be, else no longer waited for. */
  close(): Promise<void> {
    if (this.#gone) return Promise.resolve();
    if (!this.alive) return withinGrace(this.exited); // terminating or retiring already
    this.alive = false;
    // Someone awaits this exit: keep the process alive until the module has disposed.
    this.#worker.ref();
    this.#worker.postMessage({ type: 'close' } satisfies ToStreamWorker);
    const grace = setTimeout(() => {
      if (this.interruptible || this.#pending.size === 0) void this.#worker.terminate();
    }, CLOSE_GRACE_MS).unref();
    void this.exited.then(() => clearTimeout(grace));
    return withinGrace(this.exited);
  }

  /** destroy(): every request rejects with `reason`; the thread is terminated, or retired if a request is in a non-interruptible one. */
  destroy(reason: unknown): void {
    if (!this.alive) return; // exited, or already terminating, retiring or closing
    const busy = this.#pending.size > 0;
    this.alive = false;
    this.#exit = reason;
    this.#rejectAll(reason);
    if (this.interruptible || !busy) void this.#worker.terminate();
    else this.#retire();
  }
}

/** One thread per group slot of a batchedStream in worker mode; a dead or abandoned thread is replaced when its slot is next used. */
export class StreamThreads {
  readonly #threads: (StreamThread | undefined)[] = [];
  /** Abandoned threads that were not interruptible: still finishing a step, then exiting on their own. */
  readonly #retiring = new Set<StreamThread>();
  readonly #moduleUrl: string;
  readonly #data: unknown;
  readonly #name: string;
  readonly #slots: number;

  constructor(moduleUrl: string, data: unknown, name: string, slots: number) {
    this.#moduleUrl = moduleUrl;
    this.#data = data;
    this.#name = name;
    this.#slots = slots;
  }

  /** A live thread that none of `busy` uses. */
  acquire(busy: ReadonlySet<StreamThread | undefined>): StreamThread | undefined {
    for (let slot = 0; slot < this.#slots; slot++) {
      const thread = this.#threads[slot];
      if (thread !== undefined && busy.has(thread)) continue;
      if (thread === undefined || !thread.alive) this.#threads[slot] = new StreamThread(this.#moduleUrl, this.#data, `${this.#name}#${slot}`, slot);
      return this.#threads[slot];
    }
    return undefined;
  }

  /** See StreamThread.abandon; a retired thread is still waited for by close(). */
  abandon(thread: StreamThread, reason: unknown): void {
    thread.abandon(reason);
    if (thread.interruptible) return;
    // Its slot gets a new thread at once; the old one is followed here until it exits.
    const slot = this.#threads.indexOf(thread);
    if (slot >= 0) this.#threads[slot] = undefined;
    this.#retiring.add(thread);
    void thread.exited.then(() => this.#retiring.delete(thread));
  }

  /** States held in the threads, as they last reported. */
  get held(): number {
    let held = 0;
    for (const thread of this.#threads) held += thread?.held ?? 0;
    for (const thread of this.#retiring) held += thread.held;
    return held;
  }

  close(): Promise<void> {
    const threads = [...this.#threads, ...this.#retiring];
    return Promise.all(threads.map((thread) => thread?.close())).then(() => {});
  }

  destroy(reason: unknown): void {
    for (const thread of this.#threads) thread?.destroy(reason);
  }
}
