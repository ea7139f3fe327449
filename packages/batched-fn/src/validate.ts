/**
 * The checks every option, flag and call option goes through, with messages
 * that name the option, the rule and the value received.
 */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return `\`${JSON.stringify(value)}\` (string)`;
  if (typeof value === 'function') return `a function`;
  if (value === null) return '`null`';
  if (typeof value === 'object') return `an object`;
  return `\`${String(value)}\` (${typeof value})`;
}

export function expectNumber(name: string, value: unknown, rule: string, ok: (n: number) => boolean): number {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`Expected \`${name}\` to be ${rule}, got ${describeValue(value)}`);
  }
  if (!ok(value)) throw new RangeError(`Expected \`${name}\` to be ${rule}, got ${describeValue(value)}`);
  return value;
}

export function expectInteger(name: string, value: unknown, min: number, allowInfinity = false): number {
  const rule = `an integer from ${min} and up${allowInfinity ? ', or Infinity' : ''}`;
  return expectNumber(
    name,
    value,
    rule,
    (n) => (Number.isInteger(n) && n >= min) || (allowInfinity && n === Number.POSITIVE_INFINITY),
  );
}

export function expectFunction(name: string, value: unknown): void {
  if (typeof value !== 'function')
    throw new TypeError(`Expected \`${name}\` to be a function, got ${describeValue(value)}`);
}

/**
 * Longest delay a Node timer honours: `setTimeout` clamps anything longer to 1 ms (and warns), so a
 * longer duration would fire at once. Every duration option and call option is held to it.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** A duration in ms that one timer can hold: from 0 (or above 0) up to MAX_TIMER_MS. */
export function expectDuration(name: string, value: unknown, above: 0 | undefined = undefined, suffix = ''): number {
  const rule = `a number of milliseconds ${above === undefined ? 'from 0' : 'above 0'} to ${MAX_TIMER_MS}${suffix}`;
  return expectNumber(name, value, rule, (n) => (above === undefined ? n >= 0 : n > 0) && n <= MAX_TIMER_MS);
}

export function validateMaxDelay(value: unknown): number | 'auto' {
  if (value === 'auto') return value;
  return expectDuration('maxDelay', value, undefined, ", or 'auto'");
}

/** Rows one input counts, from the user's `size`; throws what `size` throws, or a RangeError for a bad count. */
export function rowsOf<I>(size: (input: I) => number, input: I): number {
  const rows = size(input);
  if (typeof rows !== 'number' || !(rows > 0) || !Number.isFinite(rows)) {
    throw new RangeError(`Expected \`size(input)\` to return a finite number above 0, got ${String(rows)}`);
  }
  return rows;
}
