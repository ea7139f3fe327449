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
 * `cost(rows)` ms, after the cost curve is learned; the first calls of client `i` at `i % 16` ms. With
 * `oneDevice`, each batch's compute waits for the one before it (a device that runs one batch at a
 * time, behind however many batch slots). The batches dispatched in that second, when its last 500 ms
 * began and ended, and the rows answered in them.
 */
export async function closedLoop(options: {
  clients: number;
  inFlight: number;
  concurrency: number;
  maxBatchSize: number;
  maxDelay: number | 'auto';
  cost: (rows: number) => number;
  roundTrip: number | ((client: number, lap: number) => number);
  oneDevice?: boolean;
  batchKey?: (id: number) => string;
}): Promise<{ batches: Batch[]; from: number; to: number; served: number }> {
  const roundTrip = options.roundTrip;
  const backAfter = typeof roundTrip === 'number' ? () => roundTrip : roundTrip;
  const arrivals = new Map<number, number>();
  const batches: Batch[] = [];
  let device: Promise<void> = Promise.resolve();
  const handler = async (batch: number[]): Promise<number[]> => {
    const record: Batch = {
      rows: batch.length,
      dispatched: performance.now(),
      lastArrival: Math.max(...batch.map((id) => arrivals.get(id) ?? Number.NEGATIVE_INFINITY)),
      ended: Number.NaN,
    };
    batches.push(record);
    let release = (): void => {};
    if (options.oneDevice === true) {
      const previous = device;
      device = new Promise<void>((resolve) => {
        release = resolve;
      });
      await previous;
    }
    await new Promise((resolve) => setTimeout(resolve, options.cost(batch.length)));
    release();
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
