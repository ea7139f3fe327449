import { isSerializedError, type SerializedError } from 'batched-fn/adapter';
import { isDatatype } from '../model/signature.js';
import { type CallerMark, copiedArray, ownsBuffer, type Tensor, type TypedArray } from '../model/tensor.js';

/**
 * What crosses a JS model's `connectWorker` channel (core option): its `models.infer` and
 * `models.generate` calls from the worker thread, and their answers from the main thread.
 * Tensors travel as the server keeps them (BYTES as Uint8Array elements of one buffer), their
 * buffers transferred, not copied.
 */

/** What a worker asks. `caller`: the running batch's chain, deadline and trace (model/tensor.ts). */
export type CallRequest =
  | {
      type: 'infer';
      id: number;
      model: string;
      inputs: Record<string, Tensor>;
      options: WireCallOptions;
      caller: CallerMark | undefined;
    }
  | {
      type: 'generate';
      id: number;
      model: string;
      request: { text_input: string; parameters?: Record<string, unknown> };
      options: WireCallOptions;
      caller: CallerMark | undefined;
    }
  /** The caller gave up (its signal aborted, or it stopped reading a generation). */
  | { type: 'cancel'; id: number };

/** The call options that cross: the signal stays in the worker (it sends `cancel`). */
export interface WireCallOptions {
  version?: string;
  priority?: number;
  timeout?: number;
  /** Checked where the call is made (protocol/model-calls.ts), as every option is. */
  parameters?: Record<string, string | number | bigint | boolean>;
}

export type CallAnswer =
  | { type: 'result'; id: number; outputs: Record<string, Tensor> }
  | { type: 'chunk'; id: number; text: string }
  | { type: 'end'; id: number }
  | { type: 'error'; id: number; error: SerializedError };

/** Most models one call may be made on behalf of: a longer chain is a runaway, not a pipeline. */
export const MAX_CHAIN = 32;
/** Most requests one batch's calls are made for: a batch holds at most this many (the largest maxBatchSize). */
const MAX_ORIGINS = 2 ** 16;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
const isId = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) > 0;

