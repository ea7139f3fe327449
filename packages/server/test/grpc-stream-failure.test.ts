import { EventEmitter } from 'node:events';
import { Metadata, status } from '@grpc/grpc-js';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { modelStreamInfer, StreamRegistry } from '../dist/grpc/stream.js';
import { InFlight } from '../dist/protocol/in-flight.js';
import { until } from './triton-helpers.js';

// ModelStreamInfer when an answer cannot be made or written: grpc-js catches its own
// serialization errors, so no real stream reaches this today; a stand-in call whose write throws
// (as an interceptor's might), and an error whose getters throw, drive it. The stream must end
// INTERNAL, cancel its other requests and settle its tracking, with no unhandled rejection.

/** The parts of a ServerDuplexStream that modelStreamInfer uses; `fails` names how it breaks. */
class StandInCall extends EventEmitter {
  readonly metadata = new Metadata();
  readonly written: unknown[] = [];
  readonly statuses: { code: number; details: string }[] = [];
  #paused = false;
  constructor(readonly writeThrows: boolean) {
    super();
    this.on('error', (error: { code: number; details: string }) =>
      this.statuses.push({ code: error.code, details: error.details }),
    );
  }
  write(message: unknown): boolean {
    if (this.writeThrows) throw new Error('write failed (simulated)');
    this.written.push(message);
    return true;
  }
  end(): void {}
  pause(): void {
    this.#paused = true;
  }
  resume(): void {
    this.#paused = false;
  }
  isPaused(): boolean {
    return this.#paused;
  }
  getDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }
}

class CountingTracker extends InFlight {
  count = 0;
  override begin(): void {
    this.count++;
    super.begin();
  }
  override end(): void {
    this.count--;
    super.end();
  }
}

const unhandled: unknown[] = [];
const record = (reason: unknown): void => {
  unhandled.push(reason);
};
beforeEach(() => {
  unhandled.length = 0;
  process.on('unhandledRejection', record);
});
afterEach(() => {
  process.off('unhandledRejection', record);
});

/** A stream whose first request settles with `first`, and whose second waits until the stream cancels it. */
function standInStream(writeThrows: boolean, first: () => Promise<object>) {
  const tracker = new CountingTracker();
  const aborted: unknown[] = [];
  const infer = (request: { id?: string }, options: { signal: AbortSignal }): Promise<object> => {
    if (request.id === 'first') return first();
    return new Promise((_, reject) =>
      options.signal.addEventListener('abort', () => {
        aborted.push(options.signal.reason);
        reject(options.signal.reason);
      }),
    );
  };
  const call = new StandInCall(writeThrows);
  const context = { infer, generators: new Set<string>(), isModel: () => true, tracker, maxInFlight: 8 };
  modelStreamInfer(context as never, new StreamRegistry())(call as never);
  call.emit('data', { model_name: 'm', id: 'first' });
  call.emit('data', { model_name: 'm', id: 'second' });
  return { call, tracker, aborted };
}

const internal = { code: status.INTERNAL, details: 'Internal error: an answer of this stream could not be written' };

test('an answer whose write throws ends the stream INTERNAL, cancels its other requests, and leaves nothing unhandled', async () => {
  const { call, tracker, aborted } = standInStream(true, async () => ({ id: 'first', outputs: [] }));
  expect(tracker.count).toBe(2);
  await until(() => call.statuses.length > 0 && tracker.count === 0);
  await new Promise((resolve) => setTimeout(resolve, 20));
  expect(call.statuses).toEqual([internal]);
  expect(aborted).toEqual([expect.objectContaining({ protocolStatus: 'internal', message: 'The stream failed' })]);
  expect(tracker.count).toBe(0);
  expect(unhandled).toEqual([]);
});

test('an error whose message cannot be read (its getter throws) is answered as an internal error; the stream goes on', async () => {
  const hostile = {
    get message(): string {
      throw new Error('no message (simulated)');
    },
  };
  const { call, tracker, aborted } = standInStream(false, () => Promise.reject(hostile));
  // Before, reading the message threw inside the answer's catch and the stream hung; then it ended INTERNAL. The status
  // decision now reads what can be read, so each request gets its own error answer and the stream is not torn down.
  await until(() => call.written.length === 1);
  await new Promise((resolve) => setTimeout(resolve, 20));
  expect(call.statuses).toEqual([]);
  expect(call.written).toEqual([expect.objectContaining({ error_message: 'Model failed: [object Object]' })]);
  expect(tracker.count).toBe(1); // the second request is still being served: the stream is alive
  call.emit('cancelled');
  await until(() => tracker.count === 0);
  expect(aborted).toHaveLength(1);
  expect(unhandled).toEqual([]);
});
