// @ts-check
// The OCR stages' settings: each has one name and one default, here, and is checked here.
// PaddleOCR's PP-OCRv4 inference settings (tools/infer/utility.py, ppocr/postprocess/db_postprocess.py) unless a
// comment says otherwise.

/**
 * @typedef {object} ImageOptions
 * @property {number} maxPixels the largest image decoded (width x height); a larger one is refused before its
 *   pixels are decoded, so one request cannot take the worker's memory
 */

/**
 * @typedef {object} DetOptions
 * @property {number} limitSide the longer side of the detector's input is scaled down to at most this
 * @property {number} multiple both sides of the detector's input are multiples of this (the network downsamples 32x)
 * @property {[number, number, number]} mean per input plane, in the model's plane order B, G, R (of pixel / 255)
 * @property {[number, number, number]} std per input plane, B, G, R
 * @property {number} threshold a map pixel above this probability is text
 * @property {number} boxThreshold a region whose mean probability over its box is below this is dropped
 * @property {number} unclipRatio how far a region is grown back: by area x ratio / perimeter on every side
 * @property {number} minSize a region whose shorter side (in map pixels) is below this is dropped
 * @property {number} maxCandidates at most this many regions are considered, the largest first
 */

/**
 * @typedef {object} RecOptions
 * @property {number} height the recognizer's input height (fixed by the model)
 * @property {[number, number, number]} mean per input plane, B, G, R (of pixel / 255)
 * @property {[number, number, number]} std per input plane, B, G, R
 * @property {number[]} buckets the input widths a crop is padded to, ascending; the last is the widest crop,
 *   a wider line is squeezed to it
 * @property {number} dropScore a line whose mean character probability is below this is dropped
 */

/** @type {Readonly<ImageOptions>} */
export const IMAGE_DEFAULTS = Object.freeze({ maxPixels: 4096 * 4096 });

/** @type {Readonly<DetOptions>} */
export const DET_DEFAULTS = Object.freeze({
  limitSide: 960,
  multiple: 32,
  // Pixels / 255 as they are, as @gutenye/ocr-node feeds them. PaddleOCR normalizes with ImageNet's statistics
  // (mean 0.485, 0.456, 0.406, std 0.229, 0.224, 0.225 on the B, G, R planes); on the test images those gave
  // tighter boxes, and 1.7 % character errors against the ground truth where these give 0.3 % (compare.mjs).
  mean: /** @type {[number, number, number]} */ ([0, 0, 0]),
  std: /** @type {[number, number, number]} */ ([1, 1, 1]),
  threshold: 0.3,
  boxThreshold: 0.6,
  unclipRatio: 1.5,
  minSize: 3,
  maxCandidates: 1000,
});

/** @type {Readonly<RecOptions>} */
export const REC_DEFAULTS = Object.freeze({
  height: 48,
  mean: /** @type {[number, number, number]} */ ([0.5, 0.5, 0.5]),
  std: /** @type {[number, number, number]} */ ([0.5, 0.5, 0.5]),
  // Steps of about 1.25x: a crop is padded by at most a quarter of its width, and a handful of shapes lets crops
  // of many images share a batch. 3200 holds a 1280-pixel line of 20-pixel text at height 48 without squeezing.
  buckets: [64, 96, 128, 160, 192, 256, 320, 400, 480, 576, 704, 864, 1024, 1280, 1600, 2048, 2560, 3200],
  dropScore: 0.5,
});

/**
 * @param {string} name @param {unknown} value @param {number} min @param {number} max
 * @param {boolean} [integer]
 */
function checkNumber(name, value, min, max, integer = false) {
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new TypeError(`Expected \`${name}\` to be a number, got \`${String(value)}\` (${typeof value})`);
  }
  if (value < min || value > max || (integer && !Number.isInteger(value))) {
    const kind = integer ? 'an integer' : 'a number';
    throw new RangeError(`Expected \`${name}\` to be ${kind} from ${min} to ${max}, got \`${value}\``);
  }
}

/** @param {string} name @param {unknown} value @param {number} min */
function checkTriple(name, value, min) {
  if (!Array.isArray(value) || value.length !== 3) {
    throw new TypeError(`Expected \`${name}\` to be an array of 3 numbers (B, G, R), got \`${JSON.stringify(value)}\``);
  }
  for (const [i, v] of value.entries()) checkNumber(`${name}[${i}]`, v, min, 1e6);
}

/**
 * @param {Partial<ImageOptions>} [options]
 * @returns {ImageOptions}
 */
export function imageOptions(options = {}) {
  const o = { ...IMAGE_DEFAULTS, ...options };
  checkNumber('maxPixels', o.maxPixels, 1, 2 ** 28, true);
  return o;
}

/**
 * @param {Partial<DetOptions>} [options]
 * @returns {DetOptions}
 */
export function detOptions(options = {}) {
  const o = { ...DET_DEFAULTS, ...options };
  checkNumber('multiple', o.multiple, 1, 1024, true);
  checkNumber('limitSide', o.limitSide, o.multiple, 16384, true);
  checkTriple('mean', o.mean, -1e6);
  checkTriple('std', o.std, 1e-6);
  checkNumber('threshold', o.threshold, 0, 1);
  checkNumber('boxThreshold', o.boxThreshold, 0, 1);
  checkNumber('unclipRatio', o.unclipRatio, 0, 10);
  checkNumber('minSize', o.minSize, 0, 1024);
  checkNumber('maxCandidates', o.maxCandidates, 1, 100000, true);
  return o;
}

/**
 * @param {Partial<RecOptions>} [options]
 * @returns {RecOptions}
 */
export function recOptions(options = {}) {
  const o = { ...REC_DEFAULTS, ...options };
  checkNumber('height', o.height, 1, 1024, true);
  checkTriple('mean', o.mean, -1e6);
  checkTriple('std', o.std, 1e-6);
  checkNumber('dropScore', o.dropScore, 0, 1);
  if (!Array.isArray(o.buckets) || o.buckets.length === 0) {
    throw new TypeError(`Expected \`buckets\` to be a non-empty array of widths, got \`${JSON.stringify(o.buckets)}\``);
  }
  o.buckets.forEach((width, i) => {
    checkNumber(`buckets[${i}]`, width, i === 0 ? 1 : (o.buckets[i - 1] ?? 0) + 1, 16384, true);
  });
  return o;
}
