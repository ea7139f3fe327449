import type { BatchInfo } from 'batched-fn';
import type { Redis } from 'ioredis';
import { GROUP } from './keys.js';
import { EXHAUSTED, exhaustedMessage, REPAIR_LUA, warnRepaired } from './stream-repair.js';
import { encode, type WireBatch, type WireReply, type WireResult } from './wire.js';

interface Pending {
  batch: WireBatch | undefined;
  results: WireResult[];
  entries: string[];
}

/**
 * Appends one reply message to a frontend's reply stream. An `XADD *` that fails because someone
 * wrote the largest possible ID into that stream repairs it and adds again (stream-repair.ts);
 * the reply is then `[entry ID, entries displaced]`. Without this the XADD failed inside the
 * pipeline, unseen, while the XACK and XDEL after it went through: the answers were lost.
 */
const REPLY = `${REPAIR_LUA}
local id = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', '10000', '*', 'm', ARGV[1])
if bfn_exhausted(id) then
  local displaced = bfn_try_repair(KEYS[1], '')
  if type(displaced) == 'table' then return displaced end
  return { redis.call('XADD', KEYS[1], 'MAXLEN', '~', '10000', '*', 'm', ARGV[1]), displaced }
end
return id
`;

type ReplyPipeline = ReturnType<Redis['pipeline']> & { bfnReply(key: string, message: Buffer): ReplyPipeline };

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
  /** Reply streams found with the largest possible ID written into them, and repaired. */
  repairedStreams = 0;

  constructor(commands: Redis, stream: string, released: (entryIds: string[]) => void) {
    commands.defineCommand('bfnReply', { numberOfKeys: 1, lua: REPLY });
    this.#commands = commands;
    this.#stream = stream;
    this.#released = released;
  }

  /** The batch whose callers settle next (the batcher reports a batch just before its callers' reactions run). */
  observe(info: BatchInfo): void {
    this.#lastBatch = {
      rows: info.rows,
      items: info.items,
      reason: info.reason,
      execMs: info.execMs,
      maxWaitMs: info.maxWaitMs,
    };
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
      await this.#commands
        .pipeline()
        .xack(this.#stream, GROUP, ...entryIds)
        .xdel(this.#stream, ...entryIds)
        .exec();
    } finally {
      this.#released(entryIds);
    }
  }

  async flush(): Promise<void> {
    this.#scheduled = undefined;
    const pending = this.#pending;
    if (pending.size === 0) return;
    this.#pending = new Map();
    const pipeline = this.#commands.pipeline() as ReplyPipeline;
    const ids: string[] = [];
    const keys: string[] = [];
    for (const [reply, { batch, results, entries }] of pending) {
      const message: WireReply = { batch, results };
      pipeline.bfnReply(reply, encode(message));
      keys.push(reply);
      ids.push(...entries);
    }
    pipeline.xack(this.#stream, GROUP, ...ids);
    pipeline.xdel(this.#stream, ...ids);
    try {
      const outcomes = await pipeline.exec();
      this.replies += pending.size;
      keys.forEach((key, i) => {
        const [error, added] = outcomes?.[i] ?? [];
        if (Array.isArray(added)) {
          this.repairedStreams++;
          warnRepaired(key, Number(added[1]));
        } else if (error instanceof Error && EXHAUSTED.test(error.message)) {
          // Its callers time out; the operator must learn why, and how to repair the stream by hand.
          process.emitWarning(`Answers to ${key} were lost: ${exhaustedMessage(key, error.message)}`, {
            code: 'BFN_STREAM_EXHAUSTED',
          });
        }
      });
    } catch {
      // The replies did not go out: the entries stay pending, and this worker (or another) takes
      // them again after claimIdleMs. Callers drop any duplicate.
    } finally {
      this.#released(ids);
    }
  }
}
