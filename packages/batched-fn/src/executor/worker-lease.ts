import { transferListFor } from '../transfer.js';
import type { Stepped } from './wire.js';
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

  /**
   * The prefill of the sequences joining now: their states are kept in the thread under `ids`.
   * Throws, having sent nothing, when an input cannot be cloned (a function, a socket), so the
   * caller can tell which ones from a start that failed in the thread.
   */
  start(ids: number[], inputs: unknown[]): Promise<unknown> {
    if (!this.alive) return Promise.reject(this.#slot.goneReason());
    return this.#slot.request({ type: 'start', ids, inputs }, transferListFor(inputs), undefined);
  }

  /**
   * Opens the group's run: the thread steps every sequence started under this lease, through step
   * `until`, and further as `grant` allows (see wire.ts for `joins`). `ended` settles when `stop`
   * has ended the run, and rejects when a step fails as a whole or the worker is gone.
   */
  run(until: number, joins: boolean, onStep: (step: Stepped) => void): { id: number; ended: Promise<unknown> } {
    if (!this.alive) return { id: -1, ended: Promise.reject(this.#slot.goneReason()) };
    try {
      const { id, answered } = this.#slot.send({ type: 'steps', until, joins }, undefined, undefined, onStep);
      return { id, ended: answered };
    } catch (error) {
      return { id: -1, ended: Promise.reject(error) };
    }
  }

  /** Run `run` may step through step `until`; `seen` steps have been handed out here; `joins` as `run`'s. */
  grant(run: number, until: number, seen: number, joins: boolean): void {
    if (this.alive) this.#slot.notify({ type: 'credit', run, until, seen, joins });
  }

  /** Ends run `run`: the thread frees the states it still steps, and answers the run. */
  stop(run: number): void {
    if (this.alive) this.#slot.notify({ type: 'stop', run });
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
