// The simulated model for the scheduling benchmark: a batch of N rows busy-waits 2 ms + 0.05 ms·N.
export function handler(batch) {
  const end = performance.now() + 2 + 0.05 * batch.length;
  while (performance.now() < end);
  return batch;
}
