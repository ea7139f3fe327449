import type { ModelSignature, TensorSpec } from '../model/signature.js';

/**
 * Whether a model has a batch dimension, as Triton decides it (`max_batch_size`).
 *
 * A model batches along its first dimension when every input, and every output whose shape it
 * states, has an open (-1) first dimension. Such a model is served with `maxBatchSize` rows per run
 * (its own, or the server's default), requests are stacked along that dimension, and its shapes are
 * written with the leading -1.
 *
 * A model whose tensors cannot carry one (a fixed first dimension, as an ONNX export for batch 1
 * has, or no dimension at all) is served as Triton serves `max_batch_size: 0`: one request per
 * run, its shapes exactly as declared (-1 anywhere is any size), no dynamic batching, and each
 * request counted as one inference and an execution of batch size 1 (Triton's core counts
 * `max(1, batch_size)`; its ONNX backend reports a batch of 1 per request). A model may also ask for
 * that with `maxBatchSize: 0` although its first dimensions are open.
 *
 * ServedModel.maxBatchSize is then 0 (Triton's convention, which the protocol reads: the decoders
 * take no rows from a request, and the model configuration answers `max_batch_size: 0` with whole
 * dims), while its batcher runs with a maxBatchSize of 1 and a size of 1 per request.
 */

/** Why `spec` cannot carry a batch dimension, in Triton's words (its ONNX Runtime backend), or undefined. */
function problemOf(modelName: string, spec: TensorSpec): string | undefined {
  if (spec.shape.length > 0 && spec.shape[0] === -1) return undefined;
  return `model '${modelName}', tensor '${spec.name}': for the model to support batching the shape should have at least 1 dimension and the first dimension must be -1; but shape expected by the model is ${JSON.stringify(spec.shape)}`;
}

/**
 * The first reason the model cannot batch, or undefined when it can. An output the model states no
 * shape for (an ONNX output without shape information reads as `[]`) does not decide it.
 */
export function batchDimensionProblem(modelName: string, signature: ModelSignature): string | undefined {
  for (const spec of signature.inputs) {
    const problem = problemOf(modelName, spec);
    if (problem !== undefined) return problem;
  }
  for (const spec of signature.outputs) {
    if (spec.shape.length === 0) continue;
    const problem = problemOf(modelName, spec);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

/**
 * The maxBatchSize a model is served with: `own` (its config's) when it gives one, 0 included; else
 * the server's default if the model can batch, and 0 if it cannot. A model asked to batch that
 * cannot is refused with the reason; any value is checked later by the batcher's rules.
 */
export function servedMaxBatchSize(
  modelName: string,
  signature: ModelSignature,
  own: number | undefined,
  fallback: number,
): number {
  if (own === 0) return 0;
  const problem = batchDimensionProblem(modelName, signature);
  if (own !== undefined) {
    if (problem !== undefined)
      throw new RangeError(
        `\`maxBatchSize\` is ${own}, but ${problem}; set \`maxBatchSize\` to 0 to serve it without batching`,
      );
    return own;
  }
  return problem === undefined ? fallback : 0;
}
