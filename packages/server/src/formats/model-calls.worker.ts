/**
 * A JS model's `models` handle, in its worker thread: `models.infer(name, inputs, options)` and
 * `models.generate(name, request, options)` reach the main thread's models over the worker's
 * `connectWorker` port (model-calls-host.ts serves them), each call on behalf of the batch that
 * made it: its chain of callers, its deadline and its trace travel with it (callerScope).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { MessagePort } from 'node:worker_threads';
import { deserializeError } from 'batched-fn/adapter';
import type { CallerMark, Tensor } from '../model/tensor.js';
import {
  type CallAnswer,
  type CallRequest,
  ownedForTransfer,
  parseCallAnswer,
  type WireCallOptions,
} from './model-calls-wire.js';

/** A tensor as a JS model's handler sees and gives them: BYTES as strings (or Uint8Array with `binary`). */
export interface HandlerTensor {
  datatype: string;
  shape: number[];
  data: ArrayLike<unknown>;
}

export interface WorkerCallOptions {
  version?: string;
  /** Priority level: 1 is the highest; absent: the target's default. */
  priority?: number;
  /** Milliseconds; the batch's own deadline applies as well. */
  timeout?: number;
  signal?: AbortSignal;
  /** The request's parameters for the target (strings, finite numbers, booleans). */
  parameters?: Record<string, string | number | bigint | boolean>;
}

/** The batch running now, for the calls its handler makes (a thread runs one batch at a time, but awaits interleave). */
export const callerScope = new AsyncLocalStorage<CallerMark>();

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A handler's tensor as the server keeps them: strings of a BYTES tensor to UTF-8. */
function toWire(name: string, tensor: HandlerTensor): Tensor {
  if (typeof tensor !== 'object' || tensor === null)
    throw new TypeError(`models.infer: input \`${name}\` must be { datatype, shape, data }`);
  const { datatype, shape, data } = tensor;
  if (datatype === 'BYTES' && Array.isArray(data)) {
    const elements = data.map((e) => (e instanceof Uint8Array ? e : encoder.encode(String(e))));
    return { datatype: 'BYTES', shape, data: elements };
  }
  if (
    ArrayBuffer.isView(data) &&
    data.byteLength === 0 &&
    Array.isArray(shape) &&
    shape.reduce((count: number, d) => count * d, 1) > 0
  )
    throw new TypeError(
      `models.infer: input \`${name}\`'s buffer was moved by an earlier call (inputs are transferred, not copied); pass a copy (data.slice()) to use it twice`,
    );
  return { datatype, shape, data } as Tensor;
}

/** An answer's tensors as a handler sees them: BYTES as strings unless the model reads bytes. */
function toHandler(outputs: Record<string, Tensor>, binary: boolean): Record<string, HandlerTensor> {
  const out: Record<string, HandlerTensor> = {};
  for (const [name, tensor] of Object.entries(outputs)) {
    out[name] =
      tensor.datatype === 'BYTES' && !binary
        ? { ...tensor, data: (tensor.data as Uint8Array[]).map((e) => decoder.decode(e)) }
        : tensor;
  }
  return out;
}

interface Waiting {
  resolve: (outputs: Record<string, Tensor>) => void;
  reject: (error: unknown) => void;
  /** A generation's chunks, as they come. */
  chunk?: (text: string) => void;
  end?: () => void;
}

export class ModelsClient {
  readonly #port: MessagePort;
  readonly #binary: boolean;
  readonly #waiting = new Map<number, Waiting>();
  #next = 1;

