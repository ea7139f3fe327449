import { TimeoutError } from 'batched-fn';
import type { EnsembleStep } from '../model/ensemble-step.js';
import type { ModelCalls } from '../model/model-calls.js';
import type { TensorSpec } from '../model/signature.js';
import {
  type BytesData,
  copiedArray,
  type InferResult,
  ownsBuffer,
  packedBytes,
  type Tensor,
  type TypedArray,
} from '../model/tensor.js';

/**
 * One ensemble request's data flow: every step is a request to its model (through `calls`, so to
 * that model's own batcher), started as soon as the tensors it reads exist. Steps that do not wait
 * on each other run at once; the first failure aborts the others and fails the request.
 */

/** What one request's steps inherit from it. */
export interface FlowContext {
  /** The ensemble's name, appended to the caller's chain (a step calling back into it is a cycle). */
  ensemble: string;
  /** The chain of the request itself, when another model called the ensemble. */
  chain: readonly string[];
  /** Aborts every step still running: the client left, or the ensemble's caller gave up. */
  signal?: AbortSignal | undefined;
  /** The request's Triton priority level (1 highest), passed to each step as its own. */
  level?: number | undefined;
  /** The ms the request was given, and when it gives up on `performance.now()`'s clock: each step gets what is left. */
  timeout?: number | undefined;
  deadline?: number | undefined;
  /** The request's trace, which each step's batch links to. */
  trace?: unknown;
  /** The request's parameters, forwarded to every step (as Triton forwards an ensemble request's). */
  parameters?: Record<string, unknown> | undefined;
}

/** A step that failed: its error, with the step named, and its status (the error's class and fields) kept. */
export function stepFailure(error: unknown, step: EnsembleStep, index: number): Error {
  const prefix = `ensemble step ${index} (\`${step.model_name}\`) failed: `;
  if (typeof error !== 'object' || error === null)
    return Object.assign(new Error(`${prefix}${String(error)}`), { cause: error });
  // A copy, not the error itself: a failed batch rejects all its callers with one error object, and
  // the step's other callers (clients of that model) must not read our prefix in their answers.
  let message: unknown;
  try {
    message = (error as Error).message;
  } catch {
    message = undefined;
  }
  const copy = Object.create(Object.getPrototypeOf(error) as object | null, Object.getOwnPropertyDescriptors(error));
  Object.defineProperty(copy, 'message', {
    value: `${prefix}${typeof message === 'string' ? message : 'an error without a message'}`,
    writable: true,
    configurable: true,
  });
  Object.defineProperty(copy, 'cause', { value: error, writable: true, configurable: true });
  return copy as Error;
}

/** The buffer behind a tensor's data (a BYTES tensor's: its first element's), or undefined for no elements. */
const bufferOf = (data: Tensor['data']): ArrayBufferLike | undefined =>
  Array.isArray(data) ? data[0]?.buffer : (data as TypedArray).buffer;

/** A copy of `tensor` in buffers of its own. */
function copied(tensor: Tensor): Tensor {
  const data = Array.isArray(tensor.data)
    ? packedBytes(tensor.data as BytesData)
    : copiedArray(tensor.data as TypedArray);
  return { datatype: tensor.datatype, shape: [...tensor.shape], data };
}

const show = (shape: readonly number[]): string => JSON.stringify(shape);

/** Why `tensor` (from `step`) is not the ensemble output `spec` declares, or undefined when it is. */
function outputProblem(tensor: Tensor, spec: TensorSpec): string | undefined {
  if (tensor.datatype !== spec.datatype)
    return `is ${tensor.datatype}, but the ensemble declares output \`${spec.name}\` as ${spec.datatype}`;
  const fits =
    Array.isArray(tensor.shape) &&
    tensor.shape.length === spec.shape.length &&
    spec.shape.every((size, i) => size === -1 || tensor.shape[i] === size);
  if (!fits)
    return `has shape ${JSON.stringify(tensor.shape)}, but the ensemble declares output \`${spec.name}\` as ${show(spec.shape)}`;
  return undefined;
}

/** A step as the flow runs it: what it reads, and who reads each tensor. */
interface PlannedStep {
  step: EnsembleStep;
  index: number;
  /** The ensemble tensors it reads (each once, however many of its inputs read it). */
  reads: string[];
}

/**
 * The ensemble's steps, planned once at load: which tensors each reads, and how many readers each
 * tensor has (every step input reading it, and the answer when it is an ensemble output). A tensor
 * read once goes to its reader as it is; read more than once, every reader but the last gets a copy,
 * because a step's call may transfer the buffers of its inputs to a worker thread.
 */
export class EnsembleFlow {
  readonly #steps: PlannedStep[];
  readonly #outputs: readonly TensorSpec[];
  readonly #readers = new Map<string, number>();
  readonly #calls: ModelCalls;

  constructor(steps: readonly EnsembleStep[], outputs: readonly TensorSpec[], calls: ModelCalls) {
    this.#steps = steps.map((step, index) => ({ step, index, reads: [...new Set(Object.values(step.input_map))] }));
    this.#outputs = outputs;
    this.#calls = calls;
    const count = (tensor: string): void => {
      this.#readers.set(tensor, (this.#readers.get(tensor) ?? 0) + 1);
    };
    for (const step of steps) for (const tensor of Object.values(step.input_map)) count(tensor);
    for (const output of outputs) count(output.name);
  }

