import { ItemTooLargeError } from 'batched-fn';
import type { ModelSignature, TensorSpec } from '../model/signature.js';
import type { InputSource } from './input-source.js';
import {
  type BytesData,
  elementCount,
  type InferItem,
  packedBytes,
  type Tensor,
  type TypedArray,
} from '../model/tensor.js';
import { bytesFromBinary, bytesFromJson } from './bytes-data.js';
import { classificationParameter } from './classification.js';
import { invalidArgument } from './errors.js';
import { priorityParameter, timeoutParameter } from './schedule-policy.js';
import { RegionAccess, type RegionRef, type SharedMemoryRegistry } from './shared-memory.js';
import { checkBinarySize, jsonElements, tensorFromBinary, tensorFromJson } from './tensor-data.js';

/** The KServe v2 binary tensor extension: a JSON header, then raw little-endian tensor bytes. */
export const HEADER_LENGTH = 'inference-header-content-length';

export interface DecodedRequest {
  id: string | undefined;
  item: InferItem;
  /** Output names to return, in order, whether each goes back as binary, and any classification asked. */
  outputs: RequestedOutput[];
  /** Per-request deadline in ms, if the client set one (the protocol's `timeout` is in µs: see schedule-policy.ts). */
  timeout: number | undefined;
  /**
   * The priority LEVEL the client asked for (the protocol's `priority`: 1 is the highest), or
   * undefined for the model's default; schedule-policy.ts maps it onto the batcher, in one place.
   */
  priority: number | undefined;
}

interface RequestInput {
  name?: unknown;
  shape?: unknown;
  datatype?: unknown;
  data?: unknown;
  parameters?: { binary_data_size?: unknown };
}

interface RequestBody {
  id?: unknown;
  inputs?: unknown;
  outputs?: unknown;
  parameters?: { timeout?: unknown; binary_data_output?: unknown; priority?: unknown };
}

const isObject = (value: unknown): value is Record<string, unknown> & { binary_data_size?: unknown } =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Splits the body into its JSON header and, with the binary extension, the raw tensor bytes. */
export function splitBody(
  body: Buffer,
  headerLength: string | undefined,
): { json: unknown; binary: Buffer | undefined } {
  let jsonBytes = body;
  let binary: Buffer | undefined;
  if (headerLength !== undefined) {
    // A plain decimal integer only: Number() would also take "0x70", "112.0" and " 112 ".
    const length = /^[0-9]{1,15}$/.test(headerLength) ? Number(headerLength) : Number.NaN;
    if (!(length <= body.length)) {
      throw invalidArgument(
        `Inference-Header-Content-Length must be a decimal integer from 0 to the body size (${body.length}), got ${JSON.stringify(headerLength.slice(0, 40))}`,
      );
    }
    jsonBytes = body.subarray(0, length);
    binary = body.subarray(length);
  }
  try {
    return { json: JSON.parse(jsonBytes.toString('utf8')), binary };
  } catch (error) {
    throw invalidArgument(`Malformed JSON: ${(error as Error).message}`);
  }
}

function checkShape(spec: TensorSpec, shape: unknown, name: string): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw invalidArgument(
      `Input \`${name}\`: shape must be an array of non-negative integers, got ${JSON.stringify(shape).slice(0, 80)}`,
    );
  }
  if (shape.length !== spec.shape.length) {
    throw invalidArgument(
      `Input \`${name}\`: shape ${JSON.stringify(shape).slice(0, 80)} has ${shape.length} dimensions, the model expects ${spec.shape.length} (${JSON.stringify(spec.shape)})`,
    );
  }
  spec.shape.forEach((expected, i) => {
    if (expected !== -1 && shape[i] !== expected) {
      throw invalidArgument(
        `Input \`${name}\`: dimension ${i} is ${shape[i]}, the model expects ${expected} (shape ${JSON.stringify(spec.shape)})`,
      );
    }
  });
  return shape as number[];
}

/** A signature's inputs by name, made once per signature: every request of a model reads the same. */
const specsBySignature = new WeakMap<ModelSignature, ReadonlyMap<string, TensorSpec>>();
function inputSpecs(signature: ModelSignature): ReadonlyMap<string, TensorSpec> {
  let specs = specsBySignature.get(signature);
  if (specs === undefined) {
    specs = new Map(signature.inputs.map((spec) => [spec.name, spec]));
    specsBySignature.set(signature, specs);
  }
  return specs;
}

/**
 * Validates a request's inputs against the model's signature and turns them
 * into typed arrays, for either protocol. Every way an input can be wrong
 * ends here as a 400 that says what was wrong, before anything is queued, and
 * every count is checked against what the request holds before allocating.
 *
 * `maxRows` is the model's maxBatchSize. 0 is Triton's `max_batch_size: 0`: the model has no batch
 * dimension, so the shapes are the model's own (any dimension may be 0, as Triton allows), nothing is
 * read as rows, and the request counts as one (formats/batch-dimension.ts).
 */
