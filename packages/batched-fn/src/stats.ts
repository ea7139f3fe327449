/** Why a batch left the queue. Visible in `stats.dispatchReasons` and every `BatchInfo`. */
export type DispatchReason =
  /** The queued rows reached `maxBatchSize`. */
  | 'full'
  /** The oldest item waited `maxDelay` while a batch slot was free. */
  | 'delay'
  /** A slot freed up and the oldest item had already waited `maxDelay` behind busy batches. */
  | 'backlog'
  /** `close()` flushes the queue without waiting for the delay. */
  | 'close'
  /** The adaptive policy (`maxDelay: 'auto'`) judged that waiting no longer pays. */
  | 'adaptive'
  /** The queued rows reached one of `preferredBatchSizes`. */
  | 'preferred';

export const DISPATCH_REASONS: readonly DispatchReason[] = [
  'full',
  'delay',
  'backlog',
  'close',
  'adaptive',
  'preferred',
];

/** What one settled batch looked like; passed to `onBatch` and the diagnostics channel. */
export interface BatchInfo {
  name: string;
  /** Items (calls) in the batch. */
  items: number;
  /** Rows in the batch, the sum of each item's `size`. */
  rows: number;
  reason: DispatchReason;
  /** How long the oldest item in the batch waited in the queue, in ms. */
  maxWaitMs: number;
  /** The queue waits of all its items added up, in ms (absent when the batch came from elsewhere). */
  totalWaitMs?: number;
  /** Time from dispatch until the handler's outputs (or error) came back, in ms. */
  execMs: number;
  /** False when the handler threw, rejected, or returned the wrong number of outputs. */
  ok: boolean;
  /** The worker thread that ran it (worker mode). */
  worker?: number;
}

export interface Percentiles {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface WorkerStats {
  id: number;
  threadId: number | undefined;
  state: 'idle' | 'busy' | 'starting' | 'restarting' | 'stopped';
  batches: number;
  items: number;
  busyMs: number;
  restarts: number;
  /** Messages on the worker's port that were not the pool's protocol (user code posting on parentPort): ignored. */
  ignoredMessages: number;
}

/** A plain snapshot; reading `predict.stats` twice gives two independent objects. */
export interface BatchedFnStats {
  /** Items waiting in the queue, not yet dispatched. */
  queued: number;
  /** Rows those items count against `maxBatchSize`. */
  queuedRows: number;
  /** Batches running now. */
  inFlight: number;
  /** Items in those batches whose callers still wait. */
  inFlightItems: number;
  /** Calls made, including the ones rejected at once. */
  calls: number;
  /** Calls that resolved with an output. */
  completed: number;
  /** Calls that rejected, for any reason. */
  failed: number;
  /** Failed calls broken down: by error `code`, `aborted`, or `handler` for the model's own errors. */
  failures: Record<string, number>;
  /** Batches that have settled. */
  batches: number;
  /** Batches dispatched, by why they left the queue. */
  dispatchReasons: Record<DispatchReason, number>;
  /** Rows per batch over the recent window. */
  batchSize: Percentiles;
  /** Queue wait per item in ms over the recent window. */
  waitMs: Percentiles;
  /** Handler time per batch in ms over the recent window. */
  execMs: Percentiles;
  /** Per-worker figures in worker mode; empty inline. */
  workers: WorkerStats[];
  /**
   * The learned cost curve c(N) = fixedMs + perRowMs·N, once enough batches of different sizes have run.
   * `slotEfficiency`: with `concurrency` > 1, what a batch running beside another gains, learned from their
   * durations: 1 when batches beside each other take what they take alone (a device per slot), 0 when they
   * share one device (and until batches have run beside others); `maxDelay: 'auto'` plans for
   * 1 + (concurrency − 1)·slotEfficiency batches at once.
   */
  costModel: { fixedMs: number; perRowMs: number; samples: number; slotEfficiency: number } | undefined;
}

/** The tunables in force (constructor options, as changed by `configure()`). */
export interface BatchedFnSettings {
  maxBatchSize: number;
  maxDelay: number | 'auto';
  channelCap: number;
  concurrency: number;
}
