/** Drives `fn` from `callers` concurrent loops until `total` calls have completed; returns items/s. */
export async function closedLoop(fn, { callers, total }) {
  const perCaller = Math.ceil(total / callers);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async (_, c) => {
      for (let i = 0; i < perCaller; i++) await fn(c * perCaller + i);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  return (perCaller * callers) / seconds;
}

export function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export const fmt = (n, digits = 2) => Number(n).toFixed(digits);
