// @ts-check
// Stage 1: an RGB image to the detector's input tensor [1, 3, H, W].
import sharp from 'sharp';
import { detOptions } from './params.mjs';
import { writeBgrPlanes } from './planes.mjs';

/**
 * The detector's input size for an image: scaled down so the longer side is at most `limitSide` (never up), then
 * each side rounded to the nearest multiple of `multiple` (at least one multiple). The aspect ratio may change by
 * that rounding; the boxes are scaled back per axis.
 * @param {number} width @param {number} height
 * @param {Partial<import('./params.mjs').DetOptions>} [options]
 * @returns {{ width: number, height: number }}
 */
export function detInputSize(width, height, options) {
  const { limitSide, multiple } = detOptions(options);
  const ratio = Math.max(width, height) > limitSide ? limitSide / Math.max(width, height) : 1;
  const side = (/** @type {number} */ length) => Math.max(multiple, Math.round((length * ratio) / multiple) * multiple);
  return { width: side(width), height: side(height) };
}

/**
 * Resizes (sharp, bilinear as PaddleOCR's cv2.resize, aspect not kept) and normalizes an image for the detector.
 * @param {import('./image.mjs').RgbImage} image
 * @param {Partial<import('./params.mjs').DetOptions>} [options]
 * @returns {Promise<import('./planes.mjs').Fp32Tensor>} shape [1, 3, H, W]
 */
export async function detPreprocess(image, options) {
  const o = detOptions(options);
  const { width, height } = detInputSize(image.width, image.height, o);
  const pixels =
    width === image.width && height === image.height
      ? image.data
      : await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
          // sharp 0.33.5 takes 'linear' (lib/resize.js) though its .d.ts leaves it out.
          .resize(width, height, { fit: 'fill', kernel: /** @type {keyof sharp.KernelEnum} */ ('linear') })
          .raw()
          .toBuffer();
  const data = new Float32Array(3 * width * height);
  writeBgrPlanes(pixels, width, height, width, o.mean, o.std, data, 0);
  return { datatype: 'FP32', shape: [1, 3, height, width], data };
}
