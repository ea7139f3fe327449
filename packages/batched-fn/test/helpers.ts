import { afterEach, beforeEach, vi } from 'vitest';

/** A handler that records every batch it receives and doubles each input. */
export function recordingHandler<T extends number>() {
  const batches: T[][] = [];
  const handler = (batch: T[]): number[] => {
    batches.push([...batch]);
    return batch.map((x) => x * 2);
  };
  return { batches, handler };
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A handler whose batches finish only when the test says so. */
export function gatedHandler<T>() {
  const batches: T[][] = [];
  const gates: Deferred<void>[] = [];
  const handler = async (batch: T[]): Promise<T[]> => {
    batches.push([...batch]);
    const gate = deferred<void>();
    gates.push(gate);
    await gate.promise;
    return batch;
  };
  /** Finishes the oldest running batch. */
  const release = (): void => {
    const gate = gates.shift();
    if (gate === undefined) throw new Error('no batch is running');
    gate.resolve();
  };
  return { batches, handler, release, running: () => gates.length };
}

/** Records how each promise settled, so tests can assert outcomes without awaiting in order. */
export function track<T>(promise: Promise<T>) {
  const state: { status: 'pending' | 'fulfilled' | 'rejected'; value?: T; error?: unknown; settles: number } = {
    status: 'pending',
    settles: 0,
  };
  promise.then(
    (value) => {
      state.status = 'fulfilled';
      state.value = value;
      state.settles++;
    },
    (error: unknown) => {
      state.status = 'rejected';
      state.error = error;
      state.settles++;
    },
  );
  return state;
}

/** Lets queued microtasks (the dispatcher's pump, promise reactions) run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

export async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
}

/** Fake timers (setTimeout, setImmediate, performance.now) for every test in the file, so scheduling is exact. */
export function useFakeClock(): void {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}
