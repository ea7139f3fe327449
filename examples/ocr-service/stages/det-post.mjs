// @ts-check
// Stage 2: the detector's probability map to text boxes in the image's pixels (DB post-processing, axis-aligned).
import { detOptions } from './params.mjs';
import { connectedRegions } from './regions.mjs';

/** @typedef {[number, number]} Point x, y in pixels */
/** @typedef {[Point, Point, Point, Point]} Box corners: top-left, top-right, bottom-right, bottom-left */

/**
 * @typedef {object} Detection
 * @property {Box} box in the source image's pixels, integers, within [0, width] x [0, height]
 * @property {number} score the region's mean text probability over its box, before growing
 */

/**
 * Finds the text boxes in a probability map, as PaddleOCR's DB post-processing does, with axis-aligned boxes in
 * place of minimum-area ones (the crop stage extracts rectangles; printed lines are level):
 * threshold the map, take each connected region's bounding box, drop the thin and the unsure ones, grow each
 * box back by area x unclipRatio / perimeter (the detector was trained on shrunk text), scale it to the image.
 * @param {{ shape: readonly number[], data: Float32Array }} probabilities the detector's output, [1, 1, h, w]
 * @param {{ width: number, height: number }} image the size of the image the boxes are for
 * @param {Partial<import('./params.mjs').DetOptions>} [options]
 * @returns {Detection[]} in no particular order (see readingOrder)
 */
export function detPostprocess(probabilities, image, options) {
  const o = detOptions(options);
  const { shape, data } = probabilities;
  const h = shape[2] ?? 0;
  const w = shape[3] ?? 0;
  if (shape.length !== 4 || shape[0] !== 1 || shape[1] !== 1 || data.length !== w * h) {
    throw new RangeError(`Expected one probability map of shape [1, 1, h, w], got ${JSON.stringify(shape)}`);
  }
  const mask = new Uint8Array(w * h);
  for (let i = 0; i < mask.length; i++) mask[i] = (data[i] ?? 0) > o.threshold ? 1 : 0;
  const regions = connectedRegions(mask, w, h)
    .sort((a, b) => b.pixels - a.pixels)
    .slice(0, o.maxCandidates);

  const scaleX = image.width / w;
  const scaleY = image.height / h;
  /** @type {Detection[]} */
  const detections = [];
  for (const r of regions) {
    // Extents between pixel centres, as a contour through them measures (a one-pixel line has width 0).
    const rw = r.maxX - r.minX;
    const rh = r.maxY - r.minY;
    if (Math.min(rw, rh) < o.minSize) continue;
    const score = meanOver(data, w, r.minX, r.minY, r.maxX, r.maxY);
    if (score < o.boxThreshold) continue;
    const grow = (rw * rh * o.unclipRatio) / (2 * (rw + rh));
    if (Math.min(rw, rh) + 2 * grow < o.minSize + 2) continue;
    const left = clamp(Math.round((r.minX - grow) * scaleX), 0, image.width);
    const top = clamp(Math.round((r.minY - grow) * scaleY), 0, image.height);
    const right = clamp(Math.round((r.maxX + grow) * scaleX), 0, image.width);
    const bottom = clamp(Math.round((r.maxY + grow) * scaleY), 0, image.height);
    if (right - left < 1 || bottom - top < 1) continue;
    detections.push({
      box: [
        [left, top],
        [right, top],
        [right, bottom],
        [left, bottom],
      ],
      score,
    });
  }
  return detections;
}

/**
 * @param {Float32Array} data @param {number} w @param {number} x0 @param {number} y0 @param {number} x1
 * @param {number} y1 inclusive
 */
function meanOver(data, w, x0, y0, x1, y1) {
  let sum = 0;
  for (let y = y0; y <= y1; y++) {
    for (let i = y * w + x0, end = y * w + x1; i <= end; i++) sum += data[i] ?? 0;
  }
  return sum / ((x1 - x0 + 1) * (y1 - y0 + 1));
}

/** @param {number} value @param {number} min @param {number} max */
function clamp(value, min, max) {
  return Math.max(min, Math.min(max, value));
}
