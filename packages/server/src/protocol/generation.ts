import { channel } from 'node:diagnostics_channel';
import type { ChatMessage, ServedGenerator } from '../model/generator.js';
import type { ServedModel } from '../model/served-model.js';
import { servedVersions } from '../model/versions.js';
import type { ModelRegistry } from '../repository/registry.js';
import { invalidArgument, ProtocolError } from './errors.js';
import { batcherPriority } from './schedule-policy.js';
import { clip } from './status.js';

/**
 * The generation front: every transport (REST generate, gRPC ModelStreamInfer, the OpenAI API)
 * starts a generation here, so `max_tokens`, `stop`, parameter checks, the bound on buffered
 * output and the response statistics are one rule for all of them. The model only steps.
 */

export interface GenerateRequest {
  model: string;
  /** As infer's: absent or '' is the highest version served. */
  version?: string;
  prompt: string;
  /** Sampling parameters; a name the model does not accept is a 400 (ProtocolError 'invalid-argument'). */
  parameters: Record<string, unknown>;
  /** Server-applied; default and cap from the model's config (`defaultMaxTokens`, `maxTokens`). */
  maxTokens?: number;
  /** Server-applied: a stop string ends the stream and is not part of the output. */
  stop?: readonly string[];
  /** The client went away: the sequence leaves the batch at the next step. */
  signal?: AbortSignal;
  /**
   * The Triton priority level asked for (1 the highest); undefined: the model's default level. Mapped
   * to the batcher's priority here, once for every transport (a level the model lacks is a 400).
   */
  level?: number;
  /** Deadline in ms for the sequence to join a running batch. */
  timeoutMs?: number;
}

/** A stop string / maxTokens / the model said done. */
export type FinishReason = 'stop' | 'length' | 'end';

export interface GenerationOutcome {
  finishReason: FinishReason;
  /** Values the model produced (a value is a token: `usage` counts these). */
  tokens: number;
  /** The prompt's length in code points (the model does not count its tokens for us). */
  promptTokens: number;
}

/** Chunks of text safe to emit (text that may be the start of a stop string is held back until it is not). */
export interface GenerationStream extends AsyncIterable<string> {
  readonly outcome: Promise<GenerationOutcome>;
  /** The version serving it (for the answer's `model_version`). */
  readonly version: string;
}

/**
 * What the front publishes for observability (metrics/metrics.ts subscribes): each response sent
 * and the end of each generation. `ms` of a response is from the request (the first) or from the
 * previous response (later ones), as Triton's `response_stats` counts them.
 */
export type GenerationEvent =
  | { type: 'response'; source: ServedModel; model: string; version: string; index: number; ms: number }
  | {
      type: 'end';
      /** The instance that served it: a listener counts only the instances it tracks (one server's). */
      source: ServedModel;
      model: string;
      version: string;
      /** How it ended: an outcome, the client's leaving, or an error (with `error`). */
      result: 'ok' | 'cancelled' | 'error';
      error?: unknown;
      /** Responses sent before the end (the index of a failed or cancelled one's response). */
      responses: number;
      tokens: number;
      ms: number;
    };

export const GENERATION_CHANNEL = 'batched-fn:generation';
const events = channel(GENERATION_CHANNEL);

/**
 * Most chunks one stream holds for a reader that does not take them. A stream is read as fast as
 * the model produces unless its client is slower than the network: then the transport stops
 * reading (it waits for its socket to drain) and this bound cuts the stream with a clear error,
 * rather than holding a slow reader's text without limit (4,096 tokens: a few pages).
 */
export const STREAM_BUFFER_LIMIT = 4096;
/** The same bound in UTF-16 code units, for a model whose values are long (4 Mi: 8 MiB of text held). */
export const STREAM_BUFFER_CHARS = 4 * 1024 * 1024;
/** Most stop strings a request may give, and the longest one (OpenAI allows 4). */
const MAX_STOPS = 16;
const MAX_STOP_LENGTH = 256;