/** A tensor as it crossed (plain data, the model's code built it): kept only as exactly `{ datatype, shape, data }`. */
function wireTensor(value: unknown): Tensor | undefined {
  if (!isRecord(value) || !isDatatype(value.datatype)) return undefined;
  if (!Array.isArray(value.shape) || !value.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return undefined;
  const data = value.data;
  const ok =
    value.datatype === 'BYTES'
      ? Array.isArray(data) && data.every((e) => e instanceof Uint8Array)
      : ArrayBuffer.isView(data) && !(data instanceof DataView);
  return ok ? { datatype: value.datatype, shape: value.shape, data: data as TypedArray } : undefined;
}

function wireCaller(value: unknown): CallerMark | undefined {
  if (!isRecord(value)) return undefined;
  const chain = Array.isArray(value.chain) ? value.chain.filter((name) => typeof name === 'string') : [];
  const deadline = typeof value.deadline === 'number' && Number.isFinite(value.deadline) ? value.deadline : undefined;
  const trace = isRecord(value.trace) ? value.trace : undefined;
  const origins = Array.isArray(value.origins) ? value.origins.filter((id) => Number.isSafeInteger(id)) : undefined;
  return {
    chain: chain as string[],
    ...(origins === undefined ? {} : { origins: origins.slice(0, MAX_ORIGINS) as number[] }),
    ...(deadline === undefined ? {} : { deadline }),
    ...(trace !== undefined && typeof trace.traceId === 'string' && typeof trace.spanId === 'string'
      ? {
          trace: {
            traceId: trace.traceId,
            spanId: trace.spanId,
            traceFlags: typeof trace.traceFlags === 'number' ? trace.traceFlags : 0,
          },
        }
      : {}),
  };
}

/**
 * Checks a message from a model's worker: its code is the model's, and may post anything. A message
 * that is not one of ours is undefined (ignored); a call whose parts are wrong is answered with the
 * reason (`problem`), so its caller never waits.
 */
export function parseCallRequest(raw: unknown): CallRequest | { id: number; problem: string } | undefined {
  if (!isRecord(raw) || !isId(raw.id)) return undefined;
  const id = raw.id;
  if (raw.type === 'cancel') return { type: 'cancel', id };
  if (raw.type !== 'infer' && raw.type !== 'generate') return undefined;
  if (typeof raw.model !== 'string' || raw.model.length === 0)
    return { id, problem: 'the model to call must be named by a non-empty string' };
  const chain = isRecord(raw.caller) ? raw.caller.chain : undefined;
  if (Array.isArray(chain) && chain.length > MAX_CHAIN)
    return {
      id,
      problem: `the call is made on behalf of ${chain.length} models, more than the ${MAX_CHAIN} a chain may hold`,
    };
  const options = isRecord(raw.options) ? raw.options : {};
  const wireOptions: WireCallOptions = {
    ...(options.version === undefined ? {} : { version: options.version as string }),
    ...(options.priority === undefined ? {} : { priority: options.priority as number }),
    ...(options.timeout === undefined ? {} : { timeout: options.timeout as number }),
    ...(options.parameters === undefined
      ? {}
      : { parameters: options.parameters as Record<string, string | number | bigint | boolean> }),
  };
  const caller = wireCaller(raw.caller);
  if (raw.type === 'generate') {
    const request = raw.request;
    if (!isRecord(request) || typeof request.text_input !== 'string')
      return { id, problem: '`models.generate` needs `{ text_input, parameters? }`' };
    return {
      type: 'generate',
      id,
      model: raw.model,
      request: {
        text_input: request.text_input,
        ...(isRecord(request.parameters) ? { parameters: request.parameters } : {}),
      },
      options: wireOptions,
      caller,
    };
  }
  if (!isRecord(raw.inputs)) return { id, problem: 'the inputs must be an object of tensors by name' };
  const inputs: Record<string, Tensor> = {};
  for (const [name, value] of Object.entries(raw.inputs)) {
    const tensor = wireTensor(value);
    if (tensor === undefined)
      return {
        id,
        problem: `input \`${name.slice(0, 64)}\` must be { datatype, shape, data } with a KServe datatype, sizes, and a typed array (Uint8Array elements for BYTES)`,
      };
    inputs[name] = tensor;
  }
  return { type: 'infer', id, model: raw.model, inputs, options: wireOptions, caller };
}

/** Checks an answer from the main thread (our own code, but the port is the module's to misuse too). */
export function parseCallAnswer(raw: unknown): CallAnswer | undefined {
  if (!isRecord(raw) || !isId(raw.id)) return undefined;
  switch (raw.type) {
    case 'result':
      return isRecord(raw.outputs) ? (raw as CallAnswer) : undefined;
    case 'chunk':
      return typeof raw.text === 'string' ? (raw as CallAnswer) : undefined;
    case 'end':
      return raw as CallAnswer;
    case 'error':
      return isSerializedError(raw.error) ? (raw as CallAnswer) : undefined;
    default:
      return undefined;
  }
}

/**
 * The buffers to transfer for `tensors`, each made exclusively theirs first. `copy: 'shared'` (a
 * caller's inputs, which it hands over): a typed array that is a view of part of a buffer is copied to
 * its own, and a whole buffer moves. `copy: 'always'` (answers): every tensor is copied once, since an
 * answer's buffer may be shared with other answers of its batch (a batch's output split by rows, or one
 * array a model answered for every request) and moving it would take their data. BYTES elements are
 * packed into one buffer. One copy at most, never two.
 */
export function ownedForTransfer(
  tensors: Record<string, Tensor>,
  copy: 'shared' | 'always',
): {
  tensors: Record<string, Tensor>;
  transfer: ArrayBuffer[];
} {
  const out: Record<string, Tensor> = {};
  const transfer = new Set<ArrayBuffer>();
  for (const [name, tensor] of Object.entries(tensors)) {
    let data = tensor.data;
    if (Array.isArray(data)) data = packOwned(data);
    else if (data.buffer instanceof ArrayBuffer && (copy === 'always' || !ownsBuffer(data))) data = copiedArray(data);
    if (Array.isArray(data)) {
      const buffer = data[0]?.buffer;
      if (buffer instanceof ArrayBuffer) transfer.add(buffer);
    } else if (data.buffer instanceof ArrayBuffer) transfer.add(data.buffer);
    out[name] = { datatype: tensor.datatype, shape: tensor.shape, data };
  }
  return { tensors: out, transfer: [...transfer] };
}

/** BYTES elements as views of one fresh buffer holding them alone. */
function packOwned(elements: Uint8Array[]): Uint8Array[] {
  let total = 0;
  for (const element of elements) total += element.length;
  const buffer = new ArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  const out: Uint8Array[] = new Array(elements.length);
  let offset = 0;
  elements.forEach((element, i) => {
    bytes.set(element, offset);
    out[i] = new Uint8Array(buffer, offset, element.length);
    offset += element.length;
  });
  return out;
}
