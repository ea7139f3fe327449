import { randomUUID } from 'node:crypto';
import {
  BatchedFnError,
  type BatchedFn,
  type BatchedFnSettings,
  type BatchedFnStats,
  type BatchInfo,
  type CallOptions,
  ClosedError,
  QueueFullError,
  type RuntimeOptions,
  UnavailableError,
} from 'batched-fn';
import { deserializeError, PendingCalls, rowsOf } from 'batched-fn/adapter';
import { FRONTEND_OPTIONS, resolveOptions } from './options.js';
import type { Redis } from 'ioredis';
import { connect, ensureGroup, ready, type RedisTarget } from './connection.js';
import { GROUP, type StreamKeys, streamKeys } from './keys.js';
import { EXHAUSTED, exhaustedMessage, REPAIR_LUA, warnRepaired } from './stream-repair.js';
import { traceparentOf } from './trace-context.js';
import { decode, encode, validBatch, type WireReply } from './wire.js';

export interface RemoteBatchedFnOptions<I> {
  redis: RedisTarget;
  /** The model's name: its requests go to `{prefix}:{name}:requests`. */
  name: string;
  prefix?: string;
  /**
   * Most requests the model's stream may hold (waiting or being run). Beyond
   * it, calls reject at once with ERR_QUEUE_FULL; entries are never trimmed.
   * @default Infinity
   */
  channelCap?: number;
  /** Rows an input counts, carried to the workers for their batch limit. */
  size?: (input: I) => number;
  /** Called for every reply batch, with what the worker reports about the batch it came from. */
  onBatch?: (info: BatchInfo) => void;
  /**
   * How long `close()` waits for answers to calls already sent. With no worker
   * alive and no per-call timeouts they would otherwise wait forever; after
   * this long they reject with ERR_CLOSED.
   * @default 30000
   */
  drainTimeout?: number;
}

/**
 * Atomically refuses when the stream already holds `cap` entries, or appends
 * the request. One round trip, and no entry is ever trimmed to make room.
 * An `XADD *` that fails because someone wrote the largest possible ID into
 * the stream repairs it and adds again, in the same script (stream-repair.ts):
 * the reply is then `[entry ID, entries displaced]` instead of the entry ID.
 */
const ENQUEUE = `${REPAIR_LUA}
local cap = tonumber(ARGV[1])
if cap > 0 and redis.call('XLEN', KEYS[1]) >= cap then return false end
local function add()
  return redis.pcall('XADD', KEYS[1], '*', 'i', ARGV[2], 'r', ARGV[3], 'd', ARGV[4], 'n', ARGV[5], 'q', ARGV[6], 'p', ARGV[7], 't', ARGV[8])
end
local id = add()
if bfn_exhausted(id) then
  local displaced = bfn_try_repair(KEYS[1], ARGV[9])
  if type(displaced) == 'table' then return displaced end
  return { redis.call('XADD', KEYS[1], '*', 'i', ARGV[2], 'r', ARGV[3], 'd', ARGV[4], 'n', ARGV[5], 'q', ARGV[6], 'p', ARGV[7], 't', ARGV[8]), displaced }
end
return id
`;

type EnqueueClient = Redis & {
  bfnEnqueue(
    key: string,
    cap: number,
    id: string,
    reply: string,
    deadline: number,
    rows: number,
    priority: number,
    payload: Buffer,
    traceparent: string,
    group: string,
  ): Promise<string | [string, number] | null>;
};

/** What a remote frontend counts beyond the core's figures. */
export interface RemoteFrontendStats extends BatchedFnStats {
  /** Entries of its reply stream that were not a reply (undecodable, or the wrong shape): skipped and deleted. */
  invalidReplies: number;
  /** Times its request stream was found with the largest possible ID written into it, and repaired (stream-repair.ts). */
  repairedStreams: number;
}

/** How long a frontend's reply stream outlives the frontend, should it die without cleaning up. */
const REPLY_TTL_MS = 120_000;

