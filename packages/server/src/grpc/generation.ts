import type { ServedModel } from '../model/served-model.js';
import type { Tensor } from '../model/tensor.js';
import { invalidArgument } from '../protocol/errors.js';
import { samplingParameters } from '../model/reserved-parameters.js';
import { type GenerateRequest, startGeneration } from '../protocol/generation.js';
import type { SharedMemoryRegistry } from '../protocol/shared-memory.js';
import type { ModelRegistry } from '../repository/registry.js';
import { decodeGrpcInfer, type GrpcInferRequest } from './decode.js';
import { plainParameters } from './proto.js';

/**
 * A generator over gRPC, as Triton serves its decoupled models on ModelStreamInfer: one
 * ModelInferResponse per chunk of text (`text_output` BYTES [1]), each with the parameter
 * `triton_final_response`, true on the last. With the request parameter
 * `triton_enable_empty_final_response` (what tritonclient's `async_stream_infer(...,
 * enable_empty_final_response=True)` sends; the bare name too) every chunk says false and a last,
 * empty response says true.
 */

export interface GenerationResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: { name: string; datatype: string; shape: number[] }[];
  raw_output_contents: Buffer[];
  parameters: { triton_final_response: { bool_param: boolean } };
}

/** An input a client may send beside the prompt and the parameters (Triton's vLLM clients send `stream`). */
const IGNORED_INPUTS = new Set(['stream']);

const textOf = (tensor: Tensor | undefined): string => {
  const element = (tensor?.data as Uint8Array[] | undefined)?.[0];
  return element === undefined ? '' : Buffer.from(element.buffer, element.byteOffset, element.byteLength).toString();
};

/** One element of a parameter input, as a JSON value the model reads (a BYTES one as text). */
function parameterValue(tensor: Tensor): unknown {
  if (tensor.datatype === 'BYTES') return textOf(tensor);
  const value = (tensor.data as ArrayLike<unknown>)[0];
  if (typeof value === 'bigint') return Number(value);
  if (tensor.datatype === 'BOOL') return value === 1 || value === true;
  return value;
}

/** A request parameter → the stop strings: a string, or a JSON array of strings (a map holds no lists). */
function stopsOf(stop: unknown): string[] {
  if (stop === undefined || stop === '') return [];
  if (typeof stop !== 'string') throw invalidArgument('parameter `stop` must be a string_param');
  if (!stop.startsWith('[')) return [stop];
  let list: unknown;
  try {
    list = JSON.parse(stop);
  } catch {
    return [stop];
  }
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string'))
    throw invalidArgument('parameter `stop` must be a string or a JSON array of strings');
  return list;
}

/**
 * The ModelInferRequest of a generator → its generation's responses; `undefined` when the model it
 * names is no generator (then it is an ordinary request). Throws the request's refusal.
 */
