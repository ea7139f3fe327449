import { InvalidPadError } from '../errors.js';
import type { BatchBuilder, Resolve } from '../queue.js';
import type { DispatchReason } from '../stats.js';
import { describeValue } from '../validate.js';
import type { CallPlace } from './call-handle.js';
import type { QueuedHandle } from './lane.js';

/** A cancellable call in a running batch: cancelling it empties its slot; the batch runs on for the others. */
class InBatch<I, O> implements CallPlace<Resolve<O>> {
  readonly #batch: RunningBatch<I, O>;
  readonly #index: number;

  constructor(batch: RunningBatch<I, O>, index: number) {
    this.#batch = batch;
    this.#index = index;
  }

  take(): Resolve<O> | undefined {
    return this.#batch.release(this.#index);
  }
}

/**
 * A dispatched batch: its callers (filled in by the queue), what was sent to
 * the executor, its timer, and the worker that runs it. A caller's slot is
 * emptied when it is released early (abort, timeout) or the batch is
 * destroyed; whoever settles the batch skips empty slots.
 */
export class RunningBatch<I, O> implements BatchBuilder<I, O, QueuedHandle<O>> {
  #inputs: I[] = [];
  #resolvers: (Resolve<O> | undefined)[] = [];
  /** Why it left the queue; 'join' for sequences joining a running stream group at a step boundary. */
  readonly reason: DispatchReason | 'join';
  readonly started: number;
  #handles: (QueuedHandle<O> | undefined)[] | undefined = undefined;
  #rows = 0;
  #maxWait = 0;
  #totalWait = 0;
  #released = 0;
  /** Inputs handed to the handler, filler included, when `pad` grew the batch. */
  #padded = 0;
  /** What the executor was given (the padded inputs, with `pad`): identifies the run to abandon. */
  #sent: I[] | undefined = undefined;
  #worker: number | undefined = undefined;
  /** With `affinity`: the worker it must run on. */
  #pinned: number | undefined = undefined;
  /** Called once when it ends, however it ends (its sequences are released then). */
  #onEnded: (() => void) | undefined = undefined;
  #timer: ReturnType<typeof setTimeout> | undefined = undefined;

  constructor(reason: DispatchReason | 'join', started: number) {
    this.reason = reason;
    this.started = started;
  }

  /** Its callers' inputs, in order (the queue appends to it, or hands over a whole chunk). */
  get inputs(): I[] {
    return this.#inputs;
  }

  /** What settles each caller, by index; an empty slot is a caller already released. */
  get resolvers(): (Resolve<O> | undefined)[] {
    return this.#resolvers;
  }

  adopt(inputs: I[], resolvers: Resolve<O>[]): void {
    this.#inputs = inputs;
    this.#resolvers = resolvers;
  }

  get rows(): number {
    return this.#rows;
  }

  get maxWait(): number {
    return this.#maxWait;
  }

  get totalWait(): number {
    return this.#totalWait;
  }

  /** Callers still waiting (not released by abort, timeout, shedding or destroy). */
  get live(): number {
    return this.resolvers.length - this.#released;
  }

  /** Handles of cancellable or traced callers, by index; undefined when there are none. */
  get handles(): readonly (QueuedHandle<O> | undefined)[] | undefined {
    return this.#handles;
  }

  get padded(): number {
    return this.#padded;
  }

  get sent(): I[] | undefined {
    return this.#sent;
  }

  /** The worker thread running it (worker mode). */
  get worker(): number | undefined {
    return this.#worker;
  }

  addHandle(handle: QueuedHandle<O>, index: number): void {
    this.#handles ??= [];
    this.#handles[index] = handle;
    handle.moveTo(new InBatch(this, index));
  }

