// @ts-check
// Stage 3: one text box of an image to a line image at the recognizer's height, with sharp.
import sharp from 'sharp';
import { recOptions } from './params.mjs';

/**
 * A line image: RGB pixels at the recognizer's height, as wide as the box's aspect ratio asks (at most the widest
 * bucket). `width` is its real width, before any padding to a bucket.
 * @typedef {object} LineCrop
 * @property {Uint8Array} data width x height x 3 bytes
 * @property {number} width
 * @property {number} height
 */

/**
 * The pixel rectangle a box covers, clipped to the image (at least 1 x 1).
 * @param {import('./det-post.mjs').Box} box @param {{ width: number, height: number }} image
 * @returns {{ left: number, top: number, width: number, height: number }}
 */
export function boxRect(box, image) {
  const xs = box.map((p) => p[0]);
  const ys = box.map((p) => p[1]);
  const left = Math.max(0, Math.min(image.width - 1, Math.floor(Math.min(...xs))));
  const top = Math.max(0, Math.min(image.height - 1, Math.floor(Math.min(...ys))));
  const right = Math.max(left + 1, Math.min(image.width, Math.ceil(Math.max(...xs))));
  const bottom = Math.max(top + 1, Math.min(image.height, Math.ceil(Math.max(...ys))));
  return { left, top, width: right - left, height: bottom - top };
}

/**
 * The width a crop of `width` x `height` pixels takes at the recognizer's height, keeping its aspect ratio
 * (rounded up, as PaddleOCR does), at most the widest bucket. A box at least 1.5 times taller than wide is read
 * as a vertical line turned a quarter left, as PaddleOCR does, so its sides swap first.
 * @param {number} width @param {number} height
 * @param {Partial<import('./params.mjs').RecOptions>} [options]
 * @returns {{ width: number, turned: boolean }}
 */
export function lineWidth(width, height, options) {
  const o = recOptions(options);
  const turned = height / width >= 1.5;
  const [w, h] = turned ? [height, width] : [width, height];
  const widest = o.buckets[o.buckets.length - 1] ?? o.height;
  return { width: Math.max(1, Math.min(widest, Math.ceil((o.height * w) / h))), turned };
}

/**
 * Cuts a box out of an image and resizes it to the recognizer's height (bilinear, as PaddleOCR's cv2.resize).
 * @param {import('./image.mjs').RgbImage} image
 * @param {import('./det-post.mjs').Box} box
 * @param {Partial<import('./params.mjs').RecOptions>} [options]
 * @returns {Promise<LineCrop>}
 */
export async function cropLine(image, box, options) {
  const o = recOptions(options);
  const rect = boxRect(box, image);
  const { width, turned } = lineWidth(rect.width, rect.height, o);
  // extract() before rotate() in sharp cuts first, then turns; resize() then sees the turned crop.
  const data = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .extract(rect)
    .rotate(turned ? 270 : 0)
    .resize(width, o.height, { fit: 'fill', kernel: 'cubic' })
    .raw()
    .toBuffer();
  return { data, width, height: o.height };
}
