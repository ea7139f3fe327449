/**
 * FP16 (IEEE 754 binary16) and BF16 (bfloat16) elements as the server keeps them: 16-bit patterns in a
 * Uint16Array, the form ONNX Runtime takes and answers (`'float16'`), the binary extension and gRPC's
 * raw contents carry, and JS models receive. JSON carries numbers, so only the JSON path converts.
 *
 * A number is rounded to the nearest 16-bit value, ties to even, straight from the double: going
 * through a float32 first would round twice (a double just above a float16 tie, rounded to float32,
 * can land on the tie and then round the wrong way). Both formats are handled by one routine: a value
 * is `significand × 2^exponent` with `mantissa` stored bits; subnormals share the exponent of the
 * smallest normal. Every step is exact in a double (scaling by powers of two, floor, compare), so
 * the result is correctly rounded.
 */

interface Format {
  /** Stored significand bits (10 for FP16, 7 for BF16). */
  mantissa: number;
  /** Exponent bias (15, 127). */
  bias: number;
  /** The pattern of +Infinity: a rounded value that reaches it overflows. */
  infinity: number;
}

const FP16: Format = { mantissa: 10, bias: 15, infinity: 0x7c00 };
const BF16: Format = { mantissa: 7, bias: 127, infinity: 0x7f80 };

/** Round half to even of a non-negative double that is exact (a scaled finite value). */
function roundHalfEven(q: number): number {
  const floor = Math.floor(q);
  const rest = q - floor;
  return rest > 0.5 || (rest === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
}

/** The exact binary exponent of a positive finite double: 2^e <= a < 2^(e+1). */
function exponentOf(a: number): number {
  let e = Math.floor(Math.log2(a));
  // log2 may be off by one next to a power of two; 2 ** e is exact, so the fix-up is too.
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return e;
}

/** `value` as the format's pattern; a finite value that rounds past the largest finite one gives the infinity pattern. */
function encode(format: Format, value: number): number {
  if (Number.isNaN(value)) return format.infinity | (1 << (format.mantissa - 1));
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const a = Math.abs(value);
  if (a === Number.POSITIVE_INFINITY) return sign | format.infinity;
  if (a === 0) return sign;
  const minExponent = 1 - format.bias;
  // Below the smallest normal, the spacing is that of the subnormals.
  const e = Math.max(exponentOf(a), minExponent);
  const r = roundHalfEven(a * 2 ** (format.mantissa - e));
  // The biased exponent above the significand's implicit leading 1. A subnormal (r < 2^mantissa at
  // the smallest exponent, whose biased value is 1) comes out as r itself, and a significand that
  // rounded up to 2^(mantissa+1) carries into the exponent field: both by this one addition.
  const bits = ((e + format.bias) << format.mantissa) + (r - 2 ** format.mantissa);
  return sign | Math.min(bits, format.infinity);
}

function decode(format: Format, bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits & 0x7fff) >> format.mantissa;
  const fraction = bits & ((1 << format.mantissa) - 1);
  const maxExponent = format.infinity >> format.mantissa;
  if (exponent === maxExponent) return fraction === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (exponent === 0) return sign * fraction * 2 ** (1 - format.bias - format.mantissa);
  return sign * (2 ** format.mantissa + fraction) * 2 ** (exponent - format.bias - format.mantissa);
}

/** A number as an FP16 bit pattern, rounded to nearest (ties to even); ±Infinity past ±65504 (from 65520 up). */
export const toFloat16Bits = (value: number): number => encode(FP16, value);
/** An FP16 bit pattern as the number it holds (exact). */
export const fromFloat16Bits = (bits: number): number => decode(FP16, bits);
/** A number as a BF16 bit pattern, rounded to nearest (ties to even); ±Infinity past the largest finite bfloat16. */
export const toBFloat16Bits = (value: number): number => encode(BF16, value);
/** A BF16 bit pattern as the number it holds (exact). */
export const fromBFloat16Bits = (bits: number): number => decode(BF16, bits);

/**
 * The smallest magnitude that rounds to infinity: the largest finite value plus half its spacing
 * (65504 + 16 for FP16). A finite JSON number at or past it overflows the datatype.
 */
export const HALF_OVERFLOW = { FP16: 65520, BF16: 2 ** 128 - 2 ** 119 } as const;
