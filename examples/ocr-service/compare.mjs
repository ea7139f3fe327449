// @ts-check
// file: examples/ocr-service/compare.mjs
// Runs @gutenye/ocr-node (the library people use today) and our pipeline on every test image, and prints
// line-for-line equality and the character error rate (edit distance / reference length) of each against the
// ground truth and against each other.
//   node examples/ocr-service/compare.mjs
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { characterErrors } from './cer.mjs';
import { createPipeline } from './pipeline.mjs';
import { prepareTestImages } from './test-images.mjs';

/**
 * @typedef {object} ImageComparison
 * @property {string} file
 * @property {string[]} truth
 * @property {string[]} ours
 * @property {string[]} baseline
 * @property {boolean} equal our lines equal ocr-node's, line for line
 * @property {{ errors: number, length: number }} oursVsTruth
 * @property {{ errors: number, length: number }} baselineVsTruth
 * @property {{ errors: number, length: number }} oursVsBaseline
 */

/**
 * @returns {Promise<ImageComparison[]>}
 */
export async function compareWithBaseline() {
  const { dir, images } = await prepareTestImages();
  const { default: Ocr } = await import('@gutenye/ocr-node');
  const baseline = await Ocr.create();
  const pipeline = await createPipeline();
  try {
    const ours = await pipeline.run(images.map((image) => readFileSync(join(dir, image.file))));
    /** @type {ImageComparison[]} */
    const rows = [];
    for (const [i, image] of images.entries()) {
      const truth = image.lines.map((line) => line.text);
      /** @type {{ text: string }[]} */
      const found = await baseline.detect(join(dir, image.file));
      const theirs = found.map((line) => line.text);
      const mine = ours[i]?.text ?? [];
      rows.push({
        file: image.file,
        truth,
        ours: mine,
        baseline: theirs,
        equal: mine.length === theirs.length && mine.every((line, k) => line === theirs[k]),
        oursVsTruth: characterErrors(mine, truth),
        baselineVsTruth: characterErrors(theirs, truth),
        oursVsBaseline: characterErrors(mine, theirs),
      });
    }
    return rows;
  } finally {
    await pipeline.close();
  }
}

/** @param {{ errors: number, length: number }[]} counts */
function rate(counts) {
  const errors = counts.reduce((sum, c) => sum + c.errors, 0);
  const length = counts.reduce((sum, c) => sum + c.length, 0);
  return `${((100 * errors) / Math.max(1, length)).toFixed(2)} % (${errors}/${length})`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = await compareWithBaseline();
  const out = process.stdout;
  out.write('image                     lines  equal  ours/truth       ocr-node/truth   ours/ocr-node\n');
  for (const r of rows) {
    out.write(
      `${r.file.padEnd(25)} ${String(r.truth.length).padStart(5)}  ${(r.equal ? 'yes' : 'no').padEnd(5)}  ` +
        `${rate([r.oursVsTruth]).padEnd(15)}  ${rate([r.baselineVsTruth]).padEnd(15)}  ${rate([r.oursVsBaseline])}\n`,
    );
  }
  out.write(
    `\nequal line for line: ${rows.filter((r) => r.equal).length}/${rows.length} images\n` +
      `CER ours vs truth:     ${rate(rows.map((r) => r.oursVsTruth))}\n` +
      `CER ocr-node vs truth: ${rate(rows.map((r) => r.baselineVsTruth))}\n` +
      `CER ours vs ocr-node:  ${rate(rows.map((r) => r.oursVsBaseline))} (ocr-node's text as the reference)\n\n`,
  );
  for (const r of rows.filter((row) => !row.equal || row.oursVsTruth.errors > 0)) {
    r.truth.forEach((line, k) => {
      if (line !== r.ours[k] || line !== r.baseline[k]) {
        out.write(
          `${r.file}: truth ${JSON.stringify(line)}  ours ${JSON.stringify(r.ours[k])}  ` +
            `ocr-node ${JSON.stringify(r.baseline[k])}\n`,
        );
      }
    });
  }
}
