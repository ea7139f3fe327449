/**
 * Runs a model written in JS (`model.js`) inside a batcher worker thread: the
 * user's module builds its context once per worker, and gets each batch as
 * requests in KServe's own terms, answering with tensors or an Error per slot.
 */
import { fileURLToPath } from 'node:url';
import type { MessagePort } from 'node:worker_threads';
import { move } from 'batched-fn';
import { now, stampResults } from '../model/compute-timing.js';
import { HALF_OVERFLOW, toBFloat16Bits, toFloat16Bits } from '../model/half.js';
import { hashFile } from './js-model.exports.js';
import { callerScope, ModelsClient } from './model-calls.worker.js';
import { SequenceStates } from './sequence-states.js';
import type { BatchedWorkerData } from './served-batcher.js';
import type { TensorSpec } from '../model/signature.js';
import {
  ARRAY_FOR,
  type CallerMark,
  elementCount,
  type InferItem,
  type InferResult,
  packedBytes,
  type Tensor,
} from '../model/tensor.js';

/**
 * Batches arrive and leave stacked (the batcher's `codec`); each request's inputs get buffers of
 * their own here (model/infer-codec.ts).
 */
export { ownBuffersCodec as codec } from '../model/infer-codec.js';

export interface JsModelWorkerData extends Partial<BatchedWorkerData> {
  /** The model's name, which its calls to other models are made on behalf of. */
  name: string;
  moduleUrl: string;
  /** model.js's content hash when its exports were read: the only content this worker may run. */
  sha256: string;
  config: Record<string, unknown>;
  outputs: TensorSpec[];
  /** config.parameters.binary: BYTES reach the model as Uint8Array[] rather than string[]. */
  binary: boolean;
  /** A stateful model (`sequence_batching`): each request carries its sequence, whose state this thread keeps. */
  sequences?: boolean;
}

interface UserModule {
  context?: (config: Record<string, unknown>, server: { models: ModelsClient | undefined }) => unknown;
  handler: (requests: unknown[], context: unknown) => unknown;
  dispose?: (context: unknown) => unknown;
}

interface State {
  module: UserModule;
  context: unknown;
  data: JsModelWorkerData;
  /** A stateful model's sequence states, kept in this thread between requests. */
  sequences: SequenceStates | undefined;
}

const decoder = new TextDecoder();

export async function context(
  data: JsModelWorkerData,
  connection?: { port?: MessagePort | undefined },
): Promise<State> {
  // A worker restarted after a crash reads the file again: if it changed since the load, its code
  // would not match the signature requests are checked against, so it refuses to run it. Checked
  // before the import, so changed code does not even run its top level, and after, for a write
  // that lands between the check and the import.
  const unchanged = async (): Promise<void> => {
    if ((await hashFile(data.moduleUrl)) !== data.sha256) {
      throw new Error(
        `${fileURLToPath(data.moduleUrl)} changed since this model was loaded; load the model again to serve the new version`,
      );
    }
  };
  await unchanged();
  const module = (await import(data.moduleUrl)) as UserModule;
  await unchanged();
  // The server's other models, when it gave this worker a channel to them (formats/js-model.ts).
  const models = connection?.port === undefined ? undefined : new ModelsClient(connection.port, data.binary);
  const userContext = typeof module.context === 'function' ? await module.context(data.config, { models }) : undefined;
  return { module, context: userContext, data, sequences: data.sequences === true ? new SequenceStates() : undefined };
}

function toRequest(item: InferItem, binary: boolean): unknown {
  const inputs: Record<string, unknown> = {};
  for (const [name, tensor] of Object.entries(item.inputs)) {
    const data =
      tensor.datatype === 'BYTES' && !binary
        ? (tensor.data as Uint8Array[]).map((element) => decoder.decode(element))
        : tensor.data;
    inputs[name] = { datatype: tensor.datatype, shape: tensor.shape, data };
  }
  return { inputs, parameters: item.parameters ?? {} };
}

