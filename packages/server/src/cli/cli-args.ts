import { MAX_TIMER_MS } from 'batched-fn';

/** Turns `--max-batch-size 64` style flags into validated numbers with messages a user can act on. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function intFlag(flags: Record<string, unknown>, name: string, min: number): number | undefined {
  const raw = flags[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min)
    throw new UsageError(`--${name} must be an integer from ${min} and up, got ${JSON.stringify(raw)}`);
  return value;
}

/** Milliseconds one Node timer can hold (setTimeout fires a longer delay after 1 ms). */
export function durationFlag(flags: Record<string, unknown>, name: string, above = false): number | undefined {
  const raw = flags[name];
  if (raw === undefined) return undefined;
  const value = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : Number.NaN;
  if (!((above ? value > 0 : value >= 0) && value <= MAX_TIMER_MS)) {
    throw new UsageError(
      `--${name} must be a number of milliseconds ${above ? 'above 0' : 'from 0'} to ${MAX_TIMER_MS}, got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

/** `--max-delay MS|auto`. */
export function delayFlag(flags: Record<string, unknown>, name: string): number | 'auto' | undefined {
  return flags[name] === 'auto' ? 'auto' : durationFlag(flags, name);
}

export function stringFlag(flags: Record<string, unknown>, name: string): string | undefined {
  const raw = flags[name];
  return typeof raw === 'string' ? raw : undefined;
}

export function listFlag(flags: Record<string, unknown>, name: string): number[] | undefined {
  const raw = flags[name];
  if (raw === undefined) return undefined;
  const values = String(raw).split(',').map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 1)) {
    throw new UsageError(
      `--${name} must be a comma-separated list of integers from 1 and up, got ${JSON.stringify(raw)}`,
    );
  }
  return values;
}
