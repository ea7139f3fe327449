/**
 * Zero-copy hand-off to worker threads. `move(value)` says "I give this value
 * up": in worker mode its ArrayBuffers are transferred rather than copied, and
 * are detached on the sender's side. Values not moved are always copied, so
 * forgetting `move` costs time, never correctness. Inline mode ignores the mark.
 */
const moved = new WeakSet<object>();

export function move<T extends object>(value: T): T {
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(
      `Expected \`move\` to get an ArrayBuffer, a typed array, or an object holding them, got ${value === null ? 'null' : typeof value}`,
    );
  }
  moved.add(value);
  return value;
}

/** Whether `move()` marked this value: its buffers may be handed over (a `BatchCodec` asks before transferring). */
export function isMoved(value: unknown): boolean {
  return typeof value === 'object' && value !== null && moved.has(value);
}

const MAX_DEPTH = 4;

/**
 * Collects the transferable buffers of a moved value: the value itself, the
 * buffers behind its typed arrays, and those inside plain arrays and objects a
 * few levels deep. Shared buffers are skipped because they cannot be transferred.
 */
export function collectTransferables(value: unknown, into: Set<ArrayBuffer>, depth = 0): void {
  if (typeof value !== 'object' || value === null || depth > MAX_DEPTH) return;
  if (value instanceof ArrayBuffer) {
    into.add(value);
  } else if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof ArrayBuffer) into.add(value.buffer);
  } else if (Array.isArray(value)) {
    for (const element of value) collectTransferables(element, into, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const key in value) collectTransferables((value as Record<string, unknown>)[key], into, depth + 1);
  }
}

/**
 * The longest transfer list sent. Node checks a transfer list for duplicates
 * pairwise, so its cost grows with the square of its length: 10,000 one-byte
 * buffers took 30 ms to post, 40,000 took 630 ms (copying them: 105 ms), and a
 * request of 150,000 BYTES elements froze the main thread for seconds.
 */
export const MAX_TRANSFER_LIST = 256;

/**
 * The transfer list for a batch: buffers of every moved element, deduplicated.
 * Past MAX_TRANSFER_LIST buffers only the largest are transferred and the rest
 * are copied (they stay usable on the sender's side): many small buffers are
 * cheaper to copy than to transfer, and the big ones are where transfer pays.
 */
export function transferListFor(values: readonly unknown[]): ArrayBuffer[] | undefined {
  let found: Set<ArrayBuffer> | undefined;
  for (const value of values) {
    if (!isMoved(value)) continue;
    found ??= new Set();
    collectTransferables(value, found);
  }
  if (found === undefined || found.size === 0) return undefined;
  const list = [...found];
  if (list.length <= MAX_TRANSFER_LIST) return list;
  return list.sort((a, b) => b.byteLength - a.byteLength).slice(0, MAX_TRANSFER_LIST);
}

function isDetached(buffer: ArrayBuffer): boolean {
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

/**
 * Where a moved value holds a detached buffer (as in "the input.data's buffer"), or undefined.
 * Checked for every moved call in worker mode, so the path is spelled only once one is found.
 */
export function findDetached(value: unknown): string | undefined {
  const where = detachedAt(value, 0);
  return where === undefined ? undefined : `the input${where}`;
}

/** The rest of the path from `value` to a detached buffer in it ('' for `value` itself), or undefined. */
function detachedAt(value: unknown, depth: number): string | undefined {
  if (typeof value !== 'object' || value === null || depth > MAX_DEPTH) return undefined;
  if (value instanceof ArrayBuffer) return isDetached(value) ? '' : undefined;
  if (ArrayBuffer.isView(value))
    return value.buffer instanceof ArrayBuffer && isDetached(value.buffer) ? "'s buffer" : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = detachedAt(value[i], depth + 1);
      if (found !== undefined) return `[${i}]${found}`;
    }
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const key in value) {
      const found = detachedAt((value as Record<string, unknown>)[key], depth + 1);
      if (found !== undefined) return `.${key}${found}`;
    }
  }
  return undefined;
}
