// @ts-check
// RGB bytes to the normalized B, G, R float planes the PaddleOCR models take. Both models were trained on images
// read by OpenCV, hence BGR; the detector's and recognizer's statistics differ, so they are arguments.

/**
 * A tensor as the server's models see one (`{ datatype, shape, data }`), always FP32 here.
 * @typedef {object} Fp32Tensor
 * @property {'FP32'} datatype
 * @property {number[]} shape
 * @property {Float32Array} data
 */

/**
 * Writes `(pixel / 255 - mean) / std` of `rows` rows of `width` RGB pixels as three planes B, G, R, each
 * `rows x stride` floats, into `out` from `offset`. A row shorter than `stride` is padded with zeros, as
 * PaddleOCR pads its recognizer's batches: the recognizer learned that zeros are "no more line". Padding with the
 * paper's colour instead made it read stray spaces, dashes and underscores there and drop spaces inside the line
 * (35 of the 41 test lines read exactly instead of 38).
 * @param {Uint8Array} rgb @param {number} width @param {number} rows @param {number} stride at least width
 * @param {readonly number[]} mean B, G, R @param {readonly number[]} std B, G, R
 * @param {Float32Array} out zero-filled where padding goes @param {number} offset
 */
export function writeBgrPlanes(rgb, width, rows, stride, mean, std, out, offset) {
  const plane = rows * stride;
  for (let c = 0; c < 3; c++) {
    const source = 2 - c; // plane 0 is blue: byte 2 of an RGB pixel
    const scale = 1 / (255 * (std[c] ?? 1));
    const bias = -(mean[c] ?? 0) / (std[c] ?? 1);
    const base = offset + c * plane;
    for (let y = 0; y < rows; y++) {
      const row = base + y * stride;
      let i = y * width * 3 + source;
      for (let x = 0; x < width; x++, i += 3) out[row + x] = (rgb[i] ?? 0) * scale + bias;
    }
  }
}
