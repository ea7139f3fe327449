/**
 * Request parameters that are not a model's own. Triton reserves `priority`, `timeout`, `headers`,
 * the sequence batcher's `sequence_*` and every `triton_*` key (its parameters extension: "not
 * accessible in the Triton C-API"); the binary extension's `binary_data_output` is the protocol's.
 */
const SEQUENCE = new Set(['sequence_id', 'sequence_start', 'sequence_end']);
const PROTOCOL = new Set(['priority', 'timeout', 'headers', 'binary_data_output']);
/** The generate extension's own (`stream` is in its example) and the bare name of tritonclient's empty final response. */
const GENERATE = new Set(['max_tokens', 'stop', 'stream', 'enable_empty_final_response']);

const isProtocols = (key: string): boolean => PROTOCOL.has(key) || key.startsWith('triton_');

const isReservedForGeneration = (key: string): boolean => isProtocols(key) || SEQUENCE.has(key) || GENERATE.has(key);

/** A generate request's parameters without the reserved ones: what its generator gets as sampling parameters. */
export function samplingParameters(parameters: Record<string, unknown>): Record<string, unknown> {
  const sampling: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parameters)) if (!isReservedForGeneration(key)) sampling[key] = value;
  return sampling;
}

/**
 * What an ensemble's step request carries of its request's parameters, as Triton passes them on: the
 * custom ones, and the sequence's (Triton gives a step the request's correlation id and flags); the
 * schedule policy's reach the step as its own level and deadline instead. Undefined when none is left.
 */
export function stepParameters(parameters: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (parameters === undefined) return undefined;
  let kept: Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(parameters)) {
    if (isProtocols(key)) continue;
    kept ??= {};
    kept[key] = value;
  }
  return kept;
}
