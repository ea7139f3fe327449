import type { Datatype, ModelSignature } from '../model/signature.js';
import { type DecodedRequest, decodeInputs, pickOutputs, schedulingParameters } from '../protocol/decode.js';
import type { InputPayload, InputSource } from '../protocol/input-source.js';
import { invalidArgument } from '../protocol/errors.js';
import { RegionAccess, type SharedMemoryRegistry } from '../protocol/shared-memory.js';
import { type GrpcParameter, plainParameters } from './proto.js';

export type TensorContents = Partial<Record<ContentsField, unknown[]>>;

export interface GrpcInferRequest {
  model_name?: string;
  model_version?: string;
  id?: string;
  parameters?: Record<string, GrpcParameter>;
  /** `shape` and 64-bit contents arrive as decimal strings (the server's proto options). */
  inputs?: {
    name?: string;
    datatype?: string;
    shape?: string[];
    parameters?: Record<string, GrpcParameter>;
    contents?: TensorContents | null;
  }[];
  outputs?: { name?: string; parameters?: Record<string, GrpcParameter> }[];
  raw_input_contents?: Buffer[];
}

/** InferTensorContents: the repeated field that carries each datatype's elements. */
export const CONTENTS_FIELD = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
} as const;
type ContentsField = (typeof CONTENTS_FIELD)[keyof typeof CONTENTS_FIELD];
const ALL_FIELDS = [...new Set(Object.values(CONTENTS_FIELD))];

/** Typed contents → what the shared decoder checks: values, or for BYTES the elements themselves. */
function typedPayload(
  contents: TensorContents | null | undefined,
  name: string,
  datatype: keyof typeof CONTENTS_FIELD,
): InputPayload {
  const field = CONTENTS_FIELD[datatype];
  const filled = ALL_FIELDS.filter((f) => (contents?.[f]?.length ?? 0) > 0);
  const wrong = filled.find((f) => f !== field);
  if (wrong !== undefined)
    throw invalidArgument(
      `Input \`${name}\` is ${datatype}: its elements go in \`contents.${field}\`, not \`${wrong}\``,
    );
  const values = contents?.[field] ?? [];
  return datatype === 'BYTES' ? { elements: values as Buffer[] } : { values, typed: true };
}

/** A tensor's or request's parameters when the client sent none: one object, read and never written. */
const NO_PARAMETERS: Readonly<Record<string, unknown>> = Object.freeze({});
const parametersOf = (map: Record<string, GrpcParameter> | undefined): Record<string, unknown> =>
  map === undefined ? NO_PARAMETERS : plainParameters(map);

/** What every input of one request reads from: the raw entries, and the shared-memory regions. */
interface RequestPayloads {
  raw: readonly Buffer[];
  isRaw: boolean;
  regions: RegionAccess;
}

/** One input of a ModelInferRequest, read once its name, datatype and shape are checked (decodeInputs). */
class GrpcInputSource implements InputSource {
  readonly name: string;
  readonly datatype: string;
  readonly shape: number[];

  constructor(
    readonly input: NonNullable<GrpcInferRequest['inputs']>[number],
    readonly parameters: Record<string, unknown>,
    /** Its entry in raw_input_contents; -1 when it is read from a shared-memory region. */
    readonly rawIndex: number,
    readonly payloads: RequestPayloads,
  ) {
    // A field the client left out is absent (infer-request-wire.ts): read as its proto default.
    this.name = input.name ?? '';
    this.datatype = input.datatype ?? '';
    this.shape = (input.shape ?? []).map(Number);
  }

  read(count: number, name: string, datatype: Datatype): InputPayload {
    const { input, payloads } = this;
    const hasContents = ALL_FIELDS.some((f) => (input.contents?.[f]?.length ?? 0) > 0);
    const fromRegion = payloads.regions.input(
      this.parameters,
      hasContents ? '`contents`' : undefined,
      count,
      name,
      datatype,
    );
    if (fromRegion !== undefined) return fromRegion;
    if (!payloads.isRaw) {
      // InferTensorContents has no field for 16-bit floats: as in Triton, they travel only as raw bytes.
      if (datatype === 'FP16' || datatype === 'BF16')
        throw invalidArgument(
          `Input \`${name}\` is ${datatype}: InferTensorContents has no field for ${datatype}; send its elements in raw_input_contents (little-endian 16-bit patterns)`,
        );
      return typedPayload(input.contents, name, datatype);
    }
    if (hasContents)
      throw invalidArgument(`Input \`${name}\` has \`contents\` as well as raw_input_contents: use one or the other`);
    return { bytes: payloads.raw[this.rawIndex] as Buffer };
  }
}

/**
 * A ModelInferRequest → the same item REST makes, through the same checks: typed `contents`
 * in the field of the input's datatype, or `raw_input_contents` (one entry per input, and then
 * no `contents`). Outputs always come back raw (encode.ts).
 */
export function decodeGrpcInfer(
  request: GrpcInferRequest,
  signature: ModelSignature,
  maxRows = Number.POSITIVE_INFINITY,
  sharedMemory?: SharedMemoryRegistry,
): DecodedRequest {
  const inputs = request.inputs ?? [];
  if (inputs.length === 0) throw invalidArgument('Request must have a non-empty `inputs` array');
  const raw = request.raw_input_contents ?? [];
  const payloads: RequestPayloads = { raw, isRaw: raw.length > 0, regions: new RegionAccess(sharedMemory) };
  // Inputs read from a shared-memory region have no raw entry (as tritonclient sends them, and
  // Triton reads them): the raw entries are the other inputs', in order.
  const sources: GrpcInputSource[] = [];
  let rawCount = 0;
  for (const input of inputs) {
    const parameters = parametersOf(input.parameters);
    const rawIndex = parameters.shared_memory_region === undefined ? rawCount++ : -1;
    sources.push(new GrpcInputSource(input, parameters, rawIndex, payloads));
  }
  if (payloads.isRaw && raw.length !== rawCount)
    throw invalidArgument(
      `raw_input_contents has ${raw.length} entries for ${rawCount} inputs${rawCount === inputs.length ? '' : ' not in shared memory'}: give one per input, in order`,
    );
  const { rows, inputs: tensors } = decodeInputs(sources, signature, maxRows);
  const requested =
    request.outputs === undefined || request.outputs.length === 0
      ? undefined
      : request.outputs.map((o) => {
          const parameters = parametersOf(o.parameters);
          const name = o.name ?? '';
          return { name, binary: true, parameters, region: payloads.regions.output(parameters, name) };
        });
  const outputs = pickOutputs(requested, signature, true);
  const parameters = parametersOf(request.parameters);
  const { timeout, priority } = schedulingParameters(parameters);
  return {
    id: request.id === undefined || request.id === '' ? undefined : request.id,
    item: Object.keys(parameters).length === 0 ? { rows, inputs: tensors } : { rows, inputs: tensors, parameters },
    outputs,
    timeout,
    priority,
  };
}