export function decodeInputs(
  sources: Iterable<InputSource>,
  signature: ModelSignature,
  maxRows = Number.POSITIVE_INFINITY,
  requestId?: string,
): { rows: number; inputs: Record<string, Tensor> } {
  const batched = maxRows !== 0;
  const specs = inputSpecs(signature);
  const inputs: Record<string, Tensor> = {};
  let rows: number | undefined;
  for (const source of sources) {
    if (typeof source.name !== 'string') throw invalidArgument('Every input needs a string `name`');
    const name = source.name;
    const spec = specs.get(name);
    if (spec === undefined)
      throw invalidArgument(
        `Unknown input \`${name.slice(0, 100)}\`; the model's inputs are ${[...specs.keys()].map((n) => `\`${n}\``).join(', ')}`,
      );
    if (inputs[name] !== undefined)
      throw invalidArgument(`${logRequest(requestId)}input '${name}' already exists in request`);
    if (source.datatype !== spec.datatype) {
      throw invalidArgument(
        `Input \`${name}\` must have datatype ${spec.datatype}, got ${JSON.stringify(source.datatype)?.slice(0, 40)}`,
      );
    }
    const shape = checkShape(spec, source.shape, name);
    const inputRows = batched ? (shape[0] as number) : 1;
    if (inputRows < 1) throw invalidArgument(`Input \`${name}\` has no rows: its first dimension is 0`);
    if (rows !== undefined && inputRows !== rows)
      throw invalidArgument(
        `All inputs must have the same first dimension (rows); \`${name}\` has ${inputRows}, others ${rows}`,
      );
    rows = inputRows;
    const count = elementCount(shape);
    const payload = source.read(count, name, spec.datatype);
    let data: TypedArray | BytesData;
    if ('elements' in payload) {
      // BYTES elements already apart (gRPC's bytes_contents): counted, then copied out of the message.
      if (payload.elements.length !== count)
        throw invalidArgument(
          `Input \`${name}\` has ${payload.elements.length} elements, but its shape needs ${count}`,
        );
      if (batched && inputRows > maxRows) throw new ItemTooLargeError(inputRows, maxRows);
      data = packedBytes(payload.elements);
    } else if ('bytes' in payload) {
      if (spec.datatype !== 'BYTES') checkBinarySize(spec.datatype, payload.bytes, count, name);
      if (batched && inputRows > maxRows) throw new ItemTooLargeError(inputRows, maxRows);
      data =
        spec.datatype === 'BYTES'
          ? bytesFromBinary(payload.bytes, count, name)
          : tensorFromBinary(spec.datatype, payload.bytes);
    } else {
      const values = jsonElements(payload.values, count, name);
      if (batched && inputRows > maxRows) throw new ItemTooLargeError(inputRows, maxRows);
      data =
        spec.datatype === 'BYTES'
          ? bytesFromJson(values, name)
          : tensorFromJson(spec.datatype, values, name, payload.typed === true);
    }
    inputs[name] = { datatype: spec.datatype, shape, data };
  }
  if (rows === undefined) throw invalidArgument('Request must have a non-empty `inputs` array');
  for (const spec of signature.inputs)
    if (inputs[spec.name] === undefined) throw invalidArgument(`Missing input \`${spec.name}\``);
  return { rows, inputs };
}

/**
 * Triton's prefix of request errors (InferenceRequest::LogRequest in its core), kept where its
 * clients and tests match the text that follows it (`input 'X' already exists in request`).
 */
export const logRequest = (id: string | undefined): string =>
  `[request id: ${id === undefined || id === '' ? '<id_unknown>' : id.slice(0, 100)}] `;

/** One output to answer: its name, whether it goes back as binary, and K for the classification extension. */
export interface RequestedOutput {
  name: string;
  binary: boolean;
  /** `classification: K`: answer the top K classes per row as BYTES "value:index[:label]" (classification.ts). */
  classification?: number;
  /** The system shared-memory region the output is written into, instead of the answer (shared-memory.ts). */
  region?: RegionRef;
}

/** Every output of a signature, as a request that names none gets them: made once per signature, read-only. */
const allOutputsBySignature = [
  new WeakMap<ModelSignature, RequestedOutput[]>(),
  new WeakMap<ModelSignature, RequestedOutput[]>(),
];
function allOutputs(signature: ModelSignature, binary: boolean): RequestedOutput[] {
  const cache = allOutputsBySignature[binary ? 1 : 0] as WeakMap<ModelSignature, RequestedOutput[]>;
  let outputs = cache.get(signature);
  if (outputs === undefined) {
    outputs = Object.freeze(signature.outputs.map((o) => Object.freeze({ name: o.name, binary }))) as RequestedOutput[];
    cache.set(signature, outputs);
  }
  return outputs;
}

/**
 * Output names to return, checked against the model; `requested` undefined means all of them. Each
 * requested output's `parameters` (REST's object, gRPC's map as plain values) may ask for classification.
 */
