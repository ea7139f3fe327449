import type { ModelSignature } from '../model/signature.js';
import { ARRAY_FOR } from '../model/tensor.js';
import { type DecodedRequest, decodeInputs, logRequest } from '../protocol/decode.js';
import type { InputPayload } from '../protocol/input-source.js';
import { invalidArgument } from '../protocol/errors.js';

/**
 * The binary extension's raw binary request: `Inference-Header-Content-Length: 0` says the body
 * has no JSON header at all, and the whole body is the one input of a single-input model. As
 * Triton does it (its core's InferenceRequest::Normalize): the request is one row (batch 1); at
 * most one other dimension may be variable, and it is deduced from the byte count; a BYTES input
 * must have shape [1], and the body is its one element; every output is answered in binary form.
 * Refusals use Triton's words, which its qa tests match.
 */

/** Whether an Inference-Header-Content-Length value says "no header" (Triton reads "00" as 0 too). */
export const isRawRequest = (headerLength: string | undefined): boolean =>
  headerLength !== undefined && /^0{1,15}$/.test(headerLength);

export function decodeRawRequest(
  body: Buffer,
  modelName: string,
  signature: ModelSignature,
  maxRows = Number.POSITIVE_INFINITY,
): DecodedRequest {
  const prefix = logRequest(undefined);
  const spec = signature.inputs[0];
  if (spec === undefined || signature.inputs.length !== 1) {
    throw invalidArgument(
      `${prefix}Raw request must only have 1 input (found 1) to be deduced but got ${signature.inputs.length} inputs in '${modelName}' model configuration`,
    );
  }
  // The first dimension is the rows: one. A model without a batch dimension (maxRows 0, Triton's
  // max_batch_size 0) has its declared shape, whose one open dimension (if any) is deduced below.
  const shape = spec.shape.map((d, i) => (i === 0 && d === -1 && maxRows !== 0 ? 1 : d));
  const variable = shape.flatMap((d, i) => (d === -1 ? [i] : []));
  if (variable.length > 1)
    throw invalidArgument(
      `${prefix}The shape of the raw input '${spec.name}' can not be deduced because there are more than one variable-sized dimension`,
    );
  let payload: InputPayload;
  if (spec.datatype === 'BYTES') {
    if (variable.length !== 0 || shape.some((d) => d !== 1))
      throw invalidArgument(`${prefix}For BYTE datatype raw input '${spec.name}', the model must have input shape [1]`);
    payload = { elements: [body] };
  } else {
    const at = variable[0];
    if (at !== undefined) {
      const fixed = shape.reduce((product, d) => (d === -1 ? product : product * d), 1);
      // As Triton: whole elements of the other dimensions; a body that is not a multiple is then refused by size.
      shape[at] = fixed === 0 ? 0 : Math.floor(body.length / fixed / ARRAY_FOR[spec.datatype].BYTES_PER_ELEMENT);
    }
    payload = { bytes: body };
  }
  const { rows, inputs } = decodeInputs(
    [{ name: spec.name, datatype: spec.datatype, shape, read: () => payload }],
    signature,
    maxRows,
  );
  return {
    id: undefined,
    item: { rows, inputs },
    outputs: signature.outputs.map((output) => ({ name: output.name, binary: true })),
    timeout: undefined,
    priority: undefined,
  };
}
