import { batchedFn } from 'batched-fn';
import { advance } from './helpers.js';

// A closed loop on the fake clock, for the 'auto' tests: clients that send again a fixed time after
// each answer, on a model whose batch of n rows takes `cost(n)` ms.

export interface Batch {
  rows: number;
  dispatched: number;
  lastArrival: number;
  ended: number;
}

/**
 * `clients` clients, each keeping `inFlight` calls in flight, each call followed `roundTrip` ms after
 * its answer by the next (or `roundTrip(client, lap)` ms, the lap-th time), for 1 s on a model of
 * `cost(rows)` ms, after the cost curve is learned; the first calls of client `i` at `i % 16` ms. The
 * batch slots (`concurrency`) run on `device`:
 * - 'own' (the default): each slot has its own, and batches running at once do not slow each other;
 * - 'turns': one device runs one batch at a time, each waiting for the one before it (a GPU queue);
 * - 'slices': one device shares itself between the batches running, each progressing at 1/k of its
 *   speed while k run (CPU sessions whose threads fill the same cores).
 * The batches dispatched in that second, when its last 500 ms began and ended, and the rows answered
 * in them.
 */
export async function closedLoop(options: {
  clients: number;
  inFlight: number;
  concurrency: number;
  maxBatchSize: number;
  maxDelay: number | 'auto';
  cost: (rows: number) => number;
  roundTrip: number | ((client: number, lap: number) => number);
  device?: 'own' | 'turns' | 'slices';
  batchKey?: (id: number) => string;
}): Promise<{ batches: Batch[]; from: number; to: number; served: number }> {
  const roundTrip = options.roundTrip;
  const backAfter = typeof roundTrip === 'number' ? () => roundTrip : roundTrip;
  const arrivals = new Map<number, number>();
  const batches: Batch[] = [];
  let queue: Promise<void> = Promise.resolve();
  const slices = new SharedDevice();
  const handler = async (batch: number[]): Promise<number[]> => {
    const record: Batch = {
      rows: batch.length,
      dispatched: performance.now(),
      lastArrival: Math.max(...batch.map((id) => arrivals.get(id) ?? Number.NEGATIVE_INFINITY)),
      ended: Number.NaN,
    };
    batches.push(record);
    const work = options.cost(batch.length);
    if (options.device === 'slices') await slices.run(work);
    else if (options.device === 'turns') {
      const previous = queue;
      let release = (): void => {};
      queue = new Promise<void>((resolve) => {
        release = resolve;
      });
      await previous;
      await new Promise((resolve) => setTimeout(resolve, work));
      release();
    } else await new Promise((resolve) => setTimeout(resolve, work));
    record.ended = performance.now();
    return batch;
  };
  const predict = batchedFn({
    handler,
    maxBatchSize: options.maxBatchSize,
    maxDelay: options.maxDelay,
    concurrency: options.concurrency,
    batchKey: options.batchKey,
  });
  // Batches of 1..10 rows, spaced out: the cost curve is learned.
  for (let size = 1; size <= 10; size++) {
    const calls = Array.from({ length: size }, (_, i) => predict(-1 - i));
    await advance(Math.max(20, 2 * options.cost(size)));
    await Promise.all(calls);
  }
  const start = performance.now();
  let running = true;
  let nextId = 0;
  const answered: number[] = [];
  const loops = Array.from({ length: options.clients * options.inFlight }, async (_, slot) => {
    const client = Math.floor(slot / options.inFlight);
    await new Promise((resolve) => setTimeout(resolve, client % 16));
    for (let lap = 0; running; lap++) {
      const id = nextId++;
      arrivals.set(id, performance.now());
      await predict(id);
      answered.push(performance.now());
      await new Promise((resolve) => setTimeout(resolve, backAfter(client, lap)));
    }
  });
  await advance(1000);
  running = false;
  await advance(500);
  await Promise.all(loops);
  const from = start + 500;
  const to = start + 1000;
  return {
    batches: batches.filter((b) => b.dispatched >= start),
    from,
    to,
    served: answered.filter((t) => t >= from && t < to).length,
  };
}

/** One device that runs every batch given to it at once, each at 1/k of its speed while k run (processor sharing). */
class SharedDevice {
  readonly #jobs = new Set<{ left: number; done: () => void }>();
  #since = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Resolves once `work` ms of the device's time have gone to this job. */
  run(work: number): Promise<void> {
    return new Promise((done) => {
      this.#progress();
      this.#jobs.add({ left: work, done });
      this.#schedule();
    });
  }

  #progress(): void {
    const now = performance.now();
    const share = (now - this.#since) / Math.max(1, this.#jobs.size);
    for (const job of this.#jobs) job.left -= share;
    this.#since = now;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#jobs.size === 0) return;
    let least = Number.POSITIVE_INFINITY;
    for (const job of this.#jobs) least = Math.min(least, job.left);
    // Fake timers count whole ms: the next finish is rounded up, and whoever has finished by then ends.
    this.#timer = setTimeout(
      () => {
        this.#progress();
        for (const job of [...this.#jobs]) {
          if (job.left > 1e-6) continue;
          this.#jobs.delete(job);
          job.done();
        }
        this.#schedule();
      },
      Math.max(0, Math.ceil(least * this.#jobs.size - 1e-9)),
    );
  }
}
