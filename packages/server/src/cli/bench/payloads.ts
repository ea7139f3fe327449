import { UsageError } from '../cli-args.js';
import type { NumericDatatype } from '../../model/signature.js';
import { ARRAY_FOR } from '../../model/tensor.js';

/** How a load generator sends its request: REST JSON, REST with the binary tensor extension, or gRPC with raw contents. */
export type BenchProtocol = 'json' | 'binary' | 'grpc';

export interface ExampleInput {
  name: string;
  shape: number[];
  datatype: string;
  data: number[];
}

interface ModelMetadata {
  inputs: { name: string; datatype: string; shape: number[] }[];
}

/** Inputs of `rows` rows for every input of the model, with deterministic pseudo-random values. */
export async function exampleInputs(baseUrl: string, model: string, rows: number): Promise<ExampleInput[]> {
  const response = await fetch(`${baseUrl}/v2/models/${model}`);
  if (!response.ok)
    throw new UsageError(`GET ${baseUrl}/v2/models/${model} answered ${response.status}: is --model right?`);
  const metadata = (await response.json()) as ModelMetadata;
  let seed = 7;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  return metadata.inputs.map((input) => {
    const shape = [rows, ...input.shape.slice(1).map((d) => (d > 0 ? d : 1))];
    const count = shape.reduce((a, b) => a * b, 1);
    const isFloat = input.datatype.startsWith('FP');
    const data = Array.from({ length: count }, () =>
      isFloat ? Math.round(next() * 1000) / 1000 : Math.floor(next() * 100),
    );
    return { name: input.name, shape, datatype: input.datatype, data };
  });
}

/** One input's elements as raw little-endian bytes. */
function rawBytes(input: ExampleInput): Buffer {
  const Typed = ARRAY_FOR[input.datatype as NumericDatatype];
  if (Typed === undefined)
    throw new UsageError(`Input \`${input.name}\` is ${input.datatype}: the load generator sends numeric inputs only`);
  const typed = new Typed(input.data.length);
  const wide = typed instanceof BigInt64Array || typed instanceof BigUint64Array;
  input.data.forEach((x, i) => {
    typed[i] = wide ? BigInt(x) : x;
  });
  return Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** A REST body: JSON, or the binary extension's JSON header followed by the raw tensors. */
export function restBody(
  inputs: ExampleInput[],
  protocol: 'json' | 'binary',
): { body: string | Buffer; headers: Record<string, string> } {
  if (protocol === 'json') return { body: JSON.stringify({ inputs }), headers: { 'content-type': 'application/json' } };
  const raw = inputs.map(rawBytes);
  const header = Buffer.from(
    JSON.stringify({
      inputs: inputs.map(({ name, shape, datatype }, i) => ({
        name,
        shape,
        datatype,
        parameters: { binary_data_size: raw[i]?.length },
      })),
      parameters: { binary_data_output: true },
    }),
  );
  return {
    body: Buffer.concat([header, ...raw]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
  };
}

/** A ModelInferRequest with raw_input_contents (and so raw outputs). */
export function grpcRequest(model: string, inputs: ExampleInput[]): object {
  return {
    model_name: model,
    inputs: inputs.map(({ name, shape, datatype }) => ({ name, shape, datatype })),
    raw_input_contents: inputs.map(rawBytes),
  };
}
