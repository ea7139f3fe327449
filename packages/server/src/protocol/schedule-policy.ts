import { MAX_TIMER_MS } from 'batched-fn';
import type { PriorityLevels } from '../model/served-model.js';
import { invalidArgument } from './errors.js';

/**
 * Triton's schedule-policy extension: a request's `priority` and `timeout` parameters, read the
 * way the protocol defines them, and mapped onto the batcher's call options in this one file.
 *
 * `priority` is a LEVEL: 0 (or absent) means the model's default level, 1 is the highest level,
 * and larger numbers are lower levels. The batcher's own `priority` is the other way round (a
 * larger number goes first), so a level becomes `top - level`:
 *
 * - A model with `priorityLevels: N` (config.json) has levels 1..N; `top` is N, so level N runs
 *   at batcher priority 0 and level 1 at N - 1. Its default level is `defaultPriorityLevel`
 *   (default: N, the lowest). A level above N is a 400.
 * - A model that sets no levels has them unbounded (1 to 2^53 - 1), and requests without a
 *   priority run at the lowest level of all, behind every request that names one: `top` is 2^53,
 *   so the default lands on batcher priority 0 (where untouched servers have always run) and
 *   every explicit level above it. Triton, with no levels set, ignores `priority` altogether; a
 *   client that sends one here means it, so it is honoured instead.
 *
 * `timeout` is in MICROSECONDS, as the protocol says (every JS API of ours takes ms): 0 or absent
 * leaves the model's own timeout (and `--timeout`, and a gRPC deadline) in force.
 */

/** The levels of a model that sets none: 1 (highest) to 2^53 - 1. */
export const UNBOUNDED_LEVELS = 2 ** 53;

/** The longest `timeout` in µs: a batcher deadline is one timer, at most MAX_TIMER_MS ms. */
export const MAX_TIMEOUT_US = MAX_TIMER_MS * 1000;

const shown = (value: unknown): string =>
  typeof value === 'bigint' ? String(value) : (JSON.stringify(value)?.slice(0, 40) ?? String(value));

/** `parameters.timeout` (µs) → the request's own deadline in ms, or undefined for "the model's default". */
export function timeoutParameter(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_TIMEOUT_US) {
    throw invalidArgument(
      `parameters.timeout must be an integer number of microseconds from 0 to ${MAX_TIMEOUT_US}, got ${shown(value)}`,
    );
  }
  return value === 0 ? undefined : value / 1000;
}

/** `parameters.priority` → the level it names, or undefined for "the model's default level" (0 or absent). */
export function priorityParameter(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(
      `parameters.priority must be an integer priority level from 0 (the model's default) to ${UNBOUNDED_LEVELS - 1}, 1 being the highest, got ${shown(value)}`,
    );
  }
  return value === 0 ? undefined : value;
}

/** The level requests without a priority run at. */
export function defaultLevel(levels: PriorityLevels): number {
  return levels.defaultPriorityLevel ?? levels.priorityLevels ?? UNBOUNDED_LEVELS;
}

/**
 * THE mapping: a request's level (undefined: the default) → the batcher's `priority` (higher
 * first). A level the model does not have is a 400 that says which it has.
 */
export function batcherPriority(level: number | undefined, levels: PriorityLevels, model: string): number {
  const top = levels.priorityLevels ?? UNBOUNDED_LEVELS;
  if (level !== undefined && level > top) {
    throw invalidArgument(
      `parameters.priority is ${level}, but model \`${model}\` has priority levels 1 to ${top} (1 is the highest; 0 means its default level, ${defaultLevel(levels)})`,
    );
  }
  return top - (level ?? defaultLevel(levels));
}
