// @ts-check
// Stage 4: line crops to the recognizer's input [N, 3, height, W], padded to a width bucket.
import { recOptions } from './params.mjs';
import { writeBgrPlanes } from './planes.mjs';

/**
 * The bucket a line of `width` pixels is padded to: the narrowest bucket at least as wide. Crops with the same
 * bucket have the same input shape, so a server that batches by shape puts them in one batch.
 * @param {number} width a LineCrop's width (never more than the widest bucket)
 * @param {Partial<import('./params.mjs').RecOptions>} [options]
 * @returns {number}
 */
export function bucketWidth(width, options) {
  const { buckets } = recOptions(options);
  const bucket = buckets.find((b) => b >= width);
  if (bucket === undefined) throw new RangeError(`A line ${width} pixels wide is wider than the widest bucket`);
  return bucket;
}

/**
 * Normalizes crops into one input tensor `width` wide; each crop is padded on the right with zeros (see
 * writeBgrPlanes for why zeros).
 * @param {import('./crop.mjs').LineCrop[]} crops all of the recognizer's height, none wider than `width`
 * @param {number} width the batch's input width (a bucket)
 * @param {Partial<import('./params.mjs').RecOptions>} [options]
 * @returns {import('./planes.mjs').Fp32Tensor} shape [crops.length, 3, height, width]
 */
export function recBatch(crops, width, options) {
  const o = recOptions(options);
  const row = 3 * o.height * width;
  const data = new Float32Array(crops.length * row);
  crops.forEach((crop, n) => {
    if (crop.height !== o.height || crop.width > width || crop.width < 1) {
      throw new RangeError(`Crop ${n} is ${crop.width}x${crop.height}; this batch takes at most ${width}x${o.height}`);
    }
    writeBgrPlanes(crop.data, crop.width, o.height, width, o.mean, o.std, data, n * row);
  });
  return { datatype: 'FP32', shape: [crops.length, 3, o.height, width], data };
}