/** The model named, if it is a READY generator (any version asked is served); throws the refusal otherwise. */
export function generatorOf(registry: ModelRegistry, name: string, version?: string): ServedModel {
  const entry = registry.get(name);
  if (entry === undefined) throw new ProtocolError('not-found', `Unknown generative model \`${clip(name)}\``);
  if (entry.state !== 'READY' || entry.model === undefined)
    throw new ProtocolError(
      'unavailable',
      `Model '${entry.name}' is not ready (it is ${entry.state}${entry.reason === '' ? '' : `: ${entry.reason}`})`,
      { retryAfter: 1 },
    );
  let model = entry.model;
  if (version !== undefined && version !== '') {
    const found = servedVersions(model).find((v) => v.version === version);
    if (found === undefined)
      throw new ProtocolError('not-found', `Model '${entry.name}' has no version ${clip(version)}`);
    model = found;
  }
  if (model.generator === undefined)
    throw new ProtocolError('invalid-argument', `Model '${entry.name}' is not a generative model`);
  return model;
}

/** Every READY generator's versions, for a model list (OpenAI's `/v1/models`). */
export function listGenerators(registry: ModelRegistry): { name: string; version: string; created?: number }[] {
  return registry
    .entries()
    .flatMap((entry) =>
      entry.state !== 'READY' || entry.model === undefined
        ? []
        : servedVersions(entry.model).flatMap((m) =>
            m.generator === undefined ? [] : [{ name: m.name, version: m.version, created: m.generator.created }],
          ),
    );
}

/**
 * The prompt of a chat: the model's `chatTemplate(messages)` export, run in its worker thread, or
 * without one this default: each message on its own line as `role: content`, then `assistant: `
 * (the role that answers). Messages are checked here: strings only.
 */
export async function chatPrompt(
  registry: ModelRegistry,
  model: string,
  messages: { role: string; content: string }[],
  version?: string,
): Promise<string> {
  const generator = generatorOf(registry, model, version).generator as ServedGenerator;
  if (!Array.isArray(messages) || messages.length === 0) throw invalidArgument('messages must be a non-empty array');
  for (const m of messages)
    if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string')
      throw invalidArgument('each message must have a string `role` and a string `content`');
  const plain: ChatMessage[] = messages.map((m) => ({ role: m.role, content: m.content }));
  if (!generator.hasChatTemplate) return defaultChatTemplate(plain);
  const prompt = await generator.chatTemplate(plain);
  if (typeof prompt !== 'string') throw new ProtocolError('internal', 'Model failed: chatTemplate returned no string');
  return prompt;
}

export function defaultChatTemplate(messages: readonly ChatMessage[]): string {
  return `${messages.map((m) => `${m.role}: ${m.content}\n`).join('')}assistant: `;
}

