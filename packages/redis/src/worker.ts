import { hostname } from 'node:os';
import { type BatchedFn, type BatchInfo, TimeoutError } from 'batched-fn';
import { serializeError } from 'batched-fn/adapter';
import type { Redis } from 'ioredis';
import { connect, ensureGroup, ready, type RedisTarget } from './connection.js';
import { arrivalOf, type Entry, invalidEntry, parseEntry } from './entry.js';
import { GROUP, replyKeyPattern, type StreamKeys, streamKeys } from './keys.js';
import { resolveOptions, WORKER_OPTIONS } from './options.js';
import { ReplyOutbox } from './outbox.js';
import { decode, type WireResult } from './wire.js';

export interface RemoteWorkerOptions<I, O> {
  redis: RedisTarget;
  name: string;
  prefix?: string;
  /**
   * The batcher that runs the model: its window (`maxDelay`, `'auto'`), batch size, rows
   * (`size`), priorities and shedding apply to entries exactly as to local calls. To report its
   * batches to the frontends' metrics, give it `onBatch: (info) => worker.observe(info)`.
   */
  predict: BatchedFn<I, O>;
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
  /** Batches the worker's batcher ran (its own `stats` has the rest: reasons, sizes, cost curve). */
  batches: number;
  entries: number;
  expired: number;
  reclaimed: number;
  replies: number;
  /** Entries refused before joining a batch: malformed fields, an undecodable or invalid payload. */
  invalid: number;
  /** Entries dropped unanswered because their reply key is not one of this deployment's. */
  unanswerable: number;
  /** Reply streams found with the largest possible ID written into them (which stops XADD *), and repaired. */
  repairedStreams: number;
}

/** While the batcher is full, how often to look for room again. */
const POLL_MS = 1;
/** How long a read blocks on the stream when nothing arrives (also how long stop() may wait for it). */
const READ_BLOCK_MS = 500;

/**
 * A source and a sink, not a scheduler: reads entries from a model's stream
 * into the core batcher, with each entry's arrival (its stream ID time) so
 * the window counts from when Redis received it, and writes the answers back.
 *
 * It reads only while the batcher has room: queued rows below what its next
 * batches can take (maxBatchSize × concurrency). The backlog stays in the
 * stream, where other workers can take it.
 */
