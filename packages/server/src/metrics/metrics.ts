import type { BatchInfo, StepInfo } from 'batched-fn';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { SeriesCounter, SeriesHistogram } from './series.js';
import type { Protocol } from '../protocol/infer-front.js';
import { ModelStatistics } from '../protocol/statistics.js';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { GENERATION_CHANNEL, type GenerationEvent } from '../protocol/generation.js';
import type { ServedModel } from '../model/served-model.js';

const SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Who else wants each event the metrics see (the dashboard): called after the series are updated. */
export interface MetricsListener {
  batch?(info: BatchInfo): void;
  request?(model: string, status: number, seconds: number, protocol: Protocol): void;
  step?(info: StepInfo): void;
  firstToken?(model: string, seconds: number): void;
}

/**
 * The server's Prometheus series. Inference count and batch count are kept
 * apart, as Triton does: their ratio is the batching you actually get.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  // The series of every request and batch are resolved once per label set (series.ts).
  readonly #requests = new SeriesCounter({
    name: 'batched_fn_requests_total',
    help: 'Inference requests answered, by model, protocol (rest, grpc, or internal: a model calling another) and HTTP status (gRPC answers counted under the HTTP status REST would send)',
    labelNames: ['model', 'protocol', 'status'],
    registry: this.registry,
  });
  readonly #requestSeconds = new SeriesHistogram(
    {
      name: 'batched_fn_request_duration_seconds',
      help: 'Time from receiving an infer request to answering it',
      labelNames: ['model', 'protocol'],
      buckets: SECONDS_BUCKETS,
    },
    this.registry,
  );
  readonly #batchSize = new SeriesHistogram(
    { name: 'batched_fn_batch_size', help: 'Rows per executed batch', labelNames: ['model'], buckets: SIZE_BUCKETS },
    this.registry,
  );
  readonly #queueWait = new SeriesHistogram(
    {
      name: 'batched_fn_queue_wait_seconds',
      help: 'Queue wait of the oldest request in each batch',
      labelNames: ['model'],
      buckets: SECONDS_BUCKETS,
    },
    this.registry,
  );
  readonly #inference = new SeriesHistogram(
    {
      name: 'batched_fn_inference_duration_seconds',
      help: 'Model execution time per batch, including the hand-off to the worker thread',
      labelNames: ['model'],
      buckets: SECONDS_BUCKETS,
    },
    this.registry,
  );
  readonly #batches = new SeriesCounter({
    name: 'batched_fn_batches_total',
    help: 'Executed batches, by why they were dispatched and whether they succeeded',
    labelNames: ['model', 'reason', 'ok'],
    registry: this.registry,
  });
  readonly #models: ServedModel[] = [];
  readonly #tokens = new Counter({
    name: 'batched_fn_generated_tokens_total',
    help: 'Tokens generated, by model',
    labelNames: ['model'],
    registers: [this.registry],
  });
  readonly #stepSize = new Histogram({
    name: 'batched_fn_step_batch_size',
    help: 'Sequences per decode step',
    labelNames: ['model'],
    buckets: SIZE_BUCKETS,
    registers: [this.registry],
  });
  readonly #firstToken = new Histogram({
    name: 'batched_fn_time_to_first_token_seconds',
    help: 'From a generate request to its first token',
    labelNames: ['model'],
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly #listeners = new Set<MetricsListener>();
  /** Triton's statistics extension, fed from the same batches and requests. */
  readonly statistics = new ModelStatistics([]);

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.#listenToGeneration();
    const models = this.#models;
    for (const [name, help, field] of [
      ['batched_fn_active_sequences', 'Sequences in running decode steps', 'active'],
      ['batched_fn_waiting_sequences', 'Sequences waiting to join a decode step', 'waiting'],
    ] as const) {
      new Gauge({
        name,
        help,
        labelNames: ['model'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const m of models)
            if (m.generator !== undefined) this.inc({ model: m.name }, m.generator.stream.stats[field]);
        },
      });
    }
    new Gauge({
      name: 'batched_fn_held_sequences',
      help: 'Sequences a stateful model holds state for (an expired one until it is freed)',
      labelNames: ['model'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const model of models)
          if (model.sequences !== undefined) this.inc({ model: model.name }, model.sequences.size);
      },
    });
    new Gauge({
      name: 'batched_fn_queue_depth',
      help: 'Requests waiting to be batched',
      labelNames: ['model'],
      registers: [this.registry],
      collect() {
        // Reset first: an unloaded model's series leaves instead of keeping its last value. The
        // versions of a model (repository/triton-repository.ts) add up under its one label.
        this.reset();
        for (const model of models) this.inc({ model: model.name }, model.batcher.stats.queued);
      },
    });
    new Gauge({
      name: 'batched_fn_inflight_batches',
      help: 'Batches running now',
      labelNames: ['model'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const model of models) this.inc({ model: model.name }, model.batcher.stats.inFlight);
      },
    });
    new Gauge({
      name: 'batched_fn_worker_restarts',
      help: 'Worker threads restarted after a crash, per worker, since the server started',
      labelNames: ['model', 'worker'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const model of models) {
          for (const worker of model.batcher.stats.workers)
            this.set({ model: model.name, worker: String(worker.id) }, worker.restarts);
        }
      },
    });
  }

  /** Subscribes to every batch, request, step and first token; returns the unsubscribe. */
  listen(listener: MetricsListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The generation front's events (protocol/generation.ts), for the instances this server tracks:
   * time to first token, Triton's `response_stats`, and each generation as a request of the
   * statistics. Held weakly: a metrics object nobody holds stops listening at the next event.
   */
  #listenToGeneration(): void {
    const self = new WeakRef(this);
    const onEvent = (message: unknown): void => {
      const metrics = self.deref();
      if (metrics === undefined) {
        unsubscribe(GENERATION_CHANNEL, onEvent);
        return;
      }
      metrics.#generation(message as GenerationEvent);
    };
    subscribe(GENERATION_CHANNEL, onEvent);
  }

  #generation(event: GenerationEvent): void {
    if (!this.#models.includes(event.source)) return;
    if (event.type === 'response') {
      if (event.index === 0) this.firstToken(event.model, event.ms / 1000);
      this.statistics.response(event.model, event.version, event.index, 'success', event.ms);
      return;
    }
    if (event.result !== 'ok')
      this.statistics.response(
        event.model,
        event.version,
        event.responses,
        event.result === 'cancelled' ? 'cancel' : 'fail',
        0,
      );
    this.statistics.request(event.model, event.result === 'ok', event.ms / 1000, event.version);
  }

  /** One decode step of `sequences` sequences, which handed out `values` tokens. */
  readonly onStep = (info: StepInfo): void => {
    this.#tokens.inc({ model: info.name }, info.values);
    this.#stepSize.observe({ model: info.name }, info.sequences);
    for (const listener of this.#listeners) listener.step?.(info);
  };

  firstToken(model: string, seconds: number): void {
    this.#firstToken.observe({ model }, seconds);
    for (const listener of this.#listeners) listener.firstToken?.(model, seconds);
  }

  /** A model instance stopped (unloaded, or replaced by a reload): its gauges go with it. */
  untrack(model: ServedModel): void {
    const index = this.#models.indexOf(model);
    if (index >= 0) this.#models.splice(index, 1);
  }

  track(model: ServedModel): void {
    this.#models.push(model);
    this.statistics.add(model.name, model.version);
  }

  /** A batch of a model (of its `version`, for a model serving several: the statistics count each apart). */
  readonly onBatch = (info: BatchInfo, version?: string): void => {
    this.statistics.onBatch(info, version);
    this.#batchSize.observe(this.#batchSize.series(info.name), info.rows);
    this.#queueWait.observe(this.#queueWait.series(info.name), info.maxWaitMs / 1000);
    this.#inference.observe(this.#inference.series(info.name), info.execMs / 1000);
    this.#batches.series(info.name, info.reason, info.ok ? 'true' : 'false').pending++;
    for (const listener of this.#listeners) listener.batch?.(info);
  };

  request(model: string, status: number, seconds: number, protocol: Protocol = 'rest', version?: string): void {
    this.statistics.request(model, status === 200, seconds, version);
    this.#requests.series(model, protocol, String(status)).pending++;
    this.#requestSeconds.observe(this.#requestSeconds.series(model, protocol), seconds);
    for (const listener of this.#listeners) listener.request?.(model, status, seconds, protocol);
  }
}
