import type { ModelSignature } from '../model/signature.js';
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
  const isRaw = raw.length > 0;
  // Inputs read from a shared-memory region have no raw entry (as tritonclient sends them, and
  // Triton reads them): the raw entries are the other inputs', in order.
  const regions = new RegionAccess(sharedMemory);
  const inputParameters = inputs.map((input) => plainParameters(input.parameters));
  let rawCount = 0;
  const rawIndex = inputParameters.map((parameters) =>
    parameters.shared_memory_region === undefined ? rawCount++ : -1,
  );
  if (isRaw && raw.length !== rawCount)
    throw invalidArgument(
      `raw_input_contents has ${raw.length} entries for ${rawCount} inputs${rawCount === inputs.length ? '' : ' not in shared memory'}: give one per input, in order`,
    );
  // A field the client left out is absent (proto.ts INFER_REQUEST_OPTIONS): read as its proto default.
  const sources = inputs.map(
    (input, index): InputSource => ({
      name: input.name ?? '',
      datatype: input.datatype ?? '',
      shape: (input.shape ?? []).map(Number),
      read: (count, name, datatype) => {
        const hasContents = ALL_FIELDS.some((f) => (input.contents?.[f]?.length ?? 0) > 0);
        const fromRegion = regions.input(
          inputParameters[index],
          hasContents ? '`contents`' : undefined,
          count,
          name,
          datatype,
        );
        if (fromRegion !== undefined) return fromRegion;
        if (!isRaw) {
          // InferTensorContents has no field for 16-bit floats: as in Triton, they travel only as raw bytes.
          if (datatype === 'FP16' || datatype === 'BF16')
            throw invalidArgument(
              `Input \`${name}\` is ${datatype}: InferTensorContents has no field for ${datatype}; send its elements in raw_input_contents (little-endian 16-bit patterns)`,
            );
          return typedPayload(input.contents, name, datatype);
        }
        if (hasContents)
          throw invalidArgument(
            `Input \`${name}\` has \`contents\` as well as raw_input_contents: use one or the other`,
          );
        return { bytes: raw[rawIndex[index] as number] as Buffer };
      },
    }),
  );
  const { rows, inputs: tensors } = decodeInputs(sources, signature, maxRows);
  const requested =
    request.outputs === undefined || request.outputs.length === 0
      ? undefined
      : request.outputs.map((o) => {
          const parameters = plainParameters(o.parameters);
          const name = o.name ?? '';
          return { name, binary: true, parameters, region: regions.output(parameters, name) };
        });
  const outputs = pickOutputs(requested, signature, true);
  const parameters = plainParameters(request.parameters);
  const { timeout, priority } = schedulingParameters(parameters);
  return {
    id: request.id === undefined || request.id === '' ? undefined : request.id,
    item: { rows, inputs: tensors, ...(Object.keys(parameters).length === 0 ? {} : { parameters }) },
    outputs,
    timeout,
    priority,
  };
}
