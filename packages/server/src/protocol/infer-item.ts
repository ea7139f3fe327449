import { invalidArgument } from './errors.js';
import type { ModelSignature } from '../model/signature.js';
import { ARRAY_FOR, elementCount, type InferItem } from '../model/tensor.js';

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Checks a request that did not come through this process's HTTP decoder (a
 * Redis stream entry, written by whoever can write to the stream) against the
 * model's signature, as strictly as the decoder would: the tensors a batch
 * concatenates must have exactly the rows and elements they claim, or every
 * request after a short one would be shifted into its neighbour's rows.
 * Throws a 400 naming what is wrong.
 */
export function assertInferItem(
  value: unknown,
  signature: ModelSignature,
  maxRows: number,
  /** False for a model without a batch dimension: its shapes are its own, not rows. */
  batched = true,
): asserts value is InferItem {
  if (!isRecord(value) || !isRecord(value.inputs))
    throw invalidArgument('Request must be an object with `rows` and `inputs`');
  const rows = value.rows;
  if (typeof rows !== 'number' || !Number.isInteger(rows) || rows < 1 || rows > maxRows) {
    throw invalidArgument(`Request rows must be an integer from 1 to ${maxRows}, got ${String(rows).slice(0, 40)}`);
  }
  const names = Object.keys(value.inputs);
  if (names.length !== signature.inputs.length)
    throw invalidArgument(`Request has ${names.length} inputs, the model takes ${signature.inputs.length}`);
  for (const spec of signature.inputs) {
    const tensor = value.inputs[spec.name];
    if (!isRecord(tensor)) throw invalidArgument(`Missing input \`${spec.name}\``);
    if (tensor.datatype !== spec.datatype)
      throw invalidArgument(
        `Input \`${spec.name}\` must have datatype ${spec.datatype}, got ${String(tensor.datatype).slice(0, 40)}`,
      );
    const shape = tensor.shape;
    if (
      !Array.isArray(shape) ||
      shape.length !== spec.shape.length ||
      !shape.every((d, i) => Number.isInteger(d) && d >= 0 && (spec.shape[i] === -1 || d === spec.shape[i]))
    ) {
      throw invalidArgument(`Input \`${spec.name}\`: shape must match ${JSON.stringify(spec.shape)}`);
    }
    if (batched && shape[0] !== rows)
      throw invalidArgument(`Input \`${spec.name}\` has ${String(shape[0])} rows, the request says ${rows}`);
    const data = tensor.data as { length: number };
    const ok =
      spec.datatype === 'BYTES'
        ? Array.isArray(data) && data.every((e) => e instanceof Uint8Array)
        : data instanceof ARRAY_FOR[spec.datatype];
    if (!ok)
      throw invalidArgument(
        `Input \`${spec.name}\`: data must be ${spec.datatype === 'BYTES' ? 'an array of Uint8Array' : `a ${ARRAY_FOR[spec.datatype as Exclude<typeof spec.datatype, 'BYTES'>].name}`}`,
      );
    const count = elementCount(shape as number[]);
    if (data.length !== count)
      throw invalidArgument(`Input \`${spec.name}\` has ${data.length} elements, but its shape needs ${count}`);
  }
}
