import type { CallerMark, InferResult, Tensor } from './tensor.js';

/**
 * How a model calls other models of the server that serves it, in process: a JS model's
 * `models.infer` (Triton's BLS) and an ensemble's steps. Each call is a request to the target's own
 * batcher, so it shares batches with every other caller of that model, and it counts in the
 * target's statistics and metrics. The protocol layer implements it (protocol/model-calls.ts); a
 * format only holds it.
 */
export interface ModelCallOptions {
  /** The version to call; absent or '': the model's own (the highest served). */
  version?: string;
  /** Triton's priority level: 1 is the highest; absent: the target's default level. */
  priority?: number;
  /** Milliseconds the call may take, queue and run (every JS API of ours counts ms; only the wire counts µs); 0 has passed. */
  timeout?: number;
  /** Gives the call up: it leaves the target's queue, or its answer is dropped. */
  signal?: AbortSignal;
  /**
   * The request's parameters, as a client's `parameters`: strings, finite numbers and booleans (Triton's
   * parameter types). An ensemble forwards its request's to every step, as Triton does.
   */
  parameters?: Record<string, string | number | bigint | boolean>;
  /** The caller's trace (an OpenTelemetry span, or a span context): the target's batch links to it. */
  trace?: unknown;
  /**
   * The models this call is made on behalf of, outermost first. A call to one of them is a cycle
   * (A calls B calls A would wait on itself): refused at once with ERR_MODEL_CYCLE.
   */
  chain?: readonly string[];
}

/** What `models.generate` asks of a generator: the generate extension's fields. */
export interface GenerateCall {
  text_input: string;
  /** Sampling parameters the model accepts, and the server's `max_tokens` and `stop`. */
  parameters?: Record<string, unknown>;
}

export interface ModelCalls {
  /**
   * One request to model `name`: `inputs` by name, each `{ datatype, shape, data }` with BYTES as
   * Uint8Array elements, checked against the target's signature as a client's request would be.
   * Rejects with the ProtocolError a client would get (unknown model, not ready, bad input, timeout).
   */
  infer(name: string, inputs: Record<string, Tensor>, options?: ModelCallOptions): Promise<InferResult>;
  /** Text from generator `name`, chunk by chunk, under the server's `max_tokens` and `stop`. */
  generate(name: string, request: GenerateCall, options?: ModelCallOptions): AsyncIterable<{ text_output: string }>;
}

/** A call that would wait on itself: the target is already among the call's callers. */
export class ModelCycleError extends Error {
  override name = 'ModelCycleError';
  readonly code = 'ERR_MODEL_CYCLE';
}

/** The chain a cycle error names: `a → b → a`. */
export function cycleText(chain: readonly string[], target: string): string {
  return [...chain, target].map((name) => `\`${name}\``).join(' → ');
}

/** The span context of a caller's trace (an OpenTelemetry span, or one already), as plain data that crosses threads. */
export function spanContextOf(trace: unknown): CallerMark['trace'] {
  const span = trace as { spanContext?: () => unknown } | undefined;
  const context = (typeof span?.spanContext === 'function' ? span.spanContext() : trace) as
    | Partial<NonNullable<CallerMark['trace']>>
    | undefined;
  if (
    typeof context !== 'object' ||
    context === null ||
    typeof context.traceId !== 'string' ||
    typeof context.spanId !== 'string'
  )
    return undefined;
  return {
    traceId: context.traceId,
    spanId: context.spanId,
    traceFlags: typeof context.traceFlags === 'number' ? context.traceFlags : 0,
  };
}