  /** Runs one request: its inputs by ensemble input name; answers the ensemble's outputs. */
  run(inputs: Readonly<Record<string, Tensor>>, context: FlowContext): Promise<InferResult> {
    const tensors = new Map<string, Tensor>(Object.entries(inputs));
    const left = new Map(this.#readers);
    // Buffers already handed to a step as they were: two tensors may be one array (a model answered it for
    // two outputs, and the clone kept them one), and the first step's call may transfer it. The same goes
    // for a buffer that an ensemble output holds: the answer reads it after the steps.
    const handed = new Set<ArrayBufferLike>();
    const answers = (buffer: ArrayBufferLike): boolean =>
      this.#outputs.some((spec) => {
        const output = tensors.get(spec.name);
        return output !== undefined && bufferOf(output.data) === buffer;
      });
    /** A reader's tensor: the last reader takes it as it is (if it owns a buffer none else holds), others a copy. */
    const take = (name: string): Tensor => {
      const tensor = tensors.get(name) as Tensor;
      const remaining = (left.get(name) ?? 1) - 1;
      left.set(name, remaining);
      const buffer = bufferOf(tensor.data);
      if (remaining > 0 || !ownsBuffer(tensor.data)) return copied(tensor);
      if (buffer !== undefined && (handed.has(buffer) || answers(buffer))) return copied(tensor);
      if (buffer !== undefined) handed.add(buffer);
      return tensor;
    };
    const abort = new AbortController();
    const chain = [...context.chain, context.ensemble];
    const outer = context.signal;
    let onAbort = (): void => {};
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new Promise<InferResult>((resolve, reject) => {
      const waiting = new Set(this.#steps);
      let running = 0;
      let settled = false;
      const finish = (error: unknown, result?: InferResult): void => {
        if (settled) return;
        settled = true;
        outer?.removeEventListener('abort', onAbort);
        clearTimeout(timer);
        if (error === undefined) resolve(result as InferResult);
        else {
          // The others are given up: they leave their models' queues, or their answers are dropped.
          abort.abort(error);
          reject(error);
        }
      };
      const answer = (): void => {
        const result: InferResult = {};
        for (const spec of this.#outputs) {
          // The answer is read last (every step that also read it had a copy) and only encoded: no copy.
          const tensor = tensors.get(spec.name) as Tensor;
          const problem = outputProblem(tensor, spec);
          const from = this.#steps.find((s) => Object.values(s.step.output_map).includes(spec.name)) as PlannedStep;
          if (problem !== undefined) {
            finish(stepFailure(new Error(`its output for \`${spec.name}\` ${problem}`), from.step, from.index));
            return;
          }
          result[spec.name] = tensor;
        }
        finish(undefined, result);
      };
      const launch = (): void => {
        for (const planned of [...waiting]) {
          if (settled) return;
          if (!planned.reads.every((name) => tensors.has(name))) continue;
          waiting.delete(planned);
          running++;
          this.#call(planned, take, chain, abort.signal, context).then(
            (result) => {
              running--;
              if (settled) return;
              for (const [output, tensor] of Object.entries(planned.step.output_map)) {
                const produced = result[output];
                if (produced === undefined)
                  return finish(
                    stepFailure(
                      new Error(`its answer has no output \`${output}\` (mapped to \`${tensor}\`)`),
                      planned.step,
                      planned.index,
                    ),
                  );
                tensors.set(tensor, produced);
              }
              launch();
              if (!settled && running === 0 && waiting.size === 0) answer();
            },
            (error: unknown) => {
              running--;
              // Once the request is given up, every step fails with its reason: that reason is the answer.
              finish(abort.signal.aborted ? abort.signal.reason : stepFailure(error, planned.step, planned.index));
            },
          );
        }
        // The config was checked to be a flow without cycles (repository/ensemble-config.ts): this cannot stay stuck.
        if (!settled && running === 0 && waiting.size > 0)
          finish(new Error(`ensemble \`${context.ensemble}\`: no step can run (a step reads a tensor none writes)`));
      };
      // Settled at once, not when the steps have noticed: a step's model may be slow to let go.
      onAbort = (): void => finish(outer?.reason);
      if (outer?.aborted === true) return finish(outer.reason);
      outer?.addEventListener('abort', onAbort, { once: true });
      // The steps carry the deadline too; this frees the request's run even if one of them does not keep it.
      if (context.deadline !== undefined) {
        timer = setTimeout(
          () => finish(new TimeoutError(context.timeout ?? 0)),
          Math.max(0, context.deadline - performance.now()),
        );
        timer.unref();
      }
      launch();
      if (!settled && this.#steps.length === 0) answer();
    });
  }

  /** One step's request to its model: its inputs, the request's level, what is left of its time, its trace. */
  #call(
    planned: PlannedStep,
    take: (name: string) => Tensor,
    chain: string[],
    signal: AbortSignal,
    context: FlowContext,
  ): Promise<InferResult> {
    const { step } = planned;
    const inputs: Record<string, Tensor> = {};
    for (const [input, tensor] of Object.entries(step.input_map)) inputs[input] = take(tensor);
    const timeout = context.deadline === undefined ? undefined : Math.max(0, context.deadline - performance.now());
    try {
      return this.#calls.infer(step.model_name, inputs, {
        ...(step.model_version === -1 ? {} : { version: String(step.model_version) }),
        ...(context.level === undefined ? {} : { priority: context.level }),
        ...(timeout === undefined ? {} : { timeout }),
        signal,
        ...(context.trace === undefined ? {} : { trace: context.trace }),
        ...(context.parameters === undefined
          ? {}
          : { parameters: context.parameters as Record<string, string | number | bigint | boolean> }),
        chain,
      });
    } catch (error) {
      // A call never throws by contract; one that does fails its step all the same.
      return Promise.reject(error);
    }
  }
}
