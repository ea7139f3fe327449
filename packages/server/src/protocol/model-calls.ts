import { MAX_TIMER_MS } from 'batched-fn/adapter';
import {
  type GenerateCall,
  type ModelCallOptions,
  type ModelCalls,
  ModelCycleError,
  cycleText,
  spanContextOf,
} from '../model/model-calls.js';
import { samplingParameters } from '../model/reserved-parameters.js';
import type { ServedModel } from '../model/served-model.js';
import type { CallerMark, InferItem, InferResult, Tensor } from '../model/tensor.js';
import { type DecodedRequest, schedulingParameters } from './decode.js';
import { invalidArgument, ProtocolError } from './errors.js';
import { startGeneration } from './generation.js';
import type { InferenceFront } from './infer-front.js';
import { assertInferItem } from './infer-item.js';
import { clip } from './status.js';

/** An AbortSignal that never aborts, for calls given none (the front needs one). */
const NEVER = new AbortController().signal;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Options as a caller gave them (a JS model's, across a thread): checked as a client's parameters would be. */
function checkOptions(options: ModelCallOptions): void {
  if (!isRecord(options)) throw invalidArgument('The call options must be an object');
  const { timeout, priority, version, chain } = options;
  if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0) || timeout > MAX_TIMER_MS))
    throw invalidArgument(`\`timeout\` must be a number of ms from 0 to ${MAX_TIMER_MS}, got ${clip(String(timeout))}`);
  if (priority !== undefined && (!Number.isSafeInteger(priority) || (priority as number) < 0))
    throw invalidArgument(
      `\`priority\` must be a priority level (1 is the highest; 0 the model's default), got ${clip(String(priority))}`,
    );
  if (version !== undefined && typeof version !== 'string')
    throw invalidArgument(`\`version\` must be a string, got ${clip(String(version))}`);
  if (chain !== undefined && (!Array.isArray(chain) || !chain.every((name) => typeof name === 'string')))
    throw invalidArgument('`chain` must be an array of model names');
  const parameters = options.parameters;
  if (parameters === undefined) return;
  // A plain object: a Map or a Date (structured clone keeps them) has no entries to read and would pass as none.
  const plain = isRecord(parameters) && [Object.prototype, null].includes(Object.getPrototypeOf(parameters));
  if (!plain) throw invalidArgument('`parameters` must be a plain object of parameter name to value');
  for (const [key, value] of Object.entries(parameters)) {
    // A gRPC int64 above 2^53 is a BigInt here: the request's own parameters pass as they came.
    const ok =
      typeof value === 'string' ||
      typeof value === 'boolean' ||
      typeof value === 'bigint' ||
      (typeof value === 'number' && Number.isFinite(value));
    if (!ok)
      throw invalidArgument(
        `parameters.${clip(key)} must be a string, a finite number or a boolean (Triton's parameter types), got ${clip(String(value))}`,
      );
  }
}

/**
 * The request a model-to-model call makes of `model`: its inputs checked against the signature as
 * strictly as a client's (assertInferItem), its rows from the batch dimension, and what the target
 * needs to call on in turn (the chain, the deadline, the trace).
 */
function decodeCall(
  model: ServedModel,
  inputs: unknown,
  options: ModelCallOptions,
  caller: CallerMark,
): DecodedRequest {
  if (!isRecord(inputs)) throw invalidArgument('The inputs must be an object of tensors by name');
  const batched = model.maxBatchSize !== 0;
  const first = inputs[model.signature.inputs[0]?.name ?? ''] as Partial<Tensor> | undefined;
  const rows = batched ? (Array.isArray(first?.shape) ? first.shape[0] : undefined) : 1;
  const parameters = options.parameters;
  const given = parameters !== undefined && Object.keys(parameters).length > 0;
  const item = { rows, inputs, caller, ...(given ? { parameters: { ...parameters } } : {}) };
  assertInferItem(item, model.signature, batched ? (model.maxBatchSize ?? Number.MAX_SAFE_INTEGER) : 1, batched);
  return {
    id: undefined,
    item: item as InferItem,
    outputs: [],
    timeout: options.timeout,
    priority: options.priority === 0 ? undefined : options.priority,
  };
}

