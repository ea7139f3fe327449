import { hostname } from 'node:os';
import { AdaptivePolicy, ArrivalRate, type BatchedFn, CostModel, TimeoutError } from 'batched-fn';
import { expectDuration, expectInteger, serializeError, validateMaxDelay } from 'batched-fn/adapter';
import type { Redis } from 'ioredis';
import { connect, ensureGroup, ready, type RedisTarget } from './connection.js';
import { DEFAULT_PREFIX, GROUP, replyKeyPattern, type StreamKeys, streamKeys } from './keys.js';
import { arrivalOf, type Entry, invalidEntry, parseEntry } from './entry.js';
import { decode, encode, type WireReply, type WireResult } from './wire.js';

export interface RemoteWorkerOptions<I, O> {
  redis: RedisTarget;
  name: string;
  prefix?: string;
  /** Runs the batches: a local batcher, usually in worker threads. Give it maxDelay 0; the window is applied here. */
  predict: BatchedFn<I, O>;
  /** Most requests read into one batch. @default 64 */
  maxBatchSize?: number;
  /**
   * Window counted from the oldest entry's arrival (its stream ID time), or
   * 'auto': learn the batch cost and wait only while waiting pays, as the
   * core's `maxDelay: 'auto'` does.
   * @default 'auto'
   */
  maxDelay?: number | 'auto';
  /** Batches read and run at once; give it the local batcher's worker count. @default 1 */
  concurrency?: number;
  /** Entries another worker has held this long without answering are taken over. @default 30000 */
  claimIdleMs?: number;
  /** Published for the HTTP frontends (the model's inputs and outputs). */
  signature?: unknown;
  /** Consumer name in the group; unique per process. */
  consumer?: string;
  /**
   * Checks one decoded payload before it joins a batch (against the model's signature, say).
   * Whoever can write to the stream can write anything: an entry that throws here fails alone,
   * with the thrown error, and never reaches the model or shifts its neighbours' rows.
   */
  validate?: (input: unknown) => void;
}

export interface RemoteWorkerStats {
  batches: number;
  entries: number;
  expired: number;
  reclaimed: number;
  replies: number;
  /** Entries refused before joining a batch: malformed fields, an undecodable or invalid payload. */
  invalid: number;
  /** Entries dropped unanswered because their reply key is not one of this deployment's. */
  unanswerable: number;
}

/**
 * Pulls requests for one model from its stream and runs them as batches.
 *
 * The window is measured from the oldest entry's stream ID, which is when
 * Redis received it. Filling the window polls without BLOCK: Redis rounds a
 * BLOCK timeout to its `hz` tick (100 ms by default), far longer than a few
 * milliseconds' window. Only an idle worker waiting for its first entry
 * blocks, because arriving data wakes a blocked reader at once.
 */
export class RemoteWorker<I, O> {
  readonly #options: Required<Omit<RemoteWorkerOptions<I, O>, 'signature' | 'consumer' | 'prefix' | 'validate'>> & RemoteWorkerOptions<I, O>;
  readonly #keys: StreamKeys;
  readonly #consumer: string;
  readonly #stats: RemoteWorkerStats = { batches: 0, entries: 0, expired: 0, reclaimed: 0, replies: 0, invalid: 0, unanswerable: 0 };
  /** Replies go only to this deployment's frontends: a key from the stream is not trusted to name any other. */
  readonly #replyKey: RegExp;
  readonly #reclaimed: Entry[] = [];
  /** Entries this worker holds (read or claimed, not yet acked): never claimed again by itself. */
  readonly #held = new Set<string>();
  #commands: Redis | undefined;
  readonly #readers: Redis[] = [];
  #loops: Promise<void>[] = [];
  #claimTimer: ReturnType<typeof setInterval> | undefined;
  #stopping = false;
  readonly #cost = new CostModel();
  readonly #arrivals = new ArrivalRate();
  readonly #policy: AdaptivePolicy | undefined;

