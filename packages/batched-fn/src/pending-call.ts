import type { Batcher } from './batcher.js';

export const QUEUED = 0;
export const RUNNING = 1;
export const SETTLED = 2;
export type CallState = typeof QUEUED | typeof RUNNING | typeof SETTLED;

/**
 * One caller's record. It doubles as the AbortSignal listener (`handleEvent`)
 * and as the timeout timer's argument, so a call allocates no closures beyond
 * its promise. Removal from the queue is a state change (a tombstone) that the
 * dispatcher skips, which keeps abort O(1).
 */
export class PendingCall<I, O> {
  readonly owner: Batcher<I, O>;
  readonly input: I;
  readonly rows: number;
  readonly arrival: number;
  state: CallState = QUEUED;
  resolve!: (output: O) => void;
  reject!: (error: unknown) => void;
  signal: AbortSignal | undefined = undefined;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  timeout = 0;

  constructor(owner: Batcher<I, O>, input: I, rows: number, arrival: number) {
    this.owner = owner;
    this.input = input;
    this.rows = rows;
    this.arrival = arrival;
  }

  handleEvent(): void {
    this.owner.abort(this);
  }
}

export function onCallTimeout<I, O>(call: PendingCall<I, O>): void {
  call.timer = undefined;
  call.owner.expire(call);
}