/** Checks what every transport hands over, against the model's limits. */
function checked(generator: ServedGenerator, request: GenerateRequest): { maxTokens: number; stop: string[] } {
  if (typeof request.prompt !== 'string') throw invalidArgument('the prompt must be a string');
  if (request.prompt.length > generator.maxPrompt)
    throw invalidArgument(`text_input must be a string of at most ${generator.maxPrompt} characters`);
  const parameters = request.parameters;
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters))
    throw invalidArgument('parameters must be an object');
  for (const key of Object.keys(parameters))
    if (!generator.parameters.includes(key))
      throw invalidArgument(
        `Unknown sampling parameter \`${clip(key)}\` (the model accepts ${
          generator.parameters.length === 0 ? 'none' : generator.parameters.map((p) => `\`${p}\``).join(', ')
        })`,
      );
  const maxTokens = request.maxTokens ?? Math.min(generator.defaultMaxTokens, generator.maxTokens);
  if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > generator.maxTokens)
    throw invalidArgument(
      `max_tokens must be an integer from 1 to ${generator.maxTokens}, got ${clip(JSON.stringify(maxTokens) ?? '')}`,
    );
  const stop = [...(request.stop ?? [])];
  if (stop.length > MAX_STOPS) throw invalidArgument(`stop may hold at most ${MAX_STOPS} strings, got ${stop.length}`);
  for (const s of stop)
    if (typeof s !== 'string' || s.length === 0 || s.length > MAX_STOP_LENGTH)
      throw invalidArgument(`each stop string must be a string of 1 to ${MAX_STOP_LENGTH} characters`);
  return { maxTokens, stop };
}

/** Where the first stop string starts in `text`, or -1. */
function stopAt(text: string, stops: readonly string[]): number {
  let first = -1;
  for (const s of stops) {
    const at = text.indexOf(s);
    if (at >= 0 && (first < 0 || at < first)) first = at;
  }
  return first;
}

/** The length of `text`'s longest end that begins some stop string: held back until the next value decides. */
function heldBack(text: string, stops: readonly string[]): number {
  let most = 0;
  for (const s of stops)
    for (let n = Math.min(s.length - 1, text.length); n > most; n--)
      if (text.endsWith(s.slice(0, n))) {
        most = n;
        break;
      }
  return most;
}

/**
 * Starts a generation: throws the refusal now when the model is unknown, not ready, not a
 * generator, or the request is wrong; a full queue (ERR_QUEUE_FULL, 503 with Retry-After)
 * surfaces on the first `next()`. The stream is read from the model as fast as it produces;
 * chunks wait for the reader up to STREAM_BUFFER_LIMIT, beyond which the stream is cut.
 */
export function startGeneration(registry: ModelRegistry, request: GenerateRequest): GenerationStream {
  const model = generatorOf(registry, request.model, request.version);
  const generator = model.generator as ServedGenerator;
  const { maxTokens, stop } = checked(generator, request);
  const priority = batcherPriority(request.level, model.config ?? {}, model.name);
  return new Generation(model, generator, request, { maxTokens, stop, priority });
}

class Generation implements GenerationStream {
  readonly outcome: Promise<GenerationOutcome>;
  readonly version: string;
  readonly #model: ServedModel;
  readonly #source: AsyncIterableIterator<string>;
  readonly #controller = new AbortController();
  readonly #started = performance.now();
  #lastResponse = this.#started;
  #responses = 0;
  /** Values the model produced. */
  #tokens = 0;
  /** Chunks not yet taken, from #head on. */
  #chunks: string[] = [];
  #head = 0;
  /** Code units of the chunks not yet taken. */
  #bufferedChars = 0;
  #ended = false;
  #error: unknown = undefined;
  #waiter: ((result: IteratorResult<string>) => void) | undefined;
  #failWaiter: ((error: unknown) => void) | undefined;
  #settle!: { resolve: (o: GenerationOutcome) => void; reject: (e: unknown) => void };
  readonly #unlink: () => void;

  constructor(
    model: ServedModel,
    generator: ServedGenerator,
    request: GenerateRequest,
    { maxTokens, stop, priority }: { maxTokens: number; stop: readonly string[]; priority: number },
  ) {
    this.#model = model;
    this.version = model.version;
    this.outcome = new Promise((resolve, reject) => (this.#settle = { resolve, reject }));
    // Read by whoever wants it; a failure nobody awaits must not be an unhandled rejection.
    this.outcome.catch(() => {});
    const signal = request.signal;
    const onAbort = () => this.#cancel(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#unlink = () => signal?.removeEventListener('abort', onAbort);
    // The model's own deadline (config.json `timeout`) bounds the request's, as infer's does.
    const limits = [request.timeoutMs, model.timeout].filter((t): t is number => t !== undefined);
    this.#source = generator.stream(
      { text: request.prompt, parameters: { ...request.parameters } },
      {
        signal: this.#controller.signal,
        ...(priority === 0 ? {} : { priority }),
        ...(limits.length === 0 ? {} : { timeout: Math.max(0, Math.min(...limits)) }),
      },
    );
    if (signal?.aborted === true) this.#cancel(signal.reason);
    void this.#pump(maxTokens, stop, [...request.prompt].length);
  }

  async #pump(maxTokens: number, stop: readonly string[], promptTokens: number): Promise<void> {
    let pending = '';
    let finishReason: FinishReason = 'end';
    try {
      for (;;) {
        const next = await this.#source.next();
        if (this.#ended) return;
        if (next.done === true) {
          this.#emit(pending);
          break;
        }
        this.#tokens++;
        pending += next.value;
        const at = stopAt(pending, stop);
        if (at >= 0) {
          this.#emit(pending.slice(0, at));
          finishReason = 'stop';
          break;
        }
        if (this.#tokens >= maxTokens) {
          this.#emit(pending);
          finishReason = 'length';
          break;
        }
        const keep = heldBack(pending, stop);
        this.#emit(pending.slice(0, pending.length - keep));
        pending = pending.slice(pending.length - keep);
        if (this.#chunks.length - this.#head > STREAM_BUFFER_LIMIT || this.#bufferedChars > STREAM_BUFFER_CHARS) {
          this.#fail(
            new ProtocolError(
              'resource-exhausted',
              this.#bufferedChars > STREAM_BUFFER_CHARS
                ? `The stream was cut: its reader fell ${STREAM_BUFFER_CHARS} characters behind the model`
                : `The stream was cut: its reader fell ${STREAM_BUFFER_LIMIT} chunks behind the model`,
            ),
          );
          return;
        }
      }
    } catch (error) {
      this.#fail(error);
      return;
    }
    // Ended early by the server (stop, length): the sequence leaves the batch at the next step.
    if (finishReason !== 'end') void this.#source.return?.();
    this.#finish({ finishReason, tokens: this.#tokens, promptTokens });
    this.#publishEnd('ok');
  }

  #emit(text: string): void {
    if (text === '' || this.#ended) return;
    const now = performance.now();
    if (events.hasSubscribers)
      events.publish({
        type: 'response',
        source: this.#model,
        model: this.#model.name,
        version: this.#model.version,
        index: this.#responses,
        ms: now - this.#lastResponse,
      } satisfies GenerationEvent);
    this.#responses++;
    this.#lastResponse = now;
    const waiter = this.#waiter;
    if (waiter !== undefined) {
      this.#waiter = this.#failWaiter = undefined;
      waiter({ value: text, done: false });
    } else {
      this.#chunks.push(text);
      this.#bufferedChars += text.length;
    }
  }

  #finish(outcome: GenerationOutcome): void {
    this.#ended = true;
    this.#unlink();
    this.#settle.resolve(outcome);
    const waiter = this.#waiter;
    if (waiter !== undefined && this.#chunks.length === this.#head) {
      this.#waiter = this.#failWaiter = undefined;
      waiter({ value: undefined, done: true });
    }
  }

  #fail(error: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = error;
    this.#unlink();
    this.#controller.abort(error);
    void this.#source.return?.();
    this.#settle.reject(error);
    const cancelled = error instanceof ProtocolError && error.protocolStatus === 'cancelled';
    this.#publishEnd(cancelled ? 'cancelled' : 'error', error);
    const failWaiter = this.#failWaiter;
    if (failWaiter !== undefined && this.#chunks.length === this.#head) {
      this.#waiter = this.#failWaiter = undefined;
      failWaiter(error);
    }
  }

  #cancel(reason: unknown): void {
    this.#fail(
      reason instanceof ProtocolError && reason.protocolStatus === 'cancelled'
        ? reason
        : new ProtocolError('cancelled', 'The client cancelled the generation'),
    );
  }

  #publishEnd(result: 'ok' | 'cancelled' | 'error', error?: unknown): void {
    if (!events.hasSubscribers) return;
    events.publish({
      type: 'end',
      source: this.#model,
      model: this.#model.name,
      version: this.#model.version,
      result,
      ...(error === undefined ? {} : { error }),
      responses: this.#responses,
      tokens: this.#tokens,
      ms: performance.now() - this.#started,
    } satisfies GenerationEvent);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<string> {
    const next = (): Promise<IteratorResult<string>> => {
      if (this.#head < this.#chunks.length) {
        const value = this.#chunks[this.#head++] as string;
        this.#bufferedChars -= value.length;
        // Reclaim the taken part now and then, not on every read.
        if (this.#head > 1024 && this.#head * 2 > this.#chunks.length) {
          this.#chunks = this.#chunks.slice(this.#head);
          this.#head = 0;
        }
        return Promise.resolve({ value, done: false });
      }
      if (this.#ended)
        return this.#error === undefined
          ? Promise.resolve({ value: undefined, done: true })
          : Promise.reject(this.#error);
      return new Promise((resolve, reject) => {
        this.#waiter = resolve;
        this.#failWaiter = reject;
      });
    };
    const iterator: AsyncIterableIterator<string> = {
      next,
      // A reader that stops early (break, a transport's hang-up) cancels the sequence.
      return: (): Promise<IteratorResult<string>> => {
        if (!this.#ended) this.#cancel(undefined);
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }
}
