// Continuous against static batching, library only. A decode step is mostly a fixed cost, simulated
// as 2 ms + 0.02 ms·N (busy-wait); 320 sequences with lengths uniform in 1..48, all offered at once,
// maxBatchSize 16. The ideal ratio for the same lengths, with zero overhead, is computed by a plain
// simulation and printed beside the measured one, so the loop's own overhead shows.
import { Worker } from 'node:worker_threads';
import { batchedStream } from 'batched-fn';

const SEQUENCES = 320;
const MAX = 16;
/** Rounds of the identity-step overhead run: the first is cold (thread start, compilation), the rest give the median. */
const OVERHEAD_ROUNDS = 4;
const cost = (n) => 2 + 0.02 * n;
let seed = 20261125;
const rand = () => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed / 4294967296;
};
const lengths = Array.from({ length: SEQUENCES }, () => 1 + Math.floor(rand() * 48));
const tokens = lengths.reduce((a, b) => a + b, 0);

function spin(ms) {
  const end = performance.now() + ms;
  while (performance.now() < end);
}

/** Total model time with zero overhead: static runs groups of 16 to their longest; continuous refills every step. */
function ideal(mode) {
  let time = 0;
  if (mode === 'static') {
    for (let i = 0; i < lengths.length; i += MAX) {
      const group = lengths.slice(i, i + MAX);
      for (let step = 0; step < Math.max(...group); step++) time += cost(group.filter((l) => l > step).length);
    }
    return time;
  }
  const waiting = [...lengths];
  const active = [];
  while (waiting.length > 0 || active.length > 0) {
    while (active.length < MAX && waiting.length > 0) active.push(waiting.shift());
    time += cost(active.length);
    for (let i = active.length - 1; i >= 0; i--) if (--active[i] === 0) active.splice(i, 1);
  }
  return time;
}

async function measure(mode) {
  const generate = batchedStream({
    step: (states) => {
      spin(cost(states.length));
      return states.map((s) => {
        s.left--;
        return { value: 1, done: s.left === 0 };
      });
    },
    start: (inputs) => inputs.map((length) => ({ left: length })),
    maxBatchSize: MAX,
    maxDelay: 0,
    mode,
  });
  const started = performance.now();
  await Promise.all(
    lengths.map(async (length) => {
      for await (const _ of generate(length));
    }),
  );
  const ms = performance.now() - started;
  await generate.close();
  return { ms, tokensPerSecond: tokens / (ms / 1000), steps: generate.stats.steps };
}

/**
 * The loop's own cost per step with an identity step: 64 streams of 2,000 values, maxBatchSize 16.
 * The first round includes starting the thread and V8 compiling the loop; it is reported apart
 * ("cold"), and the steady figure is the median of the rounds after it, on the same stream.
 */
async function overhead(worker) {
  const identity = worker
    ? batchedStream({ worker: new URL('./identity.stream.js', import.meta.url), maxBatchSize: MAX, maxDelay: 0 })
    : batchedStream({
        step: (states) => states.map((s) => (--s.left === 0 ? { value: 1, done: true } : { value: 1 })),
        start: (inputs) => inputs.map((l) => ({ left: l })),
        maxBatchSize: MAX,
        maxDelay: 0,
      });
  const rounds = [];
  for (let round = 0; round < OVERHEAD_ROUNDS; round++) {
    const stepsBefore = identity.stats.steps;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for await (const _ of identity(2000));
      }),
    );
    const us = (performance.now() - started) * 1000;
    rounds.push({ perStepUs: us / (identity.stats.steps - stepsBefore), perSequenceStepUs: us / (64 * 2000) });
  }
  await identity.close();
  const [cold, ...warm] = rounds;
  const steady = warm.sort((a, b) => a.perStepUs - b.perStepUs)[Math.floor(warm.length / 2)];
  return { cold, steady, warm: warm.map((r) => r.perStepUs) };
}

/**
 * The floor a worker-mode step cannot go below: a bare round trip to a thread (a 16-id message
 * there, 16 values back), measured now, so the step's own overhead shows beside what this machine
 * charges for waking a thread. On a loaded 2-core machine the wake-ups dominate.
 */
async function bareRoundTrip() {
  const echo = new Worker(
    `const { parentPort } = require('node:worker_threads');
     parentPort.on('message', (m) => parentPort.postMessage({ id: m.id, values: m.ids.map(() => 1) }));`,
    { eval: true },
  );
  const ids = Array.from({ length: MAX }, (_, i) => i);
  const trip = (id) =>
    new Promise((resolve) => {
      echo.once('message', resolve);
      echo.postMessage({ id, ids });
    });
  for (let i = 0; i < 1000; i++) await trip(i);
  const trips = 5000;
  const started = performance.now();
  for (let i = 0; i < trips; i++) await trip(i);
  const us = ((performance.now() - started) * 1000) / trips;
  await echo.terminate();
  return us;
}

const staticRun = await measure('static');
const continuousRun = await measure('continuous');
const idealRatio = ideal('static') / ideal('continuous');
console.log(
  `\nbatchedStream: ${SEQUENCES} sequences, lengths 1..48 (${tokens} tokens), step 2 ms + 0.02 ms·N, maxBatchSize ${MAX}`,
);
console.table([
  {
    mode: 'static',
    'tokens/s': Math.round(staticRun.tokensPerSecond),
    steps: staticRun.steps,
    ms: Math.round(staticRun.ms),
  },
  {
    mode: 'continuous',
    'tokens/s': Math.round(continuousRun.tokensPerSecond),
    steps: continuousRun.steps,
    ms: Math.round(continuousRun.ms),
  },
]);
console.log(
  `continuous / static = ${(continuousRun.tokensPerSecond / staticRun.tokensPerSecond).toFixed(2)} (target >= 1.6; ideal for these lengths ${idealRatio.toFixed(2)})`,
);
for (const worker of [false, true]) {
  const o = await overhead(worker);
  console.log(
    `loop overhead, identity step, ${worker ? 'worker mode' : 'inline'}: ${o.steady.perStepUs.toFixed(1)} µs per step, ${o.steady.perSequenceStepUs.toFixed(2)} µs per sequence-step (median of ${o.warm.length} rounds: ${o.warm.map((us) => us.toFixed(1)).join(' / ')}; the first, cold, ${o.cold.perStepUs.toFixed(1)} µs)${worker ? '; target <= 30 µs' : ''}`,
  );
}
console.log(
  `bare thread round trip (postMessage both ways, nothing else), measured now: ${(await bareRoundTrip()).toFixed(1)} µs (a worker-mode step overlaps the two threads, so it can cost less)`,
);
