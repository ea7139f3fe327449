import type { Datatype } from '../model/signature.js';
import { elementCount, packedBytes, type Tensor, type TypedArray } from '../model/tensor.js';
import { invalidArgument } from './errors.js';

/**
 * Triton's classification extension: `classification: K` on a requested output (REST
 * `outputs[].parameters`, gRPC `outputs[].parameters` as `int64_param`) answers, instead of the
 * tensor, BYTES strings `"value:index"` (`"value:index:label"` when the model has labels for that
 * output) for the K highest values of each row, compared in the output's own datatype: shape
 * [rows, K]. As Triton does, K above a row's class count gives all of them (shape [rows, count]),
 * values are printed as C's `%f` prints them (`0.500000`) and integers in decimal, and a row of
 * more than a million classes is refused.
 */

/** Triton's bound: more elements per row than this is a 400, not minutes of sorting. */
export const MAX_CLASSIFICATION_ELEMENTS = 1_000_000;

const CLASSIFIABLE = new Set<Datatype>([
  'FP32',
  'FP64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
]);

/**
 * A requested output's `classification` parameter → K, or undefined for "the tensor itself"
 * (absent, or 0 as Triton's REST reads it). Checked against the output's datatype before anything runs.
 */
export function classificationParameter(value: unknown, output: string, datatype: Datatype): number | undefined {
  if (value === undefined) return undefined;
  const k = typeof value === 'bigint' ? Number.POSITIVE_INFINITY : value;
  if (typeof k !== 'number' || !(Number.isInteger(k) || k === Number.POSITIVE_INFINITY) || k < 0) {
    throw invalidArgument(
      `Output \`${output}\`: invalid value for 'classification' parameter, expected an integer >= 0 (the number of classes), got ${typeof value === 'bigint' ? String(value) : JSON.stringify(value)?.slice(0, 40)}`,
    );
  }
  if (k === 0) return undefined;
  // Triton's own text, which its clients show: BOOL and BYTES outputs have no order to rank by.
  if (!CLASSIFIABLE.has(datatype))
    throw invalidArgument(`class result not available for output due to unsupported type '${datatype}'`);
  return Math.min(k, MAX_CLASSIFICATION_ELEMENTS);
}

/** C's `%f` (what Triton's std::to_string prints): six decimals, ties to even, no exponent. */
export function cFixed(value: number): string {
  if (Number.isNaN(value)) return 'nan';
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf';
  if (Math.abs(value) >= 1e21) return `${BigInt(value).toString()}.000000`;
  const text = value.toFixed(6);
  // toFixed breaks an exact tie upwards, printf to the even digit. A tie is a value whose decimal
  // expansion ends at the 7th digit with a 5: such a value is n / 10^7 with n a multiple of 5^7.
  const seven = value.toFixed(7);
  if (!seven.endsWith('5') || Number(seven) !== value || BigInt(seven.replace(/[-.]/g, '')) % 78125n !== 0n)
    return text;
  const down = seven.slice(0, -1);
  return Number(down.at(-1)) % 2 === 0 ? down : text;
}

/** Indices of the `k` largest of `values[start, start + count)` (ties: lower index first; NaN last). */
function topIndices(values: TypedArray, start: number, count: number, k: number): number[] {
  const at = (i: number): number | bigint => values[start + i] as number | bigint;
  const before = (a: number, b: number): boolean => {
    const x = at(a);
    const y = at(b);
    if (Number.isNaN(x)) return false; // NaN ranks below everything
    if (Number.isNaN(y)) return true;
    return x > y || (x === y && a < b);
  };
  if (k * 16 >= count) {
    const all = Array.from({ length: count }, (_, i) => i);
    all.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
    return all.slice(0, k);
  }
  // Few classes out of many: keep a sorted top-k, so a top-5 of 1,000,000 is one pass, not a sort.
  const top: number[] = [];
  for (let i = 0; i < count; i++) {
    if (top.length === k && !before(i, top[k - 1] as number)) continue;
    let lo = 0;
    let hi = top.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (before(top[mid] as number, i)) lo = mid + 1;
      else hi = mid;
    }
    top.splice(lo, 0, i);
    if (top.length > k) top.pop();
  }
  return top;
}

/**
 * The output tensor as Triton's classification answer: BYTES [rows, min(k, classes)]; for a model
 * without a batch dimension (`batched` false), the whole tensor is one set of classes, answered as
 * [min(k, classes)], as Triton does.
 */
export function classify(tensor: Tensor, k: number, labels: readonly string[] | undefined, batched = true): Tensor {
  const rows = !batched || tensor.shape.length === 0 ? 1 : (tensor.shape[0] as number);
  const perRow =
    !batched || tensor.shape.length === 0 ? elementCount(tensor.shape) : elementCount(tensor.shape.slice(1));
  if (perRow > MAX_CLASSIFICATION_ELEMENTS) throw invalidArgument('classification output tensor too large');
  if (!CLASSIFIABLE.has(tensor.datatype))
    throw invalidArgument(`class result not available for output due to unsupported type '${tensor.datatype}'`);
  const count = Math.min(k, perRow);
  const values = tensor.data as TypedArray;
  const float = tensor.datatype === 'FP32' || tensor.datatype === 'FP64';
  const strings: string[] = [];
  for (let row = 0; row < rows; row++) {
    for (const index of topIndices(values, row * perRow, perRow, count)) {
      const value = values[row * perRow + index] as number | bigint;
      const label = labels?.[index];
      strings.push(
        `${float ? cFixed(value as number) : String(value)}:${index}${label === undefined ? '' : `:${label}`}`,
      );
    }
  }
  return { datatype: 'BYTES', shape: batched ? [rows, count] : [count], data: packedBytes(strings) };
}
