import { expectDuration, expectInteger } from 'batched-fn/adapter';
import { DEFAULT_PREFIX } from './keys.js';

/**
 * The options of `remoteBatchedFn` and `startRemoteWorker`, declared once:
 * each one's default and check. Unknown names throw, as in batchedFn.
 */
type Check = (name: string, value: unknown) => unknown;

const anything: Check = (_name, value) => value;
const text: Check = (name, value) => {
  if (typeof value !== 'string' || value.length === 0)
    throw new TypeError(`Expected \`${name}\` to be a non-empty string, got ${JSON.stringify(value) ?? String(value)}`);
  return value;
};
const fn: Check = (name, value) => {
  if (typeof value !== 'function') throw new TypeError(`Expected \`${name}\` to be a function, got ${typeof value}`);
  return value;
};

interface Spec {
  readonly check: Check;
  readonly default?: unknown;
}

const COMMON = {
  redis: { check: anything },
  name: { check: text },
  prefix: { check: text, default: DEFAULT_PREFIX },
} satisfies Record<string, Spec>;

export const FRONTEND_OPTIONS = {
  ...COMMON,
  channelCap: { check: (name, value) => expectInteger(name, value, 1, true), default: Number.POSITIVE_INFINITY },
  size: { check: fn },
  onBatch: { check: fn },
  drainTimeout: { check: (name, value) => expectDuration(name, value), default: 30_000 },
} satisfies Record<string, Spec>;

export const WORKER_OPTIONS = {
  ...COMMON,
  predict: { check: fn },
  claimIdleMs: { check: (name, value) => expectDuration(name, value, 0), default: 30_000 },
  signature: { check: anything },
  consumer: { check: text },
  validate: { check: fn },
} satisfies Record<string, Spec>;

/** Checks every option given by its row, requires `required`, and fills in the defaults. */
export function resolveOptions<T extends object>(
  schema: Record<string, Spec>,
  options: T,
  required: readonly string[],
): T {
  if (typeof options !== 'object' || options === null) throw new TypeError('Expected options to be an object');
  const resolved: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(schema)) if (spec.default !== undefined) resolved[key] = spec.default;
  for (const [key, value] of Object.entries(options)) {
    const spec = schema[key];
    if (spec === undefined) throw new TypeError(`Unknown option \`${key}\``);
    if (value !== undefined) resolved[key] = spec.check(key, value);
  }
  for (const key of required) if (resolved[key] === undefined) throw new TypeError(`Expected \`${key}\` to be given`);
  return resolved as T;
}
