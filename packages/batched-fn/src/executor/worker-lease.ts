import { deserializeError } from '../error-codec.js';
import type { PackedStep } from '../stream/step-output.js';
import { transferListFor } from '../transfer.js';
import type { WorkerSlot } from './worker-slot.js';

/**
 * A stream group's hold on one pool slot, for the group's whole life: the
 * thread keeps the group's sequence states by id, so every request of the
 * group goes to the worker the lease started on. Once that worker is gone
 * (it crashed, or was abandoned after `batchTimeout`), every request rejects
 * with why; the slot itself restarts or is replaced as any pool slot is.
 */
export class WorkerLease {
  readonly #slot: WorkerSlot;
  readonly #generation: number;
  #released = false;

  constructor(slot: WorkerSlot) {
    this.#slot = slot;
    this.#generation = slot.generation;
    slot.lease();
  }

  /** Whether the worker this lease started on still takes requests. */
  get alive(): boolean {
    return this.#slot.alive(this.#generation);
  }

  /** The prefill of the sequences joining now: their states are kept in the thread under `ids`. */
  async start(ids: number[], inputs: unknown[]): Promise<void> {
    await this.#request({ type: 'start', ids, inputs }, transferListFor(inputs));
  }

  /**
   * One step of `ids`, freeing the states of `drop` first: its outputs packed (no object per
   * sequence crossed), with the errors that end single streams decoded. Null when the step
   * returned the wrong count.
   */
  async step(ids: number[], drop: number[]): Promise<PackedStep | null> {
    const answer = await this.#request({ type: 'step', ids, drop }, undefined);
    // A module's own message can imitate an answer of the other kind: a step is answered packed.
    if (answer.type !== 'stepped') throw new TypeError('batched-fn: the worker answered a step with a batch result');
    const { values, flags, errors } = answer;
    if (values === null || flags === null) return null;
    const failed = errors.length === 0 ? undefined : new Map<number, unknown>();
    for (const [i, error] of errors) failed?.set(i, deserializeError(error));
    return { values, flags, failed };
  }

  /** Frees the states of `ids` (a group that ended or failed, cancelled sequences). */
  async drop(ids: number[]): Promise<void> {
    await this.#request({ type: 'drop', ids }, undefined);
  }

  /** A start or step overran `batchTimeout`: the worker is let go (terminated, or retired when it may not be). */
  abandon(reason: unknown): void {
    if (this.alive) this.#slot.abandon(reason);
  }

  /** The group ended: the slot may take another group. Messages are handled in order, so a drop sent before still lands first. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#slot.unlease();
  }

  #request(
    message: Parameters<WorkerSlot['request']>[0],
    transfer: ArrayBuffer[] | undefined,
  ): ReturnType<WorkerSlot['request']> {
    if (!this.alive) return Promise.reject(this.#slot.goneReason());
    try {
      return this.#slot.request(message, transfer, undefined);
    } catch (error) {
      return Promise.reject(error);
    }
  }
}