export function grpcGeneration(
  registry: ModelRegistry,
  request: GrpcInferRequest,
  options: { signal: AbortSignal; deadline: number | undefined; sharedMemory?: SharedMemoryRegistry },
): AsyncIterable<GenerationResponse> | undefined {
  const name = request.model_name ?? '';
  const entry = registry.get(name);
  const model = entry?.model;
  if (model === undefined) return undefined;
  const version = request.model_version ?? '';
  const served: ServedModel = version === '' ? model : (model.versions?.find((v) => v.version === version) ?? model);
  const generator = served.generator;
  if (generator === undefined) return undefined;
  // The inputs sent, by the generator's own signature (the prompt, and one per sampling parameter).
  const present = new Set((request.inputs ?? []).map((input) => input.name ?? ''));
  for (const input of present)
    if (input !== 'text_input' && !IGNORED_INPUTS.has(input) && !generator.parameters.includes(input))
      throw invalidArgument(
        `Model '${name}' has no input \`${input.slice(0, 100)}\` (it takes \`text_input\`${generator.parameters.map((p) => `, \`${p}\``).join('')})`,
      );
  if (!present.has('text_input')) throw invalidArgument('The request needs input `text_input` (BYTES [1])');
  const kept = { ...request, inputs: (request.inputs ?? []).filter((input) => !IGNORED_INPUTS.has(input.name ?? '')) };
  if (kept.raw_input_contents !== undefined && kept.raw_input_contents.length > 0)
    kept.raw_input_contents = (request.inputs ?? []).flatMap((input, i) =>
      IGNORED_INPUTS.has(input.name ?? '') ? [] : [request.raw_input_contents?.[i] as Buffer],
    );
  const signature = {
    inputs: served.signature.inputs.filter((spec) => present.has(spec.name)),
    outputs: served.signature.outputs,
  };
  const decoded = decodeGrpcInfer({ ...kept, outputs: [] }, signature, 0, options.sharedMemory);
  const given = plainParameters(request.parameters);
  const parameters = samplingParameters(given);
  for (const [input, tensor] of Object.entries(decoded.item.inputs))
    if (input !== 'text_input') parameters[input] = parameterValue(tensor);
  const maxTokens = given.max_tokens;
  if (maxTokens !== undefined && typeof maxTokens !== 'number')
    throw invalidArgument('parameter `max_tokens` must be an int64_param');
  const timeouts = [served.timeout, decoded.timeout, options.deadline].filter((t): t is number => t !== undefined);
  const call: GenerateRequest = {
    model: name,
    ...(version === '' ? {} : { version }),
    prompt: textOf(decoded.item.inputs.text_input),
    parameters,
    ...(maxTokens === undefined ? {} : { maxTokens }),
    stop: stopsOf(given.stop),
    signal: options.signal,
    ...(decoded.priority === undefined ? {} : { level: decoded.priority }),
    ...(timeouts.length === 0 ? {} : { timeoutMs: Math.min(...timeouts) }),
  };
  const stream = startGeneration(registry, call);
  // tritonclient's `enable_empty_final_response` sends Triton's reserved name; the bare one is accepted too.
  const emptyFinal = given.triton_enable_empty_final_response === true || given.enable_empty_final_response === true;
  const id = request.id ?? '';
  const response = (text: string | undefined, final: boolean): GenerationResponse => ({
    model_name: name,
    model_version: stream.version,
    id,
    outputs: text === undefined ? [] : [{ name: 'text_output', datatype: 'BYTES', shape: [1] }],
    raw_output_contents: text === undefined ? [] : [lengthPrefixed(text)],
    parameters: { triton_final_response: { bool_param: final } },
  });
  return {
    async *[Symbol.asyncIterator]() {
      const chunks = stream[Symbol.asyncIterator]();
      try {
        let next = await chunks.next();
        while (next.done !== true) {
          const text = next.value;
          if (emptyFinal) {
            yield response(text, false);
            next = await chunks.next();
            continue;
          }
          // The last chunk carries the final flag: a chunk is sent once the next one, or the end,
          // is known. The end is usually known at once (the model ends in the step of its last
          // value, and max_tokens and stop are decided here): waiting beyond that would delay every
          // token by a step, so past one turn of the event loop the chunk goes, and an empty
          // final response follows it if the end comes later.
          const after = chunks.next();
          const settled = await Promise.race([
            after.then(
              () => true,
              () => true,
            ),
            new Promise<false>((resolve) => setImmediate(() => resolve(false))),
          ]);
          if (settled) {
            next = await after;
            yield response(text, next.done === true);
            if (next.done === true) return;
            continue;
          }
          yield response(text, false);
          next = await after;
          if (next.done === true) {
            yield response(undefined, true);
            return;
          }
        }
        yield response(undefined, true);
      } finally {
        await chunks.return?.();
      }
    },
  };
}

/** A BYTES element in raw form: its length (4 bytes, little-endian), then its bytes. */
function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text);
  const out = Buffer.allocUnsafe(4 + bytes.length);
  out.writeUInt32LE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}