/** Numbers → FP16/BF16 patterns; a number past the datatype's range is the model's mistake, not an infinity. */
function halfBits(
  spec: TensorSpec & { datatype: 'FP16' | 'BF16' },
  source: ArrayLike<unknown>,
  count: number,
): Uint16Array {
  const encode = spec.datatype === 'FP16' ? toFloat16Bits : toBFloat16Bits;
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) {
    const value = source[i];
    if (typeof value !== 'number' || Math.abs(value) >= HALF_OVERFLOW[spec.datatype]) {
      throw new TypeError(
        `output \`${spec.name}\` is ${spec.datatype}: element ${i} (${String(value)}) is not a number within its range; answer a Uint16Array of bit patterns for NaN or infinities`,
      );
    }
    out[i] = encode(value);
  }
  return out;
}

/**
 * One output of one request: its data (an array or typed array) checked against its shape and made a
 * tensor. Without a shape it is the request's rows by the declared row shape, or for a model without a
 * batch dimension the declared shape itself. FP16/BF16: a Uint16Array holds bit patterns; a plain
 * array holds numbers, rounded to the datatype. `kept`: the data is the model's own typed array, not
 * one made here.
 */
function toTensor(spec: TensorSpec, value: unknown, rows: number, batched: boolean): { tensor: Tensor; kept: boolean } {
  if (typeof value !== 'object' || value === null)
    throw new TypeError(`output \`${spec.name}\` must be { shape?, data }`);
  const { shape: given, data } = value as { shape?: unknown; data?: unknown };
  const shape = Array.isArray(given) ? (given as number[]) : batched ? [rows, ...spec.shape.slice(1)] : spec.shape;
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new TypeError(
      Array.isArray(given)
        ? `output \`${spec.name}\` has an invalid shape ${JSON.stringify(given)}`
        : `output \`${spec.name}\` needs its \`shape\`: its declared shape ${JSON.stringify(spec.shape)} has a dimension of any size`,
    );
  }
  const count = elementCount(shape);
  const length = (data as { length?: unknown } | null)?.length;
  if (typeof length !== 'number' || length !== count)
    throw new TypeError(`output \`${spec.name}\` has ${String(length)} elements for shape ${JSON.stringify(shape)}`);
  if (spec.datatype === 'BYTES') {
    // One buffer for the whole output (see packedBytes): posting one buffer per string back is quadratic.
    const elements = Array.from(data as ArrayLike<unknown>, (e) => (e instanceof Uint8Array ? e : String(e)));
    return { tensor: { datatype: 'BYTES', shape, data: packedBytes(elements) }, kept: false };
  }
  const type = ARRAY_FOR[spec.datatype];
  if (data instanceof type)
    return { tensor: { datatype: spec.datatype, shape, data: data as Tensor['data'] }, kept: true };
  if (spec.datatype === 'FP16' || spec.datatype === 'BF16') {
    const bits = halfBits(spec as TensorSpec & { datatype: 'FP16' | 'BF16' }, data as ArrayLike<unknown>, count);
    return { tensor: { datatype: spec.datatype, shape, data: bits }, kept: false };
  }
  const big = spec.datatype === 'INT64' || spec.datatype === 'UINT64';
  const out = new type(count);
  const source = data as ArrayLike<number>;
  for (let i = 0; i < count; i++) (out as unknown as unknown[])[i] = big ? BigInt(source[i] as number) : source[i];
  return { tensor: { datatype: spec.datatype, shape, data: out }, kept: false };
}

/**
 * A stateful model's batch: each request gets its sequence (`{ id, start, end, state }`); a
 * request whose state is gone (a restarted thread) fails alone and is not handed to the model.
 */
