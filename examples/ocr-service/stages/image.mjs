// @ts-check
// Stage 0: image bytes (PNG or JPEG) to 8-bit RGB pixels, with sharp.
import sharp from 'sharp';
import { OcrImageError } from './errors.mjs';
import { imageOptions } from './params.mjs';

/**
 * Decoded pixels: 3 channels (R, G, B), row after row, no padding.
 * @typedef {object} RgbImage
 * @property {Uint8Array} data width x height x 3 bytes
 * @property {number} width
 * @property {number} height
 */

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG_SIGNATURE = [0xff, 0xd8, 0xff];

/**
 * The format the first bytes announce. Only these two are let through to the decoder: libvips reads many more
 * (SVG, PDF, TIFF...), and an OCR endpoint has no reason to expose those parsers to its clients.
 * @param {Uint8Array} bytes
 * @returns {'png' | 'jpeg' | undefined}
 */
export function imageFormat(bytes) {
  const starts = (/** @type {number[]} */ signature) => signature.every((byte, i) => bytes[i] === byte);
  if (starts(PNG_SIGNATURE)) return 'png';
  if (starts(JPEG_SIGNATURE)) return 'jpeg';
  return undefined;
}

/**
 * Decodes one PNG or JPEG. EXIF orientation is applied (boxes are in the pixels a viewer shows), transparency is
 * laid on white paper (transparent pixels are often black underneath, which would hide dark text), and grey
 * images become RGB.
 * @param {Uint8Array} bytes
 * @param {Partial<import('./params.mjs').ImageOptions>} [options]
 * @returns {Promise<RgbImage>} rejects with OcrImageError for anything but a decodable PNG or JPEG within maxPixels
 */
export async function decodeImage(bytes, options) {
  const { maxPixels } = imageOptions(options);
  const format = bytes instanceof Uint8Array ? imageFormat(bytes) : undefined;
  if (format === undefined) throw new OcrImageError('image: expected the bytes of a PNG or JPEG file');
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: maxPixels, failOn: 'error' })
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data, width: info.width, height: info.height };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new OcrImageError(`image: cannot decode this ${format.toUpperCase()} (${reason})`, { cause: error });
  }
}
