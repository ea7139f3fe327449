import { DEFAULT_PREFIX, remoteBatchedFn, type RedisTarget, streamKeys } from '@batched-fn/redis';
import type { BatchInfo } from 'batched-fn';
import { Redis } from 'ioredis';
import { stripStamp } from '../model/compute-timing.js';
import type { ServedModel } from '../model/served-model.js';
import type { ModelSignature } from '../model/signature.js';
import type { InferItem, InferResult } from '../model/tensor.js';

export interface RemoteModelOptions {
  redis: string;
  name: string;
  prefix?: string;
  channelCap?: number;
  onBatch?: (info: BatchInfo) => void;
  /** How long to wait for a worker to publish the model's signature. */
  waitMs?: number;
}

/** Waits for a worker to publish the model's signature: the frontend cannot validate requests without it. */
async function readSignature(redis: RedisTarget, key: string, name: string, waitMs: number): Promise<ModelSignature> {
  const client =
    typeof redis === 'string'
      ? new Redis(redis, { lazyConnect: true, maxRetriesPerRequest: 1 })
      : (redis as Redis).duplicate();
  client.on('error', () => {});
  try {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const raw = await client.get(key).catch(() => null);
      if (raw !== null) return JSON.parse(raw) as ModelSignature;
      if (Date.now() > deadline)
        throw new Error(
          `No worker has registered model "${name}" (${key}) within ${waitMs} ms: start one with \`batched-fn worker --redis ...\``,
        );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    client.disconnect();
  }
}

/** A model whose batches run on remote workers behind Redis Streams, served like a local one. */
export async function createRemoteModel(options: RemoteModelOptions): Promise<ServedModel> {
  const prefix = options.prefix;
  const signature = await readSignature(
    options.redis,
    streamKeys(prefix ?? DEFAULT_PREFIX, options.name).signature,
    options.name,
    options.waitMs ?? 30_000,
  );
  const batcher = remoteBatchedFn<InferItem, InferResult>({
    redis: options.redis,
    name: options.name,
    ...(prefix === undefined ? {} : { prefix }),
    ...(options.channelCap === undefined ? {} : { channelCap: options.channelCap }),
    ...(options.onBatch === undefined ? {} : { onBatch: options.onBatch }),
    size: (item) => item.rows,
  });
  const published = (signature as { maxBatchSize?: unknown }).maxBatchSize;
  return {
    name: options.name,
    version: '1',
    platform: 'onnxruntime_onnx (remote workers)',
    signature: { inputs: signature.inputs, outputs: signature.outputs },
    ...(typeof published === 'number' && Number.isInteger(published) && published >= 1
      ? { maxBatchSize: published }
      : {}),
    batcher,
    // A request's small tensors may be views into Node's Buffer pool: the frontend serializes each
    // call as it is made (v8.serialize writes a view's own bytes, never its whole buffer), so they
    // need no copy of their own first.
    takesSharedViews: true,
    // A remote worker's results carry its compute stamp (compute-timing.ts); its clock is not ours.
    infer: (item, callOptions) => batcher(item, callOptions).then(stripStamp),
  };
}
