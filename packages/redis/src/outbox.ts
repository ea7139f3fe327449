import type { BatchInfo } from 'batched-fn';
import type { Redis } from 'ioredis';
import { GROUP } from './keys.js';
import { encode, type WireBatch, type WireReply, type WireResult } from './wire.js';

interface Pending {
  batch: WireBatch | undefined;
  results: WireResult[];
  entries: string[];
}

/**
 * Answers go out once per batch per frontend: the results of one batch
 * settle in the same tick, so they are gathered per reply stream and sent
 * together on the next loop turn, with the XACK and XDEL of their entries
 * in the same pipeline. Answered entries leave the stream.
 */
export class ReplyOutbox {
  readonly #commands: Redis;
  readonly #stream: string;
  readonly #released: (entryIds: string[]) => void;
  #pending = new Map<string, Pending>();
  #scheduled: Promise<void> | undefined;
  #lastBatch: WireBatch | undefined;
  replies = 0;

  constructor(commands: Redis, stream: string, released: (entryIds: string[]) => void) {
    this.#commands = commands;
    this.#stream = stream;
    this.#released = released;
  }

  /** The batch whose callers settle next (the batcher reports a batch just before its callers' reactions run). */
  observe(info: BatchInfo): void {
    this.#lastBatch = { rows: info.rows, items: info.items, reason: info.reason, execMs: info.execMs, maxWaitMs: info.maxWaitMs };
  }

  send(reply: string, entryId: string, result: WireResult): Promise<void> {
    let pending = this.#pending.get(reply);
    if (pending === undefined) {
      pending = { batch: this.#lastBatch, results: [], entries: [] };
      this.#pending.set(reply, pending);
    }
    pending.results.push(result);
    pending.entries.push(entryId);
    this.#scheduled ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush());
    return this.#scheduled;
  }

  /** Acknowledges and deletes entries that will never be answered. */
  async forget(entryIds: string[]): Promise<void> {
    try {
      await this.#commands.pipeline().xack(this.#stream, GROUP, ...entryIds).xdel(this.#stream, ...entryIds).exec();
    } finally {
      this.#released(entryIds);
    }
  }

  async flush(): Promise<void> {
    this.#scheduled = undefined;
    const pending = this.#pending;
    if (pending.size === 0) return;
    this.#pending = new Map();
    const pipeline = this.#commands.pipeline();
    const ids: string[] = [];
    for (const [reply, { batch, results, entries }] of pending) {
      const message: WireReply = { batch, results };
      pipeline.xadd(reply, 'MAXLEN', '~', '10000', '*', 'm', encode(message));
      ids.push(...entries);
    }
    pipeline.xack(this.#stream, GROUP, ...ids);
    pipeline.xdel(this.#stream, ...ids);
    try {
      await pipeline.exec();
      this.replies += pending.size;
    } catch {
      // The replies did not go out: the entries stay pending, and this worker (or another) takes
      // them again after claimIdleMs. Callers drop any duplicate.
    } finally {
      this.#released(ids);
    }
  }
}