export class RemoteWorker<I, O> {
  readonly #options: RemoteWorkerOptions<I, O>;
  readonly #keys: StreamKeys;
  readonly #consumer: string;
  readonly #claimIdleMs: number;
  readonly #stats: Omit<RemoteWorkerStats, 'batches' | 'repairedStreams'> = {
    entries: 0,
    expired: 0,
    reclaimed: 0,
    replies: 0,
    invalid: 0,
    unanswerable: 0,
  };
  readonly #reclaimed: Entry[] = [];
  /** Entries this worker holds (read or claimed, not yet acked): never claimed again by itself. */
  readonly #held = new Set<string>();
  /** Replies go only to this deployment's frontends: a key from the stream is not trusted to name any other. */
  readonly #replyKey: RegExp;
  #commands: Redis | undefined;
  #reader: Redis | undefined;
  #outbox: ReplyOutbox | undefined;
  #loop: Promise<void> | undefined;
  #claimTimer: ReturnType<typeof setInterval> | undefined;
  #stopping = false;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: RemoteWorkerOptions<I, O>) {
    this.#options = resolveOptions(WORKER_OPTIONS, options, ['redis', 'name', 'predict']);
    this.#claimIdleMs = this.#options.claimIdleMs as number;
    this.#keys = streamKeys(this.#options.prefix as string, this.#options.name);
    this.#replyKey = replyKeyPattern(this.#options.prefix as string);
    this.#consumer = this.#options.consumer ?? `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  }

  get stats(): RemoteWorkerStats {
    return {
      batches: this.#options.predict.stats.batches,
      ...this.#stats,
      replies: this.#outbox?.replies ?? 0,
      repairedStreams: this.#outbox?.repairedStreams ?? 0,
    };
  }

  /** Tells the frontends about a settled batch: wire the batcher's `onBatch` here. */
  observe(info: BatchInfo): void {
    this.#outbox?.observe(info);
  }

  async start(): Promise<void> {
    const commands = connect(this.#options.redis, `bfn-worker-${this.#consumer}`);
    const reader = connect(this.#options.redis, `bfn-reader-${this.#consumer}`);
    commands.on('error', () => {});
    reader.on('error', () => {});
    this.#commands = commands;
    this.#reader = reader;
    this.#outbox = new ReplyOutbox(commands, this.#keys.requests, (ids) => {
      for (const id of ids) this.#held.delete(id);
    });
    await Promise.all([ready(commands), ready(reader)]);
    await this.#register();
    this.#loop = this.#readLoop();
    this.#claimTimer = setInterval(() => void this.#claim(), Math.max(100, this.#claimIdleMs / 2));
    await this.#claim();
  }

  /** Stops reading, finishes and answers the entries already read, then disconnects. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#claimTimer !== undefined) clearInterval(this.#claimTimer);
    await this.#loop;
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
    await this.#outbox?.flush();
    this.#reader?.disconnect();
    this.#commands?.disconnect();
  }

  /** Rows the batcher can still take before its next batches are full: what to read now. */
  #room(): number {
    const { maxBatchSize, concurrency } = this.#options.predict.settings;
    return Math.floor(maxBatchSize * concurrency - this.#options.predict.stats.queuedRows);
  }

  async #readLoop(): Promise<void> {
    while (!this.#stopping) {
      try {
        const room = this.#room();
        if (room < 1) {
          await new Promise((resolve) => setTimeout(resolve, POLL_MS));
          continue;
        }
        // BLOCK returns the moment an entry arrives (only its timeout is rounded to Redis's hz tick),
        // and the batcher's own timer closes the window: reading can always block while there is room.
        const entries = this.#reclaimed.splice(0, room);
        if (entries.length === 0) entries.push(...(await this.#read(room, READ_BLOCK_MS)));
        if (entries.length > 0) await this.#accept(entries);
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
    if (this.#options.signature !== undefined)
      await commands.set(this.#keys.signature, JSON.stringify(this.#options.signature));
  }

  async #read(count: number, block: number | undefined): Promise<Entry[]> {
    const args: (string | number)[] = ['GROUP', GROUP, this.#consumer, 'COUNT', count];
    if (block !== undefined) args.push('BLOCK', block);
    args.push('STREAMS', this.#keys.requests, '>');
    const reader = this.#reader as unknown as {
      xreadgroupBuffer(...a: (string | number)[]): Promise<[Buffer, [Buffer, Buffer[]][]][] | null>;
    };
    const result = await reader.xreadgroupBuffer(...args);
    if (result === null) return [];
    const entries = result.flatMap(([, list]) => list.map(([id, fields]) => parseEntry(id, fields)));
    for (const entry of entries) this.#held.add(entry.entryId);
    return entries;
  }

  /** Hands each entry to the batcher; an entry with a foreign reply key is dropped unanswered. */
  async #accept(entries: Entry[]): Promise<void> {
    const dropped: string[] = [];
    for (const entry of entries) {
      if (!this.#replyKey.test(entry.reply)) {
        dropped.push(entry.entryId);
        continue;
      }
      this.#stats.entries++;
      const settled = this.#run(entry).then((result) =>
        (this.#outbox as ReplyOutbox).send(entry.reply, entry.entryId, result),
      );
      this.#inFlight.add(settled);
      void settled.finally(() => this.#inFlight.delete(settled));
    }
    if (dropped.length > 0) {
      this.#stats.unanswerable += dropped.length;
      await (this.#outbox as ReplyOutbox).forget(dropped);
    }
  }

  /** One entry through the batcher, as a call that arrived (and may expire) when the entry says. */
  async #run(entry: Entry): Promise<WireResult> {
    if (entry.invalid !== undefined) {
      this.#stats.invalid++;
      return [entry.id, false, invalidEntry(entry.invalid)];
    }
    const arrivedEpoch = arrivalOf(entry.entryId);
    const remaining = entry.deadline > 0 ? entry.deadline - Date.now() : undefined;
    if (remaining !== undefined && remaining <= 0) {
      this.#stats.expired++;
      const expired = Object.assign(new TimeoutError(Math.max(0, entry.deadline - arrivedEpoch)), {
        message: 'The request expired before a worker could run it',
      });
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
      const output = await this.#options.predict(input, {
        // Stream IDs are Redis's epoch clock; the batcher's window runs on performance.now().
        arrival: arrivedEpoch - performance.timeOrigin,
        ...(remaining === undefined ? {} : { timeout: Math.min(remaining, 2_147_483_647) }),
        ...(entry.priority === 0 ? {} : { priority: entry.priority }),
        // The frontend's request span, on another machine perhaps: the batch span links to it.
        ...(entry.trace === undefined ? {} : { trace: entry.trace }),
      });
      return [entry.id, true, output];
    } catch (error) {
      return [entry.id, false, serializeError(error)];
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
        const commands = this.#commands as unknown as {
          xautoclaimBuffer(...a: (string | number)[]): Promise<[Buffer, [Buffer, Buffer[]][], Buffer[]]>;
        };
        const [next, claimed, deleted] = await commands.xautoclaimBuffer(
          this.#keys.requests,
          GROUP,
          this.#consumer,
          this.#claimIdleMs,
          cursor,
          'COUNT',
          100,
        );
        cursor = next.toString();
        for (const [id, fields] of claimed) {
          if (fields === null || this.#held.has(id.toString())) continue;
          this.#held.add(id.toString());
          this.#reclaimed.push(parseEntry(id, fields));
          this.#stats.reclaimed++;
        }
        // Entries deleted (aborted) while pending: acknowledge them so they leave the pending list.
        if (deleted?.length > 0)
          await this.#commands.xack(this.#keys.requests, GROUP, ...deleted.map((d) => d.toString()));
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
