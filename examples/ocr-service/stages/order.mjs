// @ts-check
// Stage 6: reading order of the boxes, top to bottom, then left to right within a row.

/**
 * Orders boxes as lines are read. Boxes sorted by their vertical centre form rows: a box joins the current row
 * when its centre is less than half the smaller height away from the row's first box, so two boxes of one
 * printed line stay together even when one sits a few pixels lower, while the next line (a full height lower)
 * starts a new row. Each row is read left to right.
 * @param {readonly import('./det-post.mjs').Box[]} boxes
 * @returns {number[]} indices into `boxes`, in reading order
 */
export function readingOrder(boxes) {
  const lines = boxes.map((box, index) => {
    const ys = box.map((p) => p[1]);
    const top = Math.min(...ys);
    const bottom = Math.max(...ys);
    return { index, left: Math.min(...box.map((p) => p[0])), middle: (top + bottom) / 2, height: bottom - top };
  });
  lines.sort((a, b) => a.middle - b.middle || a.left - b.left);
  /** @type {number[]} */
  const order = [];
  for (let start = 0; start < lines.length; ) {
    const first = /** @type {(typeof lines)[number]} */ (lines[start]);
    let end = start + 1;
    for (; end < lines.length; end++) {
      const next = /** @type {(typeof lines)[number]} */ (lines[end]);
      if (next.middle - first.middle >= Math.min(first.height, next.height) / 2) break;
    }
    const row = lines.slice(start, end).sort((a, b) => a.left - b.left);
    for (const line of row) order.push(line.index);
    start = end;
  }
  return order;
}