class RemoteFrontend<I, O> {
  readonly #options: RemoteBatchedFnOptions<I>;
  readonly #keys: StreamKeys;
  readonly #id = randomUUID();
  readonly #replyKey: string;
  /** The call lifecycle (validation, abort, timeout, settle-once, stats) is the core's. */
  readonly #calls = new PendingCalls<O>((_id, entry, key) => this.#takeBack(entry as string | undefined, key));
  #channelCap: number;
  #seq = 0;
  #commands: EnqueueClient | undefined;
  #replies: Redis | undefined;
  #started: Promise<void> | undefined;
  #closing = false;
  #stopped = false;
  #closed: Promise<void> | undefined;
  /** Where the next read of the reply stream starts (see #readReplies). */
  #lastReply = '0-0';
  #lastExpire = 0;
  #invalidReplies = 0;
  #repairedStreams = 0;

  constructor(options: RemoteBatchedFnOptions<I>) {
    this.#options = resolveOptions(FRONTEND_OPTIONS, options, ['redis', 'name']);
    this.#keys = streamKeys(this.#options.prefix as string, this.#options.name);
    this.#replyKey = this.#keys.reply(this.#id);
    this.#channelCap = this.#options.channelCap as number;
  }

  get replyKey(): string {
    return this.#replyKey;
  }

