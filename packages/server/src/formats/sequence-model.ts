import { type ServedModel, servedWith } from '../model/served-model.js';
import type { SequenceMark } from '../model/tensor.js';
import type { SequenceTable } from './sequence-table.js';

/**
 * A stateful model (`sequence_batching`, Triton's sequence batcher): every request is admitted by
 * the model's sequence table first (its `sequence_id`, `sequence_start`, `sequence_end`), then
 * batched like any request, carrying its sequence: the batcher runs one request per sequence at a
 * time, on the worker holding its state. The table hears how each request ended. Every protocol
 * (REST, gRPC ModelInfer and ModelStreamInfer) reaches the model through this `infer`.
 */
export function sequenceModel(model: ServedModel, table: SequenceTable): ServedModel {
  const run = model.infer;
  const infer: ServedModel['infer'] = (item, options) => {
    let mark: SequenceMark;
    try {
      mark = table.admit(item.parameters);
    } catch (error) {
      return Promise.reject(error);
    }
    return run({ ...item, sequence: mark }, options).then(
      (result) => {
        table.settled(mark, undefined);
        return result;
      },
      (error: unknown) => {
        table.settled(mark, error);
        throw error;
      },
    );
  };
  return servedWith(model, { infer, sequences: table });
}
