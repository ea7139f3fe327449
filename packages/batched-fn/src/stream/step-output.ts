import { InvalidOutputError } from '../errors.js';
import { describeValue } from '../validate.js';

/** One slot of a step's outputs, read once: an error ending that stream, or a value and/or the end. */
export interface Slot {
  failed: boolean;
  error: unknown;
  hasValue: boolean;
  value: unknown;
  done: boolean;
}

export const newSlot = (): Slot => ({
  failed: false,
  error: undefined,
  hasValue: false,
  value: undefined,
  done: false,
});

/** `value instanceof Error`, which can itself throw: a revoked Proxy has no prototype to ask for. */
function isError(value: unknown): boolean {
  try {
    return value instanceof Error;
  } catch {
    return false;
  }
}

/**
 * Reads slot `index` of a step's outputs into `into` (one record reused for a whole step, so
 * delivering allocates nothing per slot). The step is user code, so a slot may hold anything: a
 * bare number or null (where `'value' in output` would throw), a `done` that is not a boolean (a
 * stream that would never end), a getter that throws, or a revoked Proxy (what an immer draft
 * becomes once its producer returns), on which even `instanceof` throws. Each becomes that slot's
 * error, never an exception: one malformed slot ends its own stream and no other, on the main
 * thread and in a worker thread alike. The slot itself is read here too, since an index getter
 * may throw as well.
 */
export function readSlot(outputs: ArrayLike<unknown>, index: number, into: Slot): Slot {
  into.failed = false;
  into.error = undefined;
  into.hasValue = false;
  into.value = undefined;
  into.done = false;
  try {
    const output = outputs[index];
    if (output instanceof Error) {
      into.failed = true;
      into.error = output;
      return into;
    }
    if (typeof output !== 'object' || output === null) {
      into.failed = true;
      into.error = new InvalidOutputError(index, `is ${describeValue(output)}`);
      return into;
    }
    const record = output as { value?: unknown; done?: unknown };
    const done = record.done;
    if (done !== undefined && typeof done !== 'boolean') {
      into.failed = true;
      into.error = new InvalidOutputError(index, `has \`done\` = ${describeValue(done)}, not a boolean`);
      return into;
    }
    into.done = done === true;
    into.hasValue = 'value' in record;
    if (into.hasValue) into.value = record.value;
  } catch (error) {
    // A Proxy, a throwing getter: what it threw ends this stream, if it is an Error (anything
    // else thrown could be just as hostile to the error codec and to the caller).
    into.failed = true;
    into.error = isError(error)
      ? error
      : new InvalidOutputError(index, 'threw something that is not an Error when read');
    into.done = false;
    into.hasValue = false;
    into.value = undefined;
  }
  return into;
}

/**
 * Bits of a packed step's `flags` (worker mode): slot i has a value, slot i's stream is done. A
 * step's outputs cross between threads as one array of values and one byte per slot, never as an
 * object per sequence, which the structured clone would build, walk and rebuild at every step.
 */
export const HAS_VALUE = 1;
export const DONE = 2;