  ready(): Promise<void> {
    if (this.#closing) return Promise.reject(new ClosedError());
    this.#started ??= this.#start().catch((error: unknown) => {
      this.#started = undefined;
      throw new UnavailableError(`Cannot reach Redis: ${(error as Error).message}`, { cause: error });
    });
    return this.#started;
  }

  async #start(): Promise<void> {
    const commands = connect(this.#options.redis, `bfn-frontend-${this.#id}`) as EnqueueClient;
    commands.defineCommand('bfnEnqueue', { numberOfKeys: 1, lua: ENQUEUE });
    const replies = connect(this.#options.redis, `bfn-replies-${this.#id}`);
    // Silence ioredis' unhandled 'error' events; losing the connection is handled on 'close'.
    commands.on('error', () => {});
    replies.on('error', () => {});
    commands.on('close', () => this.#connectionLost());
    this.#commands = commands;
    this.#replies = replies;
    await Promise.all([ready(commands), ready(replies)]);
    await ensureGroup(commands, this.#keys.requests, GROUP);
    void this.#readReplies();
  }

  call(input: I, options?: CallOptions): Promise<O> {
    if (this.#closing) return this.#calls.refuse(new ClosedError());
    let payload: Buffer;
    let rows = 1;
    try {
      payload = encode(input);
      if (this.#options.size !== undefined) rows = rowsOf(this.#options.size, input);
    } catch (error) {
      return this.#calls.refuse(error);
    }
    const id = `${this.#id}:${this.#seq++}`;
    const timeout = options?.timeout;
    const deadline = timeout === undefined ? 0 : Date.now() + timeout;
    const traceparent = traceparentOf(options?.trace);
    return this.#calls.open(
      id,
      options,
      rows,
      () => void this.#enqueue(id, deadline, rows, options?.priority ?? 0, payload, traceparent),
    );
  }

  async #enqueue(
    id: string,
    deadline: number,
    rows: number,
    priority: number,
    payload: Buffer,
    traceparent: string,
  ): Promise<void> {
    try {
      await this.ready();
      const commands = this.#commands as EnqueueClient;
      const cap = Number.isFinite(this.#channelCap) ? this.#channelCap : 0;
      const added = await commands.bfnEnqueue(
        this.#keys.requests,
        cap,
        id,
        this.#replyKey,
        deadline,
        rows,
        priority,
        payload,
        traceparent,
        GROUP,
      );
      if (added === null) {
        this.#calls.fail(id, new QueueFullError(this.#channelCap));
        return;
      }
      let entry: string;
      if (Array.isArray(added)) {
        [entry] = added;
        this.#repairedStreams++;
        warnRepaired(this.#keys.requests, added[1]);
      } else entry = added;
      // Settled (aborted, timed out) while the XADD was on its way: take the entry back out.
      if (!this.#calls.note(id, entry)) void commands.xdel(this.#keys.requests, entry).catch(() => {});
    } catch (error) {
      const message = (error as Error).message;
      const unavailable =
        error instanceof UnavailableError
          ? error
          : new UnavailableError(
              EXHAUSTED.test(message)
                ? exhaustedMessage(this.#keys.requests, message, GROUP)
                : `Redis did not accept the request: ${message}`,
              { cause: error },
            );
      this.#calls.fail(id, unavailable);
    }
  }

  /** A call released before its answer: if no worker has picked its entry up, deleting it spares the model. */
  #takeBack(entry: string | undefined, _key: string): void {
    if (entry !== undefined) void this.#commands?.xdel(this.#keys.requests, entry).catch(() => {});
  }

  /**
   * Reads this frontend's reply stream until stopped; keeps the first reply per request.
   *
   * Anyone who can write to Redis can write into this stream. An entry that is not a reply is
   * skipped and counted (`invalidReplies`); it must not stop the replies around it, nor keep them
   * from being deleted. Everything read is deleted, so once the deletion is done the stream holds
   * only unread entries and the next read starts from the beginning again: the reader never keeps a
   * position that an entry with an absurd ID (the largest possible, say) could move out of reach.
   * Only while a deletion has failed does it read on from the last entry it read, not to deliver
   * those twice.
   */
  async #readReplies(): Promise<void> {
    while (!this.#stopped) {
      const replies = this.#replies as Redis;
      try {
        if (Date.now() - this.#lastExpire > REPLY_TTL_MS / 4) {
          this.#lastExpire = Date.now();
          await (this.#commands as Redis).pexpire(this.#replyKey, REPLY_TTL_MS).catch(() => {});
        }
        const result = await replies.xreadBuffer(
          'COUNT',
          100,
          'BLOCK',
          500,
          'STREAMS',
          this.#replyKey,
          this.#lastReply,
        );
        if (result === null) continue;
        const seen: string[] = [];
        for (const [, entries] of result) {
          for (const [entryId, fields] of entries) {
            seen.push(entryId.toString());
            if (!this.#deliver(fields)) this.#invalidReplies++;
          }
        }
        if (seen.length === 0) continue;
        this.#lastReply = seen.at(-1) as string;
        await (this.#commands as Redis).xdel(this.#replyKey, ...seen).then(
          () => (this.#lastReply = '0-0'),
          () => {},
        );
      } catch {
        if (this.#stopped) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /**
   * A reply comes from another process: its batch figures become metric observations and its
   * reason a label, so each is checked first. Malformed parts are dropped, never passed on; the
   * entry then counts as invalid (false).
   */
  #deliver(fields: Buffer[]): boolean {
    const index = fields.findIndex((f, i) => i % 2 === 0 && f.toString() === 'm');
    if (index < 0) return false;
    let reply: WireReply;
    try {
      reply = decode<WireReply>(fields[index + 1] as Buffer);
    } catch {
      return false;
    }
    if (typeof reply !== 'object' || reply === null || !Array.isArray(reply.results)) return false;
    const batch = validBatch(reply.batch);
    if (batch !== undefined) {
      this.#calls.stats.recordBatch(batch.rows, batch.execMs);
      this.#calls.stats.dispatched(batch.reason);
      this.#options.onBatch?.({
        name: this.#options.name,
        ...batch,
        ok: reply.results.every((r) => Array.isArray(r) && r[1] === true),
      });
    }
    let valid = true;
    for (const result of reply.results) {
      if (!Array.isArray(result) || typeof result[0] !== 'string') {
        valid = false;
        continue;
      }
      const [id, ok, value] = result;
      // A duplicate from a redelivered entry, or a caller already released, finds nothing to settle.
      // Only the core's own classes count under their code; anything else a worker sends is 'handler'.
      if (ok === true) this.#calls.resolve(id, value as O);
      else this.#calls.fail(id, deserializeError(value));
    }
    return valid;
  }

  /** Redis went away: nobody can say whether waiting requests will be answered, so they fail now. */
  #connectionLost(): void {
    if (this.#stopped) return;
    this.#calls.failAll(
      () =>
        new UnavailableError(
          'Lost the connection to Redis while waiting for the answer; the request may or may not have run',
        ),
      'ERR_UNAVAILABLE',
    );
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      this.#closing = true;
      const limit = this.#options.drainTimeout as number;
      const timer = setTimeout(() => {
        this.#calls.failAll(
          () => new ClosedError(`Closed before an answer came back (waited ${limit} ms): is any worker running?`),
          'ERR_CLOSED',
        );
      }, limit);
      await this.#calls.drained();
      clearTimeout(timer);
      await this.#shutdown();
    })();
    return this.#closed;
  }

  destroy(reason?: unknown): void {
    this.#closing = true;
    this.#calls.failAll(
      () => reason ?? new ClosedError('The batcher was destroyed'),
      reason === undefined ? 'ERR_CLOSED' : reason instanceof BatchedFnError ? reason.code : 'handler',
    );
    this.#closed ??= this.#shutdown();
  }

  async #shutdown(): Promise<void> {
    this.#stopped = true;
    await this.#commands?.del(this.#replyKey).catch(() => {});
    this.#commands?.disconnect();
    this.#replies?.disconnect();
  }

  configure(options: RuntimeOptions): void {
    // maxBatchSize, maxDelay and concurrency belong to the workers; only the cap is the frontend's.
    if (options.channelCap !== undefined)
      this.#channelCap = FRONTEND_OPTIONS.channelCap.check('channelCap', options.channelCap);
  }

  /** Only the cap is the frontend's; batch size, window and concurrency are each worker's own. */
  get settings(): BatchedFnSettings {
    return { maxBatchSize: Number.NaN, maxDelay: Number.NaN, channelCap: this.#channelCap, concurrency: Number.NaN };
  }

  get stats(): RemoteFrontendStats {
    // Calls wait in Redis or in a worker, and this process cannot tell which: all count as queued.
    const core = this.#calls.stats.snapshot({
      queued: this.#calls.size,
      queuedRows: this.#calls.rows,
      inFlight: 0,
      inFlightItems: 0,
      workers: [],
      costModel: undefined,
    });
    return { ...core, invalidReplies: this.#invalidReplies, repairedStreams: this.#repairedStreams };
  }
}

/** What `remoteBatchedFn` returns: a batched function, its reply stream's key, and stats with the frontend's own counters. */
export type RemoteBatchedFn<I, O> = BatchedFn<I, O> & {
  readonly replyKey: string;
  readonly stats: RemoteFrontendStats;
};

/**
 * A batched function whose batches run on remote workers: the same call API
 * as `batchedFn` (signal, timeout, typed errors, stats, close), with requests
 * carried by a Redis stream per model and answers by a stream per frontend.
 */
export function remoteBatchedFn<I, O>(options: RemoteBatchedFnOptions<I>): RemoteBatchedFn<I, O> {
  const frontend = new RemoteFrontend<I, O>(options);
  const predict = ((input: I, callOptions?: CallOptions) => frontend.call(input, callOptions)) as RemoteBatchedFn<I, O>;
  Object.defineProperties(predict, {
    stats: { get: () => frontend.stats, enumerable: true },
    settings: { get: () => frontend.settings, enumerable: true },
    replyKey: { get: () => frontend.replyKey },
    ready: { value: () => frontend.ready() },
    close: { value: () => frontend.close() },
    destroy: { value: (reason?: unknown) => frontend.destroy(reason) },
    configure: { value: (runtime: RuntimeOptions) => frontend.configure(runtime) },
  });
  return predict;
}