/**
 * Model-to-model calls through the infer front: the same lookup, deadlines, priority levels,
 * batcher and metrics as a client's request (counted under protocol `internal`), so a step's rows
 * share batches with every other caller of that model. A call to a model among its callers is a
 * cycle and is refused at once: waiting would be waiting on itself.
 */
export class InProcessCalls implements ModelCalls {
  #front: InferenceFront | undefined;

  /** The front calls go through: the server's, made after the models it serves are loaded. */
  attach(front: InferenceFront): void {
    this.#front = front;
  }

  #serving(): InferenceFront {
    if (this.#front === undefined)
      throw new ProtocolError('unavailable', 'The server is starting: models cannot call others yet', {
        retryAfter: 1,
      });
    return this.#front;
  }

  async infer(name: string, inputs: Record<string, Tensor>, options: ModelCallOptions = {}): Promise<InferResult> {
    checkOptions(options);
    if (typeof name !== 'string') throw invalidArgument('The model to call must be named by a string');
    const chain = [...(options.chain ?? [])];
    if (chain.includes(name)) throw new ModelCycleError(`Model call cycle: ${cycleText(chain, name)}`);
    const trace = spanContextOf(options.trace);
    const caller: CallerMark = {
      chain,
      ...(options.timeout === undefined ? {} : { deadline: Date.now() + options.timeout }),
      ...(trace === undefined ? {} : { trace }),
    };
    return this.#serving().infer(
      {
        protocol: 'internal',
        name,
        version: options.version,
        decode: (model) => decodeCall(model, inputs, options, caller),
        signal: options.signal ?? NEVER,
        ...(options.trace === undefined ? {} : { trace: options.trace }),
      },
      (_model, _decoded, result) => result,
    );
  }

  async *generate(
    name: string,
    request: GenerateCall,
    options: ModelCallOptions = {},
  ): AsyncIterable<{ text_output: string }> {
    checkOptions(options);
    const chain = options.chain ?? [];
    if (chain.includes(name)) throw new ModelCycleError(`Model call cycle: ${cycleText(chain, name)}`);
    if (!isRecord(request) || typeof request.text_input !== 'string')
      throw invalidArgument('`models.generate` needs `{ text_input, parameters? }`');
    if (options.parameters !== undefined)
      throw invalidArgument('`models.generate` takes its parameters in the request: `{ text_input, parameters }`');
    const given = (request.parameters ?? {}) as Record<string, unknown>;
    if (!isRecord(given)) throw invalidArgument('parameters must be an object');
    const { max_tokens: maxTokens, stop } = given;
    if (maxTokens !== undefined && typeof maxTokens !== 'number')
      throw invalidArgument('parameters.max_tokens must be an integer');
    const stops = stop === undefined ? undefined : typeof stop === 'string' ? [stop] : stop;
    if (stops !== undefined && !(Array.isArray(stops) && stops.every((s) => typeof s === 'string')))
      throw invalidArgument('parameters.stop must be a string or an array of strings');
    // As a client's generate request: `priority` (a level) and `timeout` (µs) in its parameters are the
    // schedule-policy extension's; the call's own options, in the JS API's units, win where both are given.
    const scheduling = schedulingParameters(given);
    const level = options.priority !== undefined ? options.priority || undefined : scheduling.priority;
    const timeout = options.timeout ?? scheduling.timeout;
    const sampling = samplingParameters(given);
    const stream = startGeneration(this.#serving().registry, {
      model: name,
      ...(options.version === undefined ? {} : { version: options.version }),
      prompt: request.text_input,
      parameters: sampling,
      ...(maxTokens === undefined ? {} : { maxTokens }),
      ...(stops === undefined ? {} : { stop: stops as string[] }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(timeout === undefined ? {} : { timeoutMs: timeout }),
      ...(level === undefined ? {} : { level }),
    });
    // The outcome is read by whoever iterates; a failed generation throws there, not as an unhandled rejection.
    stream.outcome.catch(() => {});
    for await (const text of stream) yield { text_output: text };
  }
}
