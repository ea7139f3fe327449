import { type RemoteWorker, startRemoteWorker } from '@batched-fn/redis';
import { UsageError } from './cli-args.js';
import { parseFlags } from './flags.js';
import { assertInferItem } from '../protocol/infer-item.js';
import type { InferItem, InferResult } from '../model/tensor.js';
import { ensureMlpModel } from '../builtin/default-model.js';
import { createOnnxModel } from '../formats/onnx-model.js';
import { SETTING_DEFAULTS } from '../settings/settings.js';
import { loadOptional, OTEL_PACKAGES } from '../optional.js';
import { onShutdownSignals } from './shutdown.js';

/**
 * `batched-fn worker --redis URL`: a model worker with no HTTP. It runs the
 * model in worker threads, takes batches from the model's stream, and
 * publishes the signature the HTTP frontends validate against.
 */
export async function runRemoteWorker(argv: string[]): Promise<void> {
  const flags = parseFlags('worker', argv) as {
    redis?: string;
    model?: string;
    name?: string;
    prefix?: string;
    maxBatchSize?: number;
    maxDelay?: number | 'auto';
    workers?: number;
    threads?: number;
    claimIdleMs?: number;
    batchTimeout?: number;
    cacheDir?: string;
    otel?: boolean;
  };
  const redis = flags.redis;
  if (redis === undefined) throw new UsageError('--redis is required (redis://host:port, or rediss:// for TLS)');
  const modelFile = flags.model;
  const name = flags.name ?? (modelFile === undefined ? 'mlp' : undefined);
  const maxBatchSize = flags.maxBatchSize ?? SETTING_DEFAULTS.maxBatchSize;
  const workers = flags.workers ?? SETTING_DEFAULTS.workers;
  const maxDelay = flags.maxDelay ?? SETTING_DEFAULTS.maxDelay;
  const { claimIdleMs, batchTimeout, prefix } = flags;
  // The worker feeds entries into this batcher with their arrival times: its window, rows and
  // shedding are the ones every local call gets. Its batches are reported to the frontends.
  let remote: RemoteWorker<InferItem, InferResult> | undefined;
  // With --otel each batch span links to the frontends' request spans, whose contexts travel in the entries.
  const telemetry =
    flags.otel === true
      ? await (await loadOptional('--otel', OTEL_PACKAGES, () => import('../otel/setup.js'))).startTelemetry()
      : undefined;
  const model = createOnnxModel({
    path: modelFile ?? ensureMlpModel(undefined, flags.cacheDir),
    ...(name === undefined ? {} : { name }),
    maxBatchSize,
    maxDelay,
    workers,
    onBatch: (info) => remote?.observe(info),
    threads: flags.threads ?? SETTING_DEFAULTS.threads,
    ...(batchTimeout === undefined ? {} : { batchTimeout }),
    ...(telemetry === undefined ? {} : { tracing: telemetry.tracing }),
  });
  await model.batcher.ready();
  const worker = await startRemoteWorker<InferItem, InferResult>({
    redis,
    name: model.name,
    ...(prefix === undefined ? {} : { prefix }),
    predict: model.batcher,
    // The frontends refuse requests with more rows before allocating their tensors.
    signature: { ...model.signature, maxBatchSize },
    // Entries are checked against the signature before they join a batch: one lying entry fails alone.
    validate: (input) => assertInferItem(input, model.signature, model.maxBatchSize ?? maxBatchSize),
    ...(claimIdleMs === undefined ? {} : { claimIdleMs }),
  });
  remote = worker;
  // Handlers go in before "ready" is printed: a supervisor may signal the moment it reads it.
  onShutdownSignals(
    async () => {
      process.stdout.write('finishing the batch in hand...\n');
      await worker.stop();
      await model.batcher.close();
      await telemetry?.shutdown();
      process.stdout.write(`stats ${JSON.stringify(worker.stats)}\n`);
    },
    () => model.batcher.close({ timeout: 0 }),
  );
  process.stdout.write(
    `batched-fn worker ready: model "${model.name}" from ${redis.replace(/\/\/[^@]*@/, '//***@')}, ${workers} worker thread(s), max batch ${maxBatchSize}\n`,
  );
}
