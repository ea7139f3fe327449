import { MAX_TIMER_MS } from 'batched-fn';
import type { Metadata, ServerDuplexStream } from '@grpc/grpc-js';
import type { InFlight } from '../protocol/in-flight.js';
import { ProtocolError } from '../protocol/errors.js';
import type { GrpcInferRequest } from './decode.js';
import type { GrpcInferResponse } from './encode.js';
import type { GenerationResponse } from './generation.js';
import { RefusedRequest } from './guards.js';
import { GRPC_CODE, grpcStatusFor } from './status.js';

export interface StreamInferResponse {
  error_message: string;
  infer_response: GrpcInferResponse | GenerationResponse | { id: string };
}

/** What a ModelStreamInfer stream needs from the service. */
export interface StreamInferContext {
  /** One request, as ModelInfer runs it (the same front, batcher, checks, metrics and spans). */
  infer(
    request: GrpcInferRequest,
    options: { signal: AbortSignal; deadline: number | undefined; metadata: Metadata },
  ): Promise<GrpcInferResponse>;
  /**
   * A generator's responses (grpc/generation.ts: decoupled, many per request), or undefined when
   * the request's model is no generator; throws the request's refusal.
   */
  generate?(
    request: GrpcInferRequest,
    options: { signal: AbortSignal; deadline: number | undefined },
  ): AsyncIterable<GenerationResponse> | undefined;
  /** Counts each request from its arrival until its answer is written, so that drain waits for it. */
  tracker: InFlight;
  /** Most requests one stream has unanswered; past it the stream is not read until one is answered. */
  maxInFlight: number;
}

/** A request read from the stream, in arrival order, until its answer is written. */
interface Slot {
  answer: StreamInferResponse | undefined;
}

/** Open streams, so that drain can end each once its answers are written. */
export class StreamRegistry {
  readonly #open = new Set<() => void>();
  #draining = false;

  get draining(): boolean {
    return this.#draining;
  }

  add(onDrain: () => void): () => void {
    this.#open.add(onDrain);
    return () => this.#open.delete(onDrain);
  }