  constructor(options: RemoteWorkerOptions<I, O>) {
    this.#options = { maxBatchSize: 64, maxDelay: 'auto', concurrency: 1, claimIdleMs: 30_000, ...options };
    expectInteger('maxBatchSize', this.#options.maxBatchSize, 1);
    validateMaxDelay(this.#options.maxDelay);
    expectInteger('concurrency', this.#options.concurrency, 1);
    expectDuration('claimIdleMs', this.#options.claimIdleMs, 0);
    this.#policy = this.#options.maxDelay === 'auto' ? new AdaptivePolicy(this.#cost, this.#arrivals, undefined) : undefined;
    this.#keys = streamKeys(options.prefix ?? DEFAULT_PREFIX, options.name);
    this.#replyKey = replyKeyPattern(options.prefix ?? DEFAULT_PREFIX);
    this.#consumer = options.consumer ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  }

  get stats(): RemoteWorkerStats {
    return { ...this.#stats };
  }

  async start(): Promise<void> {
    const commands = connect(this.#options.redis, `bfn-worker-${this.#consumer}`);
    commands.on('error', () => {});
    this.#commands = commands;
    await ready(commands);
    await this.#register();
    for (let i = 0; i < this.#options.concurrency; i++) {
      const reader = connect(this.#options.redis, `bfn-reader-${this.#consumer}-${i}`);
      reader.on('error', () => {});
      await ready(reader);
      this.#readers.push(reader);
      this.#loops.push(this.#loop(reader));
    }
    this.#claimTimer = setInterval(() => void this.#claim(), Math.max(100, this.#options.claimIdleMs / 2));
    await this.#claim();
  }

  /** Stops reading, finishes and answers the batches already read, then disconnects. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#claimTimer !== undefined) clearInterval(this.#claimTimer);
    await Promise.all(this.#loops);
    for (const reader of this.#readers) reader.disconnect();
    this.#commands?.disconnect();
  }

  async #loop(reader: Redis): Promise<void> {
    while (!this.#stopping) {
      try {
        const entries = await this.#readBatch(reader);
        if (entries.length > 0) await this.#run(entries);
      } catch (error) {
        if (this.#stopping) return;
        // A Redis that restarted without persistence has lost the group and the signature: recreate them.
        if (String((error as Error)?.message).includes('NOGROUP')) await this.#register().catch(() => {});
        // Redis went away: wait and try again; what was read but not acked will be reclaimed.
        else await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  async #register(): Promise<void> {
    const commands = this.#commands as Redis;
    await ensureGroup(commands, this.#keys.requests, GROUP);
    if (this.#options.signature !== undefined) await commands.set(this.#keys.signature, JSON.stringify(this.#options.signature));
  }

  async #read(reader: Redis, count: number, block: number | undefined): Promise<Entry[]> {
    const args: (string | number)[] = ['GROUP', GROUP, this.#consumer, 'COUNT', count];
    if (block !== undefined) args.push('BLOCK', block);
    args.push('STREAMS', this.#keys.requests, '>');
    const result = (await (reader as unknown as { xreadgroupBuffer(...a: (string | number)[]): Promise<[Buffer, [Buffer, Buffer[]][]][] | null> }).xreadgroupBuffer(...args));
    if (result === null) return [];
    const entries = result.flatMap(([, list]) => list.map(([id, fields]) => parseEntry(id, fields)));
    for (const entry of entries) this.#held.add(entry.entryId);
    return entries;
  }

  async #readBatch(reader: Redis): Promise<Entry[]> {
    const max = this.#options.maxBatchSize;
    const entries = this.#reclaimed.splice(0, max);
    if (entries.length === 0) entries.push(...(await this.#read(reader, max, 500)));
    if (entries.length === 0) return entries;
    this.#arrivals.add(entries.length, performance.now());
    const oldest = Math.min(...entries.map((e) => arrivalOf(e.entryId)));
    while (entries.length < max && !this.#stopping) {
      const wake = this.#wakeAt(entries, oldest);
      if (wake === undefined) break;
      const more = await this.#read(reader, max - entries.length, undefined);
      if (more.length > 0) {
        entries.push(...more);
        this.#arrivals.add(more.length, performance.now());
      } else {
        await new Promise((resolve) => setTimeout(resolve, Math.min(1, wake)));
      }
    }
    return entries;
  }

  /**
   * How long to keep filling, in ms from now, or undefined to send at once.
   * The entries' arrival is Redis's clock (epoch ms in the stream ID); the
   * policy works on this process's monotonic clock, so it is converted here.
   */
  #wakeAt(entries: Entry[], oldestEpoch: number): number | undefined {
    if (this.#policy === undefined) {
      const remaining = oldestEpoch + (this.#options.maxDelay as number) - Date.now();
      return remaining > 0 ? remaining : undefined;
    }
    const t = performance.now();
    const oldestArrival = t - (Date.now() - oldestEpoch);
    const decision = this.#policy.decide({ rows: entries.length, oldestArrival, maxRows: this.#options.maxBatchSize }, t, 'arrival');
    return typeof decision === 'number' ? Math.max(0, decision - t) : undefined;
  }

  async #run(read: Entry[]): Promise<void> {
    // An entry with a foreign reply key cannot be answered safely: it is acknowledged and dropped.
    const entries = read.filter((entry) => this.#replyKey.test(entry.reply));
    const dropped = read.filter((entry) => !this.#replyKey.test(entry.reply)).map((entry) => entry.entryId);
    if (dropped.length > 0) {
      this.#stats.unanswerable += dropped.length;
      await this.#forget(dropped);
    }
    if (entries.length === 0) return;
    const started = performance.now();
    const maxWaitMs = Date.now() - Math.min(...entries.map((e) => arrivalOf(e.entryId)));
    const outcomes = await Promise.all(
      entries.map(async (entry): Promise<WireResult> => {
        if (entry.invalid !== undefined) {
          this.#stats.invalid++;
          return [entry.id, false, invalidEntry(entry.invalid)];
        }
        if (entry.deadline > 0 && entry.deadline <= Date.now()) {
          this.#stats.expired++;
          const expired = Object.assign(new TimeoutError(Math.max(0, entry.deadline - arrivalOf(entry.entryId))), { message: 'The request expired before a worker could run it' });
          return [entry.id, false, serializeError(expired)];
        }
        let input: I;
        try {
          input = decode<I>(entry.payload);
          this.#options.validate?.(input);
        } catch (error) {
          this.#stats.invalid++;
          return [entry.id, false, serializeError(error)];
        }
        try {
          return [entry.id, true, await this.#options.predict(input)];
        } catch (error) {
          return [entry.id, false, serializeError(error)];
        }
      }),
    );
    const execMs = performance.now() - started;
    const rows = entries.reduce((sum, e) => sum + e.rows, 0);
    this.#cost.observe(entries.length, execMs);
    const batch = {
      rows,
      items: entries.length,
      reason: entries.length >= this.#options.maxBatchSize ? 'full' : this.#policy === undefined ? 'delay' : 'adaptive',
      execMs,
      maxWaitMs,
    };
    // One reply per frontend per batch, then ack and delete: answered entries leave the stream.
    const byReply = new Map<string, WireResult[]>();
    entries.forEach((entry, i) => byReply.set(entry.reply, [...(byReply.get(entry.reply) ?? []), outcomes[i] as WireResult]));
    const pipeline = (this.#commands as Redis).pipeline();
    for (const [reply, results] of byReply) {
      const message: WireReply = { batch, results };
      pipeline.xadd(reply, 'MAXLEN', '~', '10000', '*', 'm', encode(message));
    }
    const ids = entries.map((e) => e.entryId);
    pipeline.xack(this.#keys.requests, GROUP, ...ids);
    pipeline.xdel(this.#keys.requests, ...ids);
    try {
      await pipeline.exec();
    } finally {
      // Answered, or not: if the replies failed to go out, the entries stay pending and this
      // worker (or another) takes them again after claimIdleMs. Callers drop any duplicate.
      for (const id of ids) this.#held.delete(id);
    }
    this.#stats.batches++;
    this.#stats.entries += entries.length;
    this.#stats.replies += byReply.size;
  }

  async #forget(ids: string[]): Promise<void> {
    try {
      await (this.#commands as Redis).pipeline().xack(this.#keys.requests, GROUP, ...ids).xdel(this.#keys.requests, ...ids).exec();
    } finally {
      for (const id of ids) this.#held.delete(id);
    }
  }

  /**
   * Takes over entries a dead (or stuck) worker read but never answered. At
   * least once: a slow worker that answers after all produces a duplicate,
   * which its frontend drops.
   */
  async #claim(): Promise<void> {
    if (this.#stopping || this.#commands === undefined) return;
    try {
      let cursor = '0-0';
      do {
        const [next, claimed, deleted] = (await (this.#commands as unknown as { xautoclaimBuffer(...a: (string | number)[]): Promise<[Buffer, [Buffer, Buffer[]][], Buffer[]]> }).xautoclaimBuffer(
          this.#keys.requests,
          GROUP,
          this.#consumer,
          this.#options.claimIdleMs,
          cursor,
          'COUNT',
          this.#options.maxBatchSize,
        ));
        cursor = next.toString();
        for (const [id, fields] of claimed) {
          if (fields === null || this.#held.has(id.toString())) continue;
          this.#held.add(id.toString());
          this.#reclaimed.push(parseEntry(id, fields));
          this.#stats.reclaimed++;
        }
        // Entries deleted (aborted) while pending: acknowledge them so they leave the pending list.
        if (deleted?.length > 0) await this.#commands.xack(this.#keys.requests, GROUP, ...deleted.map((d) => d.toString()));
      } while (cursor !== '0-0');
    } catch {
      // Redis unavailable: the next round tries again.
    }
  }
}

export async function startRemoteWorker<I, O>(options: RemoteWorkerOptions<I, O>): Promise<RemoteWorker<I, O>> {
  const worker = new RemoteWorker(options);
  await worker.start();
  return worker;
}
