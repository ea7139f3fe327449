// @ts-check
// file: examples/ocr-service/measure.mjs
// Where the time goes, once, in one process: our pipeline's milliseconds per stage per image, the recognizer's
// run time by batch size, and @gutenye/ocr-node's images/s in a sequential loop. A few seconds per figure; not a
// benchmark of the service (that runs through the server, with concurrent clients).
//   node examples/ocr-service/measure.mjs [--seconds 2] [--threads N]
// --threads sets ONNX Runtime's intra-op threads for our sessions (the server's `threads` setting); without it,
// ONNX Runtime's default (one per core). @gutenye/ocr-node always runs with the default.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { MODEL_FILES } from './models.mjs';
import { createPipeline } from './pipeline.mjs';
import { prepareTestImages } from './test-images.mjs';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '2' }, threads: { type: 'string' } } });
const seconds = Number(values.seconds);
if (!(seconds > 0 && seconds <= 60)) throw new RangeError(`Expected --seconds from 0 to 60, got ${values.seconds}`);
const threads = values.threads === undefined ? undefined : Number(values.threads);
if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) {
  throw new RangeError(`Expected --threads to be an integer from 1 to 64, got ${values.threads}`);
}
/** @type {ort.InferenceSession.SessionOptions} */
const session = threads === undefined ? {} : { intraOpNumThreads: threads, interOpNumThreads: 1 };

const { dir, images } = await prepareTestImages();
const bytes = images.map((image) => readFileSync(join(dir, image.file)));
const out = process.stdout;

/**
 * Runs `work` over the images, round after round, until `seconds` have passed (at least one round).
 * @param {(batch: Uint8Array[]) => Promise<unknown>} work @param {number} perCall images per call
 */
async function imagesPerSecond(work, perCall) {
  let done = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000 || done === 0) {
    for (let i = 0; i < bytes.length; i += perCall) {
      await work(bytes.slice(i, i + perCall));
      done += Math.min(perCall, bytes.length - i);
    }
  }
  return (done * 1000) / (performance.now() - start);
}

// Our pipeline, stage by stage: one warm-up round (first runs of a shape are slower), then one measured round.
const pipeline = await createPipeline({ session });
await pipeline.run(bytes);
/** @type {Map<string, { ms: number, calls: number, items: number }>} */
const stages = new Map();
await pipeline.run(bytes, {
  onStage: (stage, ms, batch) => {
    const entry = stages.get(stage) ?? { ms: 0, calls: 0, items: 0 };
    stages.set(stage, { ms: entry.ms + ms, calls: entry.calls + 1, items: entry.items + batch.items });
  },
});
const lines = stages.get('crop')?.items ?? 0;
out.write(`Our pipeline (${threads ?? 'default'} intra-op threads), ${images.length} images (${lines} lines), `);
out.write('recognition batched by width bucket:\n');
out.write('stage      ms/image  calls  items\n');
let total = 0;
for (const [stage, { ms, calls, items }] of stages) {
  total += ms;
  out.write(
    `${stage.padEnd(9)} ${(ms / images.length).toFixed(1).padStart(9)}  ${String(calls).padStart(5)}  ${items}\n`,
  );
}
out.write(`${'total'.padEnd(9)} ${(total / images.length).toFixed(1).padStart(9)}\n\n`);

// The recognizer alone, by batch size, at two bucket widths the test images use.
const recognizer = await ort.InferenceSession.create(MODEL_FILES.recognizer, session);
out.write('Recognizer run alone (ms per run, ms per crop; best of 3):\n');
for (const width of [320, 864]) {
  for (const n of [1, 2, 4, 8, 16]) {
    const input = new ort.Tensor('float32', new Float32Array(n * 3 * 48 * width).fill(0.5), [n, 3, 48, width]);
    const times = [];
    for (let r = 0; r < 4; r++) {
      const start = performance.now();
      await recognizer.run({ x: input });
      if (r > 0) times.push(performance.now() - start); // the first run of a shape plans it
    }
    const best = Math.min(...times);
    out.write(`  width ${width}, batch ${String(n).padStart(2)}: ${best.toFixed(0).padStart(5)} ms, `);
    out.write(`${(best / n).toFixed(1)} ms per crop\n`);
  }
}
await recognizer.release();

out.write(`\nSequential loops (${seconds} s each):\n`);
const single = await imagesPerSecond((batch) => pipeline.run(batch), 1);
out.write(`  our pipeline, one image per run:      ${single.toFixed(2)} images/s\n`);
const batched = await imagesPerSecond((batch) => pipeline.run(batch), bytes.length);
out.write(`  our pipeline, ${bytes.length} images per run:     ${batched.toFixed(2)} images/s\n`);
await pipeline.close();

const { default: Ocr } = await import('@gutenye/ocr-node');
const baseline = await Ocr.create();
await baseline.detect(join(dir, images[0]?.file ?? ''));
let index = 0;
const theirs = await imagesPerSecond(async (batch) => {
  for (const _ of batch) await baseline.detect(join(dir, images[index++ % images.length]?.file ?? ''));
}, 1);
out.write(`  @gutenye/ocr-node, one image per call: ${theirs.toFixed(2)} images/s\n`);