  drain(): void {
    this.#draining = true;
    for (const onDrain of this.#open) onDrain();
  }
}

/**
 * ModelStreamInfer: a bidirectional stream of ModelInferRequests, answered in the order they
 * came, each with its request's id (Triton's non-decoupled streaming). Requests are not run one
 * after another: each goes to the model's batcher as it arrives, as a ModelInfer call would, so
 * requests of one stream share batches with each other and with every other client's; an
 * answer that is ready waits only for those before it.
 *
 * - A request that fails is answered in its turn with `error_message` (the text ModelInfer's
 *   status would carry) and its id; the stream stays open.
 * - At most `maxInFlight` requests of a stream are unanswered: past it, and while the client
 *   does not read its answers (the write buffer is full), the stream is not read, so HTTP/2
 *   flow control holds the client back instead of the server buffering for it.
 * - The client's half-close ends the stream (OK) once every answer is written; its cancel, or
 *   the call's deadline, takes the stream's requests out of the queues (or their slots in a
 *   running batch) and writes nothing more. A vanished client is a cancel.
 * - Drain: a request arriving after it is refused (`Server is shutting down`), and the stream
 *   ends once the answers it owes are written.
 * - A generator's request (Triton's decoupled models) is answered with many responses, written
 *   as they come (grpc/generation.ts); the stream's cancel takes its sequence out of the batch
 *   at the next step.
 */
export function modelStreamInfer(context: StreamInferContext, streams: StreamRegistry) {
  return (call: ServerDuplexStream<GrpcInferRequest | RefusedRequest, StreamInferResponse>): void => {
    const controller = new AbortController();
    // Arrival order. Slots leave from `head`; the array is compacted once half of it is gone.
    const slots: (Slot | undefined)[] = [];
    let head = 0;
    let halfClosed = false;
    let ending = false;
    let finished = false;
    let writeBlocked = false;
    /** Generations running: their responses are written as they come, not in the slots' order. */
    let generating = 0;
    /** Generations waiting for the client to read (the write buffer is full). */
    const drainWaiters: (() => void)[] = [];

    const unanswered = (): number => slots.length - head + generating;
    const finish = (): void => {
      if (finished) return;
      finished = true;
      forget();
    };
    const endIfDone = (): void => {
      if (!ending && !finished && unanswered() === 0 && (halfClosed || streams.draining)) {
        ending = true;
        call.end();
        finish();
      }
    };
    /** Writes every answer that is ready and has no unanswered request before it, while the client reads them. */
    const flush = (): void => {
      while (!finished && !writeBlocked && head < slots.length) {
        const answer = slots[head]?.answer;
        if (answer === undefined) break;
        slots[head++] = undefined;
        if (!call.write(answer)) writeBlocked = true;
      }
      if (head > 64 && head * 2 > slots.length) {
        slots.splice(0, head);
        head = 0;
      }
      if (!finished && !writeBlocked && unanswered() < context.maxInFlight && call.isPaused()) call.resume();
      endIfDone();
    };

    const forget = streams.add(() => {
      // Drain: requests already read are answered, then the stream ends; new ones are refused (handled per request).
      endIfDone();
    });

    call.on('drain', () => {
      writeBlocked = false;
      for (const wake of drainWaiters.splice(0)) wake();
      flush();
    });
    call.on('end', () => {
      halfClosed = true;
      endIfDone();
    });
    call.on('cancelled', () => {
      // Cancelled, past its deadline, or the client is gone: nothing more can be written.
      controller.abort(whyCancelled(call.getDeadline()));
      finish();
      // The answers still owed are dropped; their requests settle (aborted) and end their tracking.
      slots.length = 0;
      head = 0;
      for (const wake of drainWaiters.splice(0)) wake();
    });
    // The duplex's own listener turns an error into the call's status; nothing else to do here.
    call.on('error', () => {});

    call.on('data', (request: GrpcInferRequest | RefusedRequest) => {
      if (finished || ending) return;
      const generation = generationOf(request);
      if (generation !== undefined) {
        generating++;
        if (unanswered() >= context.maxInFlight) call.pause();
        context.tracker.begin();
        stream(generation, request instanceof RefusedRequest ? '' : (request.id ?? '')).catch(fail);
        return;
      }
      const slot: Slot = { answer: undefined };
      slots.push(slot);
      if (unanswered() >= context.maxInFlight) call.pause();
      context.tracker.begin();
      serve(request, slot).catch(fail);
    });

    /**
     * A generator's request: its responses, or undefined for an ordinary request. A refusal (an
     * unknown parameter, a model not ready) is an ordinary request's: answered in its turn.
     */
    const generationOf = (
      request: GrpcInferRequest | RefusedRequest,
    ): AsyncIterable<GenerationResponse> | undefined => {
      if (request instanceof RefusedRequest || context.generate === undefined || streams.draining) return undefined;
      try {
        return context.generate(request, { signal: controller.signal, deadline: remainingMs(call.getDeadline()) });
      } catch (error) {
        return (async function* refused(): AsyncGenerator<GenerationResponse> {
          yield* [];
          throw error;
        })();
      }
    };

    /**
     * Writes a generation's responses as they come (Triton's decoupled models: many per request,
     * not in the order of the stream's requests). While the client does not read, it waits, and
     * the generation front holds the chunks within its bound; a failure is answered as one
     * response with its error_message. The tracker counts it until its last response is written.
     */
    const stream = async (generation: AsyncIterable<GenerationResponse>, id: string): Promise<void> => {
      try {
        for await (const response of generation) {
          if (finished) break;
          if (!call.write({ error_message: '', infer_response: response })) writeBlocked = true;
          if (writeBlocked && !finished) await new Promise<void>((wake) => drainWaiters.push(wake));
        }
      } catch (error) {
        if (!finished) call.write({ error_message: grpcStatusFor(error).details, infer_response: { id } });
      } finally {
        generating--;
        context.tracker.end();
      }
      flush();
    };

    /** Runs one request and writes its answer (or its error) in its turn; the tracker counts it until then. */
    const serve = async (request: GrpcInferRequest | RefusedRequest, slot: Slot): Promise<void> => {
      const id = request instanceof RefusedRequest ? '' : (request.id ?? '');
      try {
        slot.answer = await answer(request).then(
          (response): StreamInferResponse => ({ error_message: '', infer_response: response }),
          (error: unknown): StreamInferResponse => ({
            error_message: grpcStatusFor(error).details,
            infer_response: { id },
          }),
        );
      } finally {
        context.tracker.end();
      }
      flush();
    };
    /**
     * An answer that could not be made or written (a throw from grpc-js, or from an error's own getters): the answers
     * can no longer be written in order, so the stream ends INTERNAL and its other requests are cancelled. Left to
     * the promise, the throw would be an unhandled rejection (the process ends) and the stream would hang.
     */
    const fail = (): void => {
      if (finished) return;
      controller.abort(new ProtocolError('internal', 'The stream failed'));
      finish();
      slots.length = 0;
      head = 0;
      // A generation waiting for the client to read would otherwise stay counted in flight, and drain would wait.
      for (const wake of drainWaiters.splice(0)) wake();
      const details = 'Internal error: an answer of this stream could not be written';
      // grpc-js's documented way to end a server stream with a status (its 'error' listener sends it).
      call.emit('error', { code: GRPC_CODE.internal, details, message: details });
    };

    const answer = async (request: GrpcInferRequest | RefusedRequest): Promise<GrpcInferResponse> => {
      if (request instanceof RefusedRequest) throw request.error;
      if (streams.draining) throw new ProtocolError('unavailable', 'Server is shutting down');
      return context.infer(request, {
        signal: controller.signal,
        deadline: remainingMs(call.getDeadline()),
        metadata: call.metadata,
      });
    };
  };
}

/**
 * How close to its deadline a cancelled call counts as past it. A client's deadline starts when it sends the call,
 * the server's (from grpc-timeout) when it reads the headers, so the client's own timer cancels the call first by the
 * request's transit time; and a timer may fire a millisecond before Date.now() reaches its deadline. Either way the
 * call ended for its deadline: counted 504, not 499. A client that really cancels this close to its deadline is
 * counted as late.
 */
const DEADLINE_SLACK_MS = 50;

/** The reason a cancelled call's work is aborted with: its deadline, or the client's cancel. */
export function whyCancelled(deadline: Date | number): ProtocolError {
  const left = remainingMs(deadline);
  return left !== undefined && left <= DEADLINE_SLACK_MS
    ? new ProtocolError('deadline-exceeded', 'Deadline exceeded')
    : new ProtocolError('cancelled', 'Client cancelled the call');
}

/** Milliseconds a call's deadline leaves (capped to a timer's range), or undefined without one. */
export function remainingMs(deadline: Date | number): number | undefined {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return undefined;
  return Math.min(MAX_TIMER_MS, Math.max(0, at - Date.now()));
}
