import type { MessagePort } from 'node:worker_threads';
import { serializeError } from 'batched-fn/adapter';
import type { ModelCallOptions, ModelCalls } from '../model/model-calls.js';
import { type CallAnswer, type CallRequest, ownedForTransfer, parseCallRequest } from './model-calls-wire.js';

/** The model whose worker calls: its name (added to every call's chain) and the models it declared it calls. */
export interface CallingModel {
  name: string;
  /** Its `calls` export: when given, the only models it may call (the registry checked them for cycles at load). */
  declared: readonly string[] | undefined;
  /** Its requests in flight, whose calls are given up when they are. */
  requests: RequestSignals;
}

/**
 * The requests a JS model is running, numbered, with the signal of each: a call its worker makes for
 * a batch is given up once every request of that batch is (the calls serve all of them; for a model
 * that runs one request at a time, exactly its own).
 */
export class RequestSignals {
  #next = 0;
  readonly #signals = new Map<number, AbortSignal | undefined>();

  register(signal: AbortSignal | undefined): { id: number; release: () => void } {
    const id = ++this.#next;
    this.#signals.set(id, signal);
    return { id, release: () => this.#signals.delete(id) };
  }

  /**
   * Aborts `controller` once each of `ids` has aborted or is answered (never, when one of them has no
   * signal); answers what removes the listeners it left on their signals, for when the call settles.
   */
  all(ids: readonly number[] | undefined, controller: AbortController): () => void {
    if (ids === undefined || ids.length === 0) return () => {};
    const live: AbortSignal[] = [];
    for (const id of ids) {
      if (!this.#signals.has(id)) continue;
      const signal = this.#signals.get(id);
      if (signal === undefined) return () => {};
      if (!signal.aborted) live.push(signal);
    }
    const gone = new DOMException('Every request these calls were made for was given up', 'AbortError');
    if (live.length === 0) {
      controller.abort(gone);
      return () => {};
    }
    let waiting = live.length;
    const onAbort = (): void => {
      if (--waiting === 0) controller.abort(gone);
    };
    for (const signal of live) signal.addEventListener('abort', onAbort, { once: true });
    return () => {
      for (const signal of live) signal.removeEventListener('abort', onAbort);
    };
  }
}

/** Why a call failed before it reached any model: the model's own mistake, said as a client's would be (400). */
class ModelCallError extends TypeError {
  override name = 'ModelCallError';
  readonly status = 400;
}

/**
 * Serves one worker's `models` calls (formats/model-calls.worker.ts) in the main thread, over its
 * `connectWorker` port: each call goes to `calls` (the server's, protocol/model-calls.ts), with the
 * chain, deadline and trace of the batch that made it. Answers go back with their buffers
 * transferred. When the worker exits (its port closes), its calls still running are given up.
 */
export function serveModelCalls(port: MessagePort, calls: ModelCalls, model: CallingModel): void {
  const running = new Map<number, AbortController>();
  let closed = false;
  const post = (message: CallAnswer, transfer?: ArrayBuffer[]): void => port.postMessage(message, transfer);
  const fail = (id: number, error: unknown): void => {
    // The worker is gone (its port closed): nobody is left to answer.
    if (!closed) post({ type: 'error', id, error: serializeError(error) });
  };
  /** An answer that cannot be sent (a value that does not clone) fails its call rather than leave it waiting. */
  const answer = (message: CallAnswer, transfer?: ArrayBuffer[]): void => {
    if (closed) return;
    try {
      post(message, transfer);
    } catch (error) {
      fail(message.id, error);
    }
  };

  port.on('message', (raw: unknown) => {
    const request = parseCallRequest(raw);
    if (request === undefined) return;
    if ('problem' in request) return fail(request.id, new ModelCallError(`models call: ${request.problem}`));
    if (request.type === 'cancel') {
      running.get(request.id)?.abort(new DOMException('The calling model gave the call up', 'AbortError'));
      return;
    }
    if (running.has(request.id)) return fail(request.id, new ModelCallError(`models call ${request.id} is running`));
    if (model.declared !== undefined && !model.declared.includes(request.model)) {
      return fail(
        request.id,
        new ModelCallError(
          `\`${model.name}\` may call only the models its \`calls\` export names (${model.declared.map((n) => `\`${n}\``).join(', ')}), not \`${request.model.slice(0, 64)}\``,
        ),
      );
    }
    const controller = new AbortController();
    running.set(request.id, controller);
    // Given up with the requests the call is made for (the batch's), with no listener left behind on theirs.
    const given = model.requests.all(request.caller?.origins, controller);
    void serve(request, controller.signal)
      .catch((error: unknown) => fail(request.id, error))
      .finally(() => {
        given();
        running.delete(request.id);
      });
  });
  port.on('close', () => {
    closed = true;
    for (const controller of running.values()) controller.abort(new Error(`the worker of \`${model.name}\` exited`));
    running.clear();
  });
  // An idle server must be able to exit; the worker at the other end keeps itself alive while it waits.
  port.unref();

  async function serve(request: Exclude<CallRequest, { type: 'cancel' }>, signal: AbortSignal): Promise<void> {
    const options = callOptions(request, signal);
    if (request.type === 'infer') {
      const outputs = await calls.infer(request.model, request.inputs, options);
      const { tensors, transfer } = ownedForTransfer(outputs, 'always');
      answer({ type: 'result', id: request.id, outputs: tensors }, transfer);
      return;
    }
    for await (const chunk of calls.generate(request.model, request.request, options)) {
      answer({ type: 'chunk', id: request.id, text: chunk.text_output });
    }
    answer({ type: 'end', id: request.id });
  }

  /** The call's options: its own, under the batch's deadline, on behalf of the batch's callers and this model. */
  function callOptions(request: Exclude<CallRequest, { type: 'cancel' }>, signal: AbortSignal): ModelCallOptions {
    const { caller, options } = request;
    const chain = [...(caller?.chain ?? [])];
    if (chain.at(-1) !== model.name) chain.push(model.name);
    const remaining = caller?.deadline === undefined ? undefined : Math.max(0, caller.deadline - Date.now());
    const limits = [options.timeout, remaining].filter((t): t is number => typeof t === 'number');
    return {
      ...options,
      ...(limits.length === 0 ? {} : { timeout: Math.min(...limits) }),
      signal,
      chain,
      ...(caller?.trace === undefined ? {} : { trace: caller.trace }),
    };
  }
}