  constructor(port: MessagePort, binary: boolean) {
    this.#port = port;
    this.#binary = binary;
    port.on('message', (raw: unknown) => this.#answer(parseCallAnswer(raw)));
    // Waiting for no call, the port must not keep the thread alive (the pool decides its life).
    port.unref();
  }

  /** One request to model `name`; its inputs' buffers are moved to the main thread. */
  async infer(
    name: string,
    inputs: Record<string, HandlerTensor>,
    options: WorkerCallOptions = {},
  ): Promise<Record<string, HandlerTensor>> {
    if (typeof inputs !== 'object' || inputs === null)
      throw new TypeError('models.infer(name, inputs): inputs must be an object of tensors by name');
    checkOptions(options);
    const wire: Record<string, Tensor> = {};
    for (const [input, tensor] of Object.entries(inputs)) wire[input] = toWire(input, tensor);
    const { tensors, transfer } = ownedForTransfer(wire, 'shared');
    const outputs = await this.#call(
      (id) => ({
        type: 'infer',
        id,
        model: name,
        inputs: tensors,
        options: wireOptions(options),
        caller: callerScope.getStore(),
      }),
      transfer,
      options.signal,
    );
    return toHandler(outputs, this.#binary);
  }

  /** Text from generator `name`, chunk by chunk; stopping early (break) cancels it. */
  async *generate(
    name: string,
    request: { text_input: string; parameters?: Record<string, unknown> },
    options: WorkerCallOptions = {},
  ): AsyncGenerator<{ text_output: string }> {
    checkOptions(options);
    const chunks: string[] = [];
    let ended = false;
    let failure: unknown;
    let wake: (() => void) | undefined;
    const poke = (): void => {
      wake?.();
      wake = undefined;
    };
    const id = this.#next++;
    const done = this.#send(
      id,
      { type: 'generate', id, model: name, request, options: wireOptions(options), caller: callerScope.getStore() },
      undefined,
      options.signal,
      {
        chunk: (text) => {
          chunks.push(text);
          poke();
        },
        end: () => {
          ended = true;
          poke();
        },
      },
    );
    done.catch((error: unknown) => {
      failure = error;
      ended = true;
      poke();
    });
    try {
      for (;;) {
        if (chunks.length > 0) {
          yield { text_output: chunks.shift() as string };
          continue;
        }
        if (failure !== undefined) throw failure;
        if (ended) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    } finally {
      // Left early (a break, a throw): the main thread stops generating for nobody.
      if (!ended) this.#cancel(id);
    }
  }

  #call(
    make: (id: number) => CallRequest,
    transfer: ArrayBuffer[] | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, Tensor>> {
    const id = this.#next++;
    return this.#send(id, make(id), transfer, signal, {});
  }

  #send(
    id: number,
    message: CallRequest,
    transfer: ArrayBuffer[] | undefined,
    signal: AbortSignal | undefined,
    stream: Pick<Waiting, 'chunk' | 'end'>,
  ): Promise<Record<string, Tensor>> {
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.#cancel(id);
        settle(() => reject(signal?.reason));
      };
      // A backstop: a call with a deadline whose answer never came (it cannot, unless the main thread
      // lost it) fails a while after the deadline instead of holding its batch forever.
      const deadline = message.type === 'infer' ? deadlineOf(message) : undefined;
      const backstop =
        deadline === undefined || !Number.isFinite(deadline)
          ? undefined
          : setTimeout(
              () =>
                settle(() =>
                  reject(
                    new Error(`models.infer('${message.type === 'infer' ? message.model : ''}') was never answered`),
                  ),
                ),
              Math.min(2 ** 31 - 1, Math.max(0, deadline - Date.now()) + ANSWER_GRACE_MS),
            );
      backstop?.unref();
      const settle = (finish: () => void): void => {
        if (!this.#waiting.delete(id)) return;
        clearTimeout(backstop);
        signal?.removeEventListener('abort', onAbort);
        if (this.#waiting.size === 0) this.#port.unref();
        finish();
      };
      this.#waiting.set(id, {
        resolve: (outputs) => settle(() => resolve(outputs)),
        reject: (error) => settle(() => reject(error)),
        ...(stream.chunk === undefined ? {} : { chunk: stream.chunk }),
        ...(stream.end === undefined
          ? {}
          : {
              end: () =>
                settle(() => {
                  stream.end?.();
                  resolve({});
                }),
            }),
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      // A call in flight keeps the thread alive until it is answered.
      this.#port.ref();
      try {
        this.#port.postMessage(message, transfer);
      } catch (error) {
        settle(() => reject(error));
      }
    });
  }

  #cancel(id: number): void {
    try {
      this.#port.postMessage({ type: 'cancel', id } satisfies CallRequest);
    } catch {
      // The port is closed: the main thread has given the call up already.
    }
  }

  #answer(message: CallAnswer | undefined): void {
    if (message === undefined) return;
    const waiting = this.#waiting.get(message.id);
    if (waiting === undefined) return;
    switch (message.type) {
      case 'result':
        waiting.resolve(message.outputs);
        break;
      case 'chunk':
        waiting.chunk?.(message.text);
        break;
      case 'end':
        waiting.end?.();
        break;
      case 'error':
        waiting.reject(deserializeError(message.error));
        break;
    }
  }
}

/** How long past a call's deadline its answer may still come (the target's own timeout answers first). */
const ANSWER_GRACE_MS = 5_000;

/** When a call gives up: its own timeout, or its batch's deadline, whichever comes first. */
function deadlineOf(message: Extract<CallRequest, { type: 'infer' }>): number | undefined {
  const own = message.options.timeout === undefined ? undefined : Date.now() + message.options.timeout;
  const batch = message.caller?.deadline;
  if (own === undefined) return batch;
  return batch === undefined ? own : Math.min(own, batch);
}

function checkOptions(options: unknown): asserts options is WorkerCallOptions {
  if (typeof options !== 'object' || options === null)
    throw new TypeError(`models call options must be an object, got ${options === null ? 'null' : typeof options}`);
}

function wireOptions(options: WorkerCallOptions): WireCallOptions {
  return {
    ...(options.version === undefined ? {} : { version: options.version }),
    ...(options.priority === undefined ? {} : { priority: options.priority }),
    ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
    ...(options.parameters === undefined ? {} : { parameters: options.parameters }),
  };
}