  took(rows: number, maxWait: number, totalWait: number): void {
    this.#rows = rows;
    if (maxWait > this.#maxWait) this.#maxWait = maxWait;
    this.#totalWait += totalWait;
  }

  /** The worker it must run on (`affinity`); undefined: any free one. */
  get pinned(): number | undefined {
    return this.#pinned;
  }

  pin(worker: number): void {
    this.#pinned = worker;
  }

  onEnded(listener: () => void): void {
    this.#onEnded = listener;
  }

  /** The executor placed it on this worker. */
  assigned(worker: number): void {
    this.#worker = worker;
  }

  /** Empties caller `index`'s slot; its resolver, or undefined if it had already left. */
  release(index: number): Resolve<O> | undefined {
    const resolve = this.resolvers[index];
    if (resolve === undefined) return undefined;
    this.resolvers[index] = undefined;
    this.#released++;
    return resolve;
  }

  /** Stops listening for caller `index`'s signal and timeout; it is being settled. */
  disposeHandle(index: number): void {
    this.#handles?.[index]?.dispose();
  }

  /**
   * Callers whose deadline falls before `finish` are answered now (through `refuse`) instead of
   * spending model time on answers nobody will read. The others keep their order.
   */
  shed(finish: number, refuse: (resolve: Resolve<O>, handle: QueuedHandle<O>) => void): void {
    const handles = this.#handles;
    if (handles === undefined || !handles.some((h) => h !== undefined && h.deadline < finish)) return;
    let kept = 0;
    for (let i = 0; i < this.inputs.length; i++) {
      const handle = handles[i];
      if (handle !== undefined && handle.deadline < finish) {
        handles[i] = undefined;
        refuse(this.resolvers[i] as Resolve<O>, handle);
        continue;
      }
      this.inputs[kept] = this.inputs[i] as I;
      this.resolvers[kept] = this.resolvers[i];
      handles[kept] = handle;
      if (handle !== undefined && kept !== i) handle.moveTo(new InBatch(this, kept));
      kept++;
    }
    this.inputs.length = kept;
    this.resolvers.length = kept;
    handles.length = kept;
  }

  /** Runs `pad` up to `target` rows (if the batch has fewer): the inputs to run, or why the batch fails. */
  pad(pad: (batch: I[], targetRows: number) => I[], target: number): { inputs: I[] } | { error: unknown } {
    if (target <= this.#rows) return { inputs: this.inputs };
    let padded: unknown;
    try {
      padded = pad(this.inputs.slice(), target);
    } catch (error) {
      return { error };
    }
    const problem = padProblem(padded, this.inputs);
    if (problem !== undefined) return { error: new InvalidPadError(problem) };
    this.#padded = (padded as I[]).length;
    return { inputs: padded as I[] };
  }

  /** The inputs handed to the executor, and the batch timeout (if any) that guards the run. */
  send(inputs: I[], batchTimeout: number | undefined, onTimeout: (batch: RunningBatch<I, O>) => void): void {
    this.#sent = inputs;
    if (batchTimeout !== undefined) this.#timer = setTimeout(onTimeout, batchTimeout, this);
  }

  /** The run is over (settled, timed out, destroyed): its timer goes. */
  ended(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const listener = this.#onEnded;
    this.#onEnded = undefined;
    listener?.();
  }

  /** destroy(): every caller still waiting leaves, handed to `each`. */
  releaseAll(each: (resolve: Resolve<O>) => void): void {
    this.ended();
    for (let i = 0; i < this.resolvers.length; i++) {
      const resolve = this.release(i);
      if (resolve === undefined) continue;
      this.disposeHandle(i);
      each(resolve);
    }
  }
}

export function isOutputArray(value: unknown): value is ArrayLike<unknown> {
  return Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView));
}

/** Why `pad`'s result cannot be run, or undefined when it is the batch followed by filler. */
export function padProblem<I>(padded: unknown, batch: readonly I[]): string | undefined {
  if (!Array.isArray(padded)) return `got ${describeValue(padded)}`;
  if (padded.length < batch.length) return `got ${padded.length} inputs for a batch of ${batch.length}`;
  for (let i = 0; i < batch.length; i++) if (padded[i] !== batch[i]) return `input ${i} is not the batch's input ${i}`;
  return undefined;
}
