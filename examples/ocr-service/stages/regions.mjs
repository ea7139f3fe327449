// @ts-check
// Connected regions of a binary mask (8-connected, as OpenCV's outer contours), each as its bounding rectangle.

/**
 * @typedef {object} Region
 * @property {number} minX first column, inclusive
 * @property {number} minY first row, inclusive
 * @property {number} maxX last column, inclusive
 * @property {number} maxY last row, inclusive
 * @property {number} pixels how many mask pixels the region holds
 */

/**
 * Flood-fills every region of `mask` (non-zero is set) with one explicit stack, so a region the size of the
 * whole map cannot overflow the call stack. `mask` is cleared as regions are taken. O(width x height).
 * @param {Uint8Array} mask width x height, row after row
 * @param {number} width @param {number} height
 * @returns {Region[]} in the order their first pixel appears (top to bottom, left to right)
 */
export function connectedRegions(mask, width, height) {
  /** @type {Region[]} */
  const regions = [];
  const stack = new Int32Array(width * height);
  for (let start = 0; start < mask.length; start++) {
    if (mask[start] === 0) continue;
    mask[start] = 0;
    stack[0] = start;
    let top = 1;
    let minX = width;
    let minY = height;
    let maxX = -1;
    let maxY = -1;
    let pixels = 0;
    while (top > 0) {
      const p = stack[--top] ?? 0;
      const y = (p / width) | 0;
      const x = p - y * width;
      pixels++;
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
      const x0 = x > 0 ? x - 1 : x;
      const x1 = x < width - 1 ? x + 1 : x;
      const y0 = y > 0 ? y - 1 : y;
      const y1 = y < height - 1 ? y + 1 : y;
      for (let ny = y0; ny <= y1; ny++) {
        for (let nx = x0, q = ny * width + x0; nx <= x1; nx++, q++) {
          if (mask[q] !== 0) {
            mask[q] = 0;
            stack[top++] = q;
          }
        }
      }
    }
    regions.push({ minX, minY, maxX, maxY, pixels });
  }
  return regions;
}
