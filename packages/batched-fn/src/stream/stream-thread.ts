import { Worker } from 'node:worker_threads';
import { deserializeError, isSerializedError } from '../error-codec.js';
import { WorkerExitedError } from '../errors.js';
import { transferListFor } from '../transfer.js';
import type { StepOutput } from './stream-options.js';
import type { ToStreamWorker } from './stream-worker-entry.js';

const ENTRY = new URL('./stream-worker-entry.js', import.meta.url);

/**
 * One worker thread serving one running group of a batchedStream: it holds
 * the group's states by id. Requests are answered in order; if the thread
 * dies, every pending request rejects with ERR_WORKER_EXITED and the thread
 * is replaced for the next group.
 */
export class StreamThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (outputs: unknown[] | null) => void; reject: (error: unknown) => void }>();
  #next = 1;
  #exit: unknown;
  alive = true;

  constructor(moduleUrl: string, data: unknown, name: string, readonly id: number) {
    this.#worker = new Worker(ENTRY, { workerData: { moduleUrl, data }, name });
    let lastError: unknown;
    // Idle threads must not keep the process alive; one with a request on its way must.
    this.#worker.on('error', (error) => {
      lastError = error;
    });
    this.#worker.on('message', (message: { type: string; req: number; outputs?: unknown[] | null; error?: unknown }) => this.#answer(message));
    this.#worker.unref();
    this.#worker.on('exit', (code) => {
      this.alive = false;
      this.#exit = new WorkerExitedError(id, code, lastError);
      for (const waiter of this.#pending.values()) waiter.reject(this.#exit);
      this.#pending.clear();
    });
  }

  #answer(message: { type: string; req: number; outputs?: unknown[] | null; error?: unknown }): void {
    const waiter = this.#pending.get(message?.req);
    if (waiter === undefined) return;
    this.#pending.delete(message.req);
    if (this.#pending.size === 0) this.#worker.unref();
    if (message.type === 'failed') waiter.reject(deserializeError(message.error));
    else waiter.resolve(Array.isArray(message.outputs) ? message.outputs : null);
  }

  #request(message: ToStreamWorker & { req: number }, transfer?: ArrayBuffer[]): Promise<unknown[] | null> {
    if (!this.alive) return Promise.reject(this.#exit);
    return new Promise((resolve, reject) => {
      this.#pending.set(message.req, { resolve, reject });
      this.#worker.ref();
      try {
        this.#worker.postMessage(message, transfer);
      } catch (error) {
        this.#pending.delete(message.req);
        reject(error);
      }
    });
  }

  async start(ids: number[], inputs: unknown[]): Promise<void> {
    await this.#request({ type: 'start', req: this.#next++, ids, inputs }, transferListFor(inputs));
  }

  /** One step of `ids`, freeing the states of `drop` first. Null when the step returned the wrong count. */
  async step(ids: number[], drop: number[]): Promise<StepOutput<unknown>[] | null> {
    const outputs = await this.#request({ type: 'step', req: this.#next++, ids, drop });
    return outputs === null ? null : outputs.map((o) => (o !== null && typeof o === 'object' && 'error' in o && isSerializedError((o as { error: unknown }).error) ? deserializeError((o as { error: unknown }).error) : (o as StepOutput<unknown>)));
  }

  close(): Promise<void> {
    if (!this.alive) return Promise.resolve();
    return new Promise((resolve) => {
      this.#worker.once('exit', () => resolve());
      // Someone awaits this exit: keep the process alive until the module has disposed.
      this.#worker.ref();
      this.#worker.postMessage({ type: 'close' } satisfies ToStreamWorker);
      setTimeout(() => void this.#worker.terminate(), 5_000).unref();
    });
  }

  terminate(): void {
    void this.#worker.terminate();
  }
}

/** One thread per group slot of a batchedStream in worker mode; a dead thread is replaced when its slot is next used. */
export class StreamThreads {
  readonly #threads: (StreamThread | undefined)[] = [];
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

  close(): Promise<void> {
    return Promise.all(this.#threads.map((thread) => thread?.close())).then(() => {});
  }

  terminate(): void {
    for (const thread of this.#threads) thread?.terminate();
  }
}
