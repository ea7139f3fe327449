/**
 * Runs inside each worker thread: owns one InferenceSession (the batcher's
 * context) and turns a batch of requests into one `session.run`.
 */
import { move, type PackedBatch } from 'batched-fn';
import * as ort from 'onnxruntime-node';
import { now, stampResults, type WorkerStamp } from '../model/compute-timing.js';
import { inferCodec, packStacked, stackedOf } from '../model/infer-codec.js';
import type { BatchedWorkerData } from './served-batcher.js';
import type { NumericDatatype } from '../model/signature.js';
import {
  concatRows,
  DATATYPE_FOR_ORT,
  type InferItem,
  type InferResult,
  ORT_TYPE,
  splitRows,
  type Tensor,
} from '../model/tensor.js';

export interface OnnxWorkerData extends Partial<BatchedWorkerData> {
  modelPath: string;
  /** Intra-op threads per session: by default one per core (settings.ts defaultThreads says why). */
  threads: number;
}

/**
 * Never terminate this thread mid-batch: onnxruntime-node aborts the whole process when its
 * thread is terminated inside session.run. After a batch timeout the pool retires the worker
 * instead (a fresh one takes its place; this one exits when its run returns).
 */
export const interruptible = false;

interface Session {
  session: ort.InferenceSession;
  batched: boolean;
}

export async function context(data: OnnxWorkerData): Promise<Session> {
  const session = await ort.InferenceSession.create(data.modelPath, {
    intraOpNumThreads: data.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // ONNX Runtime's intra-op threads busy-wait between operators by default (its
    // `session.intra_op.allow_spinning`), burning the core the HTTP thread needs. Measured on 2 cores,
    // default MLP, 1 session x 2 threads: on served less in 5 of 7 runs, quiet or busy (docs/benchmarks.md).
    // The inter-op pool is not used at all: operators run one after another (`sequential`), each
    // spread over the intra-op threads.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  });
  return { session, batched: data.batched !== false };
}

function toOrt(tensor: Tensor): ort.Tensor {
  const type = ORT_TYPE[tensor.datatype as NumericDatatype];
  const value = new ort.Tensor(type as never, tensor.data as never, tensor.shape);
  if (tensor.datatype === 'FP16' && !(value.data instanceof Uint16Array)) {
    // Where Float16Array exists (Node 24), the Tensor holds float16 in one, whose byte length onnxruntime-node
    // 1.30 reads as 0 ("not enough space: expected 8, got 0", microsoft/onnxruntime#32323). It reads the bit
    // patterns' Uint16Array right, so that is what it is given.
    Object.defineProperty(value, 'data', { value: tensor.data });
  }
  return value;
}

function fromOrt(value: ort.Tensor): Tensor {
  const datatype = DATATYPE_FOR_ORT[value.type];
  if (datatype === undefined) throw new TypeError(`Model output type ${value.type} cannot be served`);
  let data = value.data as Tensor['data'];
  if (datatype === 'FP16' && !(data instanceof Uint16Array)) {
    // Where Float16Array exists, ONNX Runtime answers float16 in one: the server keeps the bit patterns.
    const half = data as unknown as { buffer: ArrayBuffer; byteOffset: number; length: number };
    data = new Uint16Array(half.buffer, half.byteOffset, half.length);
  }
  return { datatype, shape: [...value.dims], data };
}

/**
 * A batch as the codec stacked it: one tensor per input straight into `session.run`, and its outputs
 * back as they came, with no object per request on this thread. What crossed unstacked (a model
 * without a batch dimension, inputs that could not be stacked) goes through `handler`.
 */
export async function packedHandler(value: unknown, context: Session): Promise<PackedBatch> {
  const stacked = stackedOf(value);
  if (stacked === undefined || !context.batched)
    return inferCodec.encodeOutputs(await handler(inferCodec.decodeInputs(value), context));
  const { outputs, stamp } = await runRows(context.session, (name) => stacked.tensors[name], stacked.rows);
  return packStacked(stacked.rows, outputs, stamp);
}

export async function handler(batch: InferItem[], { session, batched }: Session): Promise<InferResult[]> {
  if (!batched) return [await runAlone(batch[0] as InferItem, session)];
  const rows = batch.map((item) => item.rows);
  // One request needs no copy; several are stacked into one tensor so the model runs once.
  const input = (name: string): Tensor | undefined =>
    batch.length === 1 ? batch[0]?.inputs[name] : concatRows(batch, name);
  const { outputs, stamp } = await runRows(session, input, rows);
  const perItem: InferResult[] = batch.map(() => ({}));
  for (const [name, output] of Object.entries(outputs))
    splitRows(output, rows).forEach((part, i) => {
      (perItem[i] as InferResult)[name] = part;
    });
  // The views share the batch's output buffers, which are this batch's alone: moving the array hands
  // them over without a copy (the codec asks once, not per result). The stamp lets the server split the
  // batch's time into Triton's compute_input/infer/output.
  return move(stampResults(perItem, stamp));
}

/** One `session.run` over a batch's stacked inputs; its outputs, each checked to keep the batch's rows. */
async function runRows(
  session: ort.InferenceSession,
  input: (name: string) => Tensor | undefined,
  rows: readonly number[],
): Promise<{ outputs: Record<string, Tensor>; stamp: WorkerStamp }> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) {
    const tensor = input(name);
    if (tensor === undefined) throw new TypeError(`The batch has no input \`${name}\``);
    feeds[name] = toOrt(tensor);
  }
  const inferStart = now();
  const results = await session.run(feeds);
  const inferEnd = now();
  const total = rows.reduce((a, b) => a + b, 0);
  const outputs: Record<string, Tensor> = {};
  for (const name of session.outputNames) {
    const output = fromOrt(results[name] as ort.Tensor);
    if (output.shape[0] !== total)
      throw new Error(
        `Output \`${name}\` has ${output.shape[0]} rows for ${total} input rows; ` +
          'the model must keep the batch dimension',
      );
    outputs[name] = output;
  }
  return { outputs, stamp: { inferStart, inferEnd } };
}

/** A model without a batch dimension: one request (its batch of one), its outputs as the model answers them. */
async function runAlone(item: InferItem, session: ort.InferenceSession): Promise<InferResult> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const name of session.inputNames) feeds[name] = toOrt(item.inputs[name] as Tensor);
  const inferStart = now();
  const results = await session.run(feeds);
  const inferEnd = now();
  const result: InferResult = {};
  for (const name of session.outputNames) result[name] = fromOrt(results[name] as ort.Tensor);
  return move(stampResults([result], { inferStart, inferEnd })[0] as InferResult);
}

export async function dispose({ session }: Session): Promise<void> {
  await session.release();
}