async function sequenceHandler(batch: InferItem[], state: State, sequences: SequenceStates): Promise<unknown[]> {
  const marks = batch.map((item) => item.sequence);
  const views = sequences.open(marks);
  const runs: number[] = [];
  const requests: unknown[] = [];
  views.forEach((view, i) => {
    if (view instanceof Error) return;
    runs.push(i);
    requests.push({ ...(toRequest(batch[i] as InferItem, state.data.binary) as object), sequence: view });
  });
  const answers: unknown[] = views.map((view) => (view instanceof Error ? view : undefined));
  if (requests.length === 0) return answers;
  try {
    const given = await state.module.handler(requests, state.context);
    if (!Array.isArray(given) || given.length !== requests.length) {
      throw new TypeError(
        `model.js handler must return one answer per request (${requests.length}), got ${Array.isArray(given) ? given.length : typeof given}`,
      );
    }
    runs.forEach((index, j) => {
      answers[index] = given[j];
    });
    return answers;
  } finally {
    // Each request's `sequence` is its view itself: a state the model replaced is read there.
    sequences.close(marks, views);
  }
}

/**
 * On whose behalf the batch's calls to other models are made: every caller of every request in it
 * (a call back to any of them would wait on this very batch), until the latest deadline among its
 * requests (none, if one has none), traced under the first traced request.
 */
function callerOf(batch: readonly InferItem[], name: string): CallerMark {
  const chain = new Set<string>();
  const origins: number[] = [];
  let deadline: number | undefined = 0;
  let trace: CallerMark['trace'];
  for (const item of batch) {
    for (const caller of item.caller?.chain ?? []) chain.add(caller);
    for (const origin of item.caller?.origins ?? []) origins.push(origin);
    const own = item.caller?.deadline;
    deadline = own === undefined || deadline === undefined ? undefined : Math.max(deadline, own);
    trace ??= item.caller?.trace;
  }
  chain.delete(name);
  return {
    chain: [...chain, name],
    // Only when every request has one: a request without would never let the calls be given up.
    ...(origins.length === batch.length ? { origins } : {}),
    ...(deadline === undefined ? {} : { deadline }),
    ...(trace === undefined ? {} : { trace }),
  };
}

export async function handler(batch: InferItem[], state: State): Promise<(InferResult | Error)[]> {
  const inferStart = now();
  const answers = await callerScope.run(callerOf(batch, state.data.name), () =>
    state.sequences === undefined
      ? state.module.handler(
          batch.map((item) => toRequest(item, state.data.binary)),
          state.context,
        )
      : sequenceHandler(batch, state, state.sequences),
  );
  const inferEnd = now();
  if (!Array.isArray(answers) || answers.length !== batch.length) {
    throw new TypeError(
      `model.js handler must return one answer per request (${batch.length}), got ${Array.isArray(answers) ? answers.length : typeof answers}`,
    );
  }
  // The stamp lets the server split the batch's time into Triton's compute_input/infer/output.
  const stamp = { inferStart, inferEnd };
  return answers.map((answer, i) => {
    if (answer instanceof Error) return answer;
    try {
      const result: InferResult = {};
      let kept = false;
      for (const spec of state.data.outputs) {
        const made = toTensor(
          spec,
          (answer as Record<string, unknown>)?.[spec.name],
          (batch[i] as InferItem).rows,
          state.data.batched !== false,
        );
        result[spec.name] = made.tensor;
        kept ||= made.kept;
      }
      // Buffers made here are handed over without a copy. A typed array the model answered may be one
      // it keeps (a constant, a scratch buffer it reuses, a sequence's state): moving it would detach
      // it here, and the model's next batch would fail. Not moved, it is copied on the way back.
      const stamped = stampResults([result], stamp)[0] as InferResult;
      return kept ? stamped : move(stamped);
    } catch (error) {
      return new Error(`model.js answered request ${i} wrongly: ${(error as Error).message}`);
    }
  });
}

export async function dispose(state: State): Promise<void> {
  if (typeof state.module.dispose === 'function') await state.module.dispose(state.context);
}
