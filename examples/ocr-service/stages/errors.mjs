// @ts-check
// The one error the OCR stages raise for bad input: an image that is not a PNG or JPEG, cannot be decoded, or is
// too large. A server answers it as the client's fault (400), not its own.

export class OcrImageError extends Error {
  /** @param {string} message @param {{ cause?: unknown }} [options] */
  constructor(message, options) {
    super(message, options);
    this.name = 'OcrImageError';
    /** @type {'ERR_OCR_IMAGE'} */
    this.code = 'ERR_OCR_IMAGE';
  }
}
