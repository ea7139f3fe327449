import { invalidArgument } from '../protocol/errors.js';

/**
 * A linear pass over a JSON body before JSON.parse, counting what the parse would build.
 *
 * Why: JSON.parse builds every object before the decoder can count them. An 8 MiB body of
 * `{"inputs":[{},{},...]}` (2.8 M empty objects) cost a 1.5-3 s main-thread stall and 0.6-0.9 GB
 * of RSS before the answer "Every input needs a string `name`". This pass counts, outside
 * strings, every JSON object (`{`), every array (`[`) and every object member (`:`), each kind
 * against --max-objects, and the objects directly inside the root's `inputs` and `outputs` arrays
 * (the tensors), without allocating, at a few ns a byte, and refuses the body at the first one
 * past a limit. Arrays are objects JSON.parse builds just the same: 2.8 M empty `[]` in a tensor's
 * `data` cost a 1.25 s stall and +230 MB, and 4.2 M nested `[[[...]]]` 2 s. So are members, in a
 * dictionary-mode object with their keys interned: 580,000 distinct keys in one `parameters`
 * object cost a 1.2 s stall, and a 200. Tensor data (numbers, strings, inside arrays) is not
 * counted: its size is what the body limit bounds. A tensor sent nested, one array per row,
 * counts its rows, so a nested one of more than --max-objects rows must be sent flat (or binary).
 *
 * A body too short to hold more than the limits allow (each object, array and member needs at
 * least two bytes, `{}`, `[]` or `:0`) is not scanned at all, so small requests pay nothing.
 */

export interface BodyLimits {
  /** Most objects in the root's `inputs` array, and in its `outputs` array. */
  maxTensors: number;
  /** Most JSON objects in the whole body. */
  maxObjects: number;
  /**
   * Most JSON strings in the whole body: BYTES elements, each a string and then a view once decoded.
   * 20 M empty strings fit a 64 MiB body; 1.68 M cost 0.6 s and 190 MB to pack.
   */
  maxBytesElements: number;
}

const OPEN_OBJECT = 0x7b; // {
const CLOSE_OBJECT = 0x7d; // }
const OPEN_ARRAY = 0x5b; // [
const CLOSE_ARRAY = 0x5d; // ]
const COLON = 0x3a; // :
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \

/** The bytes the scan stops at; every other byte (digits, commas, letters) is skipped with one table load. */
const STRUCTURAL = new Uint8Array(256);
for (const byte of [OPEN_OBJECT, CLOSE_OBJECT, OPEN_ARRAY, CLOSE_ARRAY, COLON, QUOTE]) STRUCTURAL[byte] = 1;

/**
 * Deepest nesting a body may have. Triton refuses `data` nested 100 deep; the envelope around it
 * (the body, `inputs`, the tensor) adds 3. Deeper bodies are refused here, before JSON.parse, so
 * no message that quotes a client's value (a shape, a parameter) can overflow the stack in
 * JSON.stringify: a `shape` nested 10,000 deep was a 500 "Maximum call stack size exceeded".
 * (A body too short to be scanned cannot nest deep enough to overflow.)
 */
export const MAX_JSON_DEPTH = 128;

const tooMany = (limit: number, what: string) =>
  invalidArgument(`Request body has more than ${limit} JSON ${what} (--max-objects): refused before parsing`);

const tooDeep = () =>
  invalidArgument(
    `Request body is nested more than ${MAX_JSON_DEPTH} levels deep: JSON nesting depth exceeds maximum allowed limit`,
  );

const INPUTS = Buffer.from('"inputs"');
const OUTPUTS = Buffer.from('"outputs"');

/**
 * Throws an invalid-argument refusal (400) when the JSON in `body[0, end)` holds more tensors or
 * objects than the limits allow. Malformed JSON is left for JSON.parse to refuse, with its own message.
 */
export function scanJsonBody(body: Buffer, end: number, limits: BodyLimits): void {
  if (end < 2 * Math.min(limits.maxTensors, limits.maxObjects, limits.maxBytesElements) + 2) return;
  let objects = 0;
  let strings = 0;
  let arrays = 0;
  let members = 0;
  let depth = 0;
  /** Where the last string at depth 1 (a key of the root object) starts and ends: the name of the value that follows. */
  let keyStart = -1;
  let keyEnd = -1;
  /** Which of the root's arrays is open at depth 2, and how many objects it holds. */
  let tensorArray: 'inputs' | 'outputs' | undefined;
  let tensors = 0;
  for (let i = 0; i < end; i++) {
    const byte = body[i] as number;
    if (STRUCTURAL[byte] === 0) continue;
    if (byte === QUOTE) {
      // Skip the string with memchr-speed indexOf: its closing quote is the first one not escaped.
      const start = i;
      let close = body.indexOf(QUOTE, i + 1);
      while (close !== -1 && close < end && escaped(body, close)) close = body.indexOf(QUOTE, close + 1);
      if (close === -1 || close >= end) return; // unterminated: JSON.parse says so
      // Keys are strings too: a body's handful of them is nothing against the limit.
      if (++strings > limits.maxBytesElements)
        throw invalidArgument(
          `Request body has more than ${limits.maxBytesElements} JSON strings (--max-bytes-elements): refused before parsing`,
        );
      if (depth === 1) {
        keyStart = start;
        keyEnd = close + 1;
      }
      i = close;
    } else if (byte === OPEN_OBJECT) {
      if (++objects > limits.maxObjects) throw tooMany(limits.maxObjects, 'objects');
      if (tensorArray !== undefined && depth === 2 && ++tensors > limits.maxTensors)
        throw invalidArgument(
          `Request has more than ${limits.maxTensors} ${tensorArray} (--max-tensors): refused before parsing`,
        );
      if (++depth > MAX_JSON_DEPTH) throw tooDeep();
    } else if (byte === COLON) {
      if (++members > limits.maxObjects) throw tooMany(limits.maxObjects, 'object members');
    } else if (byte === OPEN_ARRAY) {
      if (++arrays > limits.maxObjects) throw tooMany(limits.maxObjects, 'arrays');
      if (depth === 1 && keyStart !== -1) {
        tensorArray = isKey(body, keyStart, keyEnd, INPUTS)
          ? 'inputs'
          : isKey(body, keyStart, keyEnd, OUTPUTS)
            ? 'outputs'
            : undefined;
        tensors = 0;
      }
      if (++depth > MAX_JSON_DEPTH) throw tooDeep();
    } else if (byte === CLOSE_OBJECT || byte === CLOSE_ARRAY) {
      depth--;
      if (depth === 1) tensorArray = undefined;
    }
  }
}

/** Whether the quote at `at` is escaped: preceded by an odd number of backslashes. */
function escaped(body: Buffer, at: number): boolean {
  let slashes = 0;
  for (let j = at - 1; body[j] === BACKSLASH; j--) slashes++;
  return slashes % 2 === 1;
}

/** Whether the JSON string literal body[start, end) names `key` (`"inputs"`), escapes and all (`"inp\u0075ts"`). */
function isKey(body: Buffer, start: number, end: number, key: Buffer): boolean {
  if (body.subarray(start, end).equals(key)) return true;
  // An escaped key is rare and short; a long literal cannot spell either name.
  if (end - start > 64 || !body.subarray(start, end).includes(BACKSLASH)) return false;
  try {
    return JSON.parse(body.toString('utf8', start, end)) === JSON.parse(key.toString());
  } catch {
    return false;
  }
}