export function pickOutputs(
  requested:
    | readonly {
        name: unknown;
        binary: boolean;
        parameters?: Record<string, unknown> | undefined;
        region?: RegionRef | undefined;
      }[]
    | undefined,
  signature: ModelSignature,
  binaryByDefault: boolean,
  requestId?: string,
): RequestedOutput[] {
  if (requested === undefined) return allOutputs(signature, binaryByDefault);
  const known = new Map(signature.outputs.map((o) => [o.name, o]));
  const asked = new Set<string>();
  return requested.map(({ name, binary, parameters, region }) => {
    if (typeof name !== 'string') throw invalidArgument('Every requested output needs a string `name`');
    const spec = known.get(name);
    if (spec === undefined)
      throw invalidArgument(
        `Unknown output \`${name.slice(0, 100)}\`; the model's outputs are ${[...known.keys()].map((n) => `\`${n}\``).join(', ')}`,
      );
    if (asked.has(name)) throw invalidArgument(`${logRequest(requestId)}output '${name}' already exists in request`);
    asked.add(name);
    const classification = classificationParameter(parameters?.classification, name, spec.datatype);
    const output: RequestedOutput = classification === undefined ? { name, binary } : { name, binary, classification };
    if (region !== undefined) output.region = region;
    return output;
  });
}

/**
 * The request parameters the server itself reads, the same for every protocol: the
 * schedule-policy extension's `timeout` (µs → ms) and `priority` (a level), see schedule-policy.ts.
 */
export function schedulingParameters(parameters: { timeout?: unknown; priority?: unknown }): {
  timeout: number | undefined;
  priority: number | undefined;
} {
  return { timeout: timeoutParameter(parameters.timeout), priority: priorityParameter(parameters.priority) };
}

/** A REST infer request (JSON, or the binary extension's JSON header and raw tensors) → the item to batch. */
export function decodeInferRequest(
  body: unknown,
  binary: Buffer | undefined,
  signature: ModelSignature,
  maxRows = Number.POSITIVE_INFINITY,
  sharedMemory?: SharedMemoryRegistry,
): DecodedRequest {
  if (!isObject(body)) throw invalidArgument('Request body must be a JSON object with an `inputs` array');
  const request = body as RequestBody;
  if (!Array.isArray(request.inputs) || request.inputs.length === 0)
    throw invalidArgument('Request must have a non-empty `inputs` array');
  let binaryOffset = 0;
  // A third source beside `data` and the binary section: a registered shared-memory region.
  const regions = new RegionAccess(sharedMemory);
  const sources = (request.inputs as unknown[]).map((raw): InputSource => {
    if (!isObject(raw)) throw invalidArgument('Every input needs a string `name`');
    const input = raw as RequestInput;
    return {
      name: input.name,
      datatype: input.datatype,
      shape: input.shape,
      read: (count, name, datatype) => {
        const binarySize = input.parameters?.binary_data_size;
        const other = input.data !== undefined ? '`data`' : binarySize !== undefined ? '`binary_data_size`' : undefined;
        const fromRegion = regions.input(input.parameters, other, count, name, datatype);
        if (fromRegion !== undefined) return fromRegion;
        if (binarySize === undefined) {
          if (input.data === undefined) throw invalidArgument(`Input \`${name}\` has no \`data\``);
          return { values: input.data };
        }
        if (binary === undefined)
          throw invalidArgument(
            `Input \`${name}\` has binary_data_size but the request has no Inference-Header-Content-Length header`,
          );
        if (!Number.isInteger(binarySize) || (binarySize as number) < 0)
          throw invalidArgument(`Input \`${name}\`: binary_data_size must be a non-negative integer`);
        const end = binaryOffset + (binarySize as number);
        if (end > binary.length)
          throw invalidArgument(`Input \`${name}\`: binary_data_size runs past the end of the body`);
        const bytes = binary.subarray(binaryOffset, end);
        binaryOffset = end;
        return { bytes };
      },
    };
  });
  const requestId = typeof request.id === 'string' ? request.id : undefined;
  const { rows, inputs } = decodeInputs(sources, signature, maxRows, requestId);
  if (binary !== undefined && binaryOffset !== binary.length) {
    throw invalidArgument(`The binary section has ${binary.length - binaryOffset} bytes no input claims`);
  }
  const binaryByDefault = request.parameters?.binary_data_output === true;
  let requested: { name: unknown; binary: boolean; parameters: Record<string, unknown> }[] | undefined;
  if (request.outputs !== undefined) {
    if (!Array.isArray(request.outputs)) throw invalidArgument('`outputs` must be an array');
    requested = (request.outputs as unknown[]).map((raw) => {
      if (!isObject(raw)) throw invalidArgument('Every requested output needs a string `name`');
      const parameters = isObject(raw.parameters) ? raw.parameters : {};
      const region = regions.output(parameters, String(raw.name));
      return {
        name: raw.name,
        binary: parameters.binary_data === undefined ? binaryByDefault : parameters.binary_data === true,
        parameters,
        region,
      };
    });
  }
  const outputs = pickOutputs(requested, signature, binaryByDefault, requestId);
  const { timeout, priority } = schedulingParameters(request.parameters ?? {});
  return {
    id: typeof request.id === 'string' ? request.id : undefined,
    item: { rows, inputs, ...(isObject(request.parameters) ? { parameters: request.parameters } : {}) },
    outputs,
    timeout,
    priority,
  };
}
