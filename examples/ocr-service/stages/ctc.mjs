// @ts-check
// Stage 5: the recognizer's per-step class probabilities to text (CTC greedy decoding) with the model's dictionary.
import { readFileSync } from 'node:fs';

/**
 * @typedef {object} RecognizedLine
 * @property {string} text
 * @property {number} score the mean probability of the characters kept (0 when none is)
 */

/**
 * The recognizer's classes from its dictionary file (ppocr_keys_v1.txt: one character a line). Class 0 is the CTC
 * blank, classes 1..n are the file's lines in order, and class n + 1 is a space, which PaddleOCR appends when
 * `use_space_char` is on (PP-OCRv4's 6625 classes are 1 + 6623 + 1).
 * @param {string} path
 * @returns {string[]} class index to text ('' for the blank)
 */
export function loadClasses(path) {
  const lines = readFileSync(path, 'utf8').replace(/\r/g, '').split('\n');
  if (lines.at(-1) === '') lines.pop(); // a final newline ends the last line, it adds no class
  return ['', ...lines, ' '];
}

/**
 * Greedy CTC decoding: per step the most probable class; repeats collapse, blanks drop.
 * @param {{ shape: readonly number[], data: Float32Array }} probabilities the recognizer's output, [N, T, classes]
 * @param {readonly string[]} classes from loadClasses
 * @param {readonly number[]} [steps] per row, how many of its T steps to read (the steps that cover a crop's real
 *   width; the rest saw only padding); all of them when absent
 * @returns {RecognizedLine[]} one per row
 */
export function ctcDecode(probabilities, classes, steps) {
  const { shape, data } = probabilities;
  const [n = 0, t = 0, c = 0] = shape;
  if (shape.length !== 3 || c !== classes.length || data.length !== n * t * c) {
    throw new RangeError(`Expected probabilities of shape [N, T, ${classes.length}], got ${JSON.stringify(shape)}`);
  }
  /** @type {RecognizedLine[]} */
  const lines = [];
  for (let row = 0; row < n; row++) {
    const last = Math.min(t, steps?.[row] ?? t);
    let text = '';
    let sum = 0;
    let kept = 0;
    let previous = 0;
    for (let step = 0; step < last; step++) {
      const base = (row * t + step) * c;
      let best = 0;
      let bestP = data[base] ?? 0;
      for (let k = 1; k < c; k++) {
        const p = data[base + k] ?? 0;
        if (p > bestP) {
          bestP = p;
          best = k;
        }
      }
      if (best !== 0 && best !== previous) {
        text += classes[best];
        sum += bestP;
        kept++;
      }
      previous = best;
    }
    lines.push({ text, score: kept === 0 ? 0 : sum / kept });
  }
  return lines;
}
