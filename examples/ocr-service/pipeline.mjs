// @ts-check
// file: examples/ocr-service/pipeline.mjs
// The reference OCR pipeline: the stages around onnxruntime-node, in one thread, no server. Detection runs per
// image (image sizes differ); recognition runs over the crops of all the images given at once, one batch per width
// bucket, which is what the served `ocr` model does across requests in flight. Its answers are what the served
// model's must equal.
import * as ort from 'onnxruntime-node';
import { MODEL_FILES } from './models.mjs';
import {
  bucketWidth,
  cropLine,
  ctcDecode,
  decodeImage,
  detOptions,
  detPostprocess,
  detPreprocess,
  imageOptions,
  loadClasses,
  readingOrder,
  recBatch,
  recOptions,
} from './stages/index.mjs';

// onnxruntime-node's telemetry writes `.ses` and `mat-debug-<pid>.log` into the temp folder of every process that
// creates a session (the server turns it off the same way); it reads this before the first session.
process.env.ORT_DISABLE_TELEMETRY ??= '1';

/**
 * @typedef {object} PipelineOptions
 * @property {string} [detModel] the detector's ONNX file (default: MODEL_FILES.detector, PP-OCRv4 det)
 * @property {string} [recModel] the recognizer's ONNX file (default: MODEL_FILES.recognizer, PP-OCRv4 rec)
 * @property {string} [dictionary] the recognizer's dictionary (default: MODEL_FILES.dictionary)
 * @property {number} [maxBatch] the most crops in one recognizer run (default 4). On a 2-core CPU the recognizer's
 *   cost per crop grows past 2 to 4 crops a run (measure.mjs): its output, [N, T, 6625] probabilities, outgrows the
 *   caches. The answers do not depend on it.
 * @property {Partial<import('./stages/params.mjs').ImageOptions>} [image]
 * @property {Partial<import('./stages/params.mjs').DetOptions>} [det]
 * @property {Partial<import('./stages/params.mjs').RecOptions>} [rec]
 * @property {ort.InferenceSession.SessionOptions} [session] for both sessions
 */

/**
 * One image's answer: lines in reading order and their boxes (4 corners, [x, y] pixels, clockwise from top-left).
 * @typedef {object} OcrResult
 * @property {string[]} text
 * @property {number[][][]} boxes
 */

/**
 * @typedef {'decode' | 'det-pre' | 'det-run' | 'det-post' | 'crop' | 'rec-pre' | 'rec-run' | 'ctc' | 'order'} Stage
 * @typedef {(stage: Stage, ms: number, batch: { items: number, width?: number }) => void} StageListener
 *   called after each stage with its wall time and what it worked on (images, or crops and their bucket)
 */

/**
 * @param {PipelineOptions} [options]
 * @returns {Promise<{ run: (images: Uint8Array[], hooks?: { onStage?: StageListener }) => Promise<OcrResult[]>,
 *   close: () => Promise<void> }>}
 */
export async function createPipeline(options = {}) {
  const image = imageOptions(options.image);
  const det = detOptions(options.det);
  const rec = recOptions(options.rec);
  const maxBatch = options.maxBatch ?? 4;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new RangeError(`Expected \`maxBatch\` to be an integer from 1 and up, got \`${maxBatch}\``);
  }
  const classes = loadClasses(options.dictionary ?? MODEL_FILES.dictionary);
  const detector = await ort.InferenceSession.create(options.detModel ?? MODEL_FILES.detector, options.session);
  const recognizer = await ort.InferenceSession.create(options.recModel ?? MODEL_FILES.recognizer, options.session);

  /** @param {ort.InferenceSession} session @param {import('./stages/planes.mjs').Fp32Tensor} input */
  async function infer(session, input) {
    const name = /** @type {string} */ (session.inputNames[0]);
    const outputs = await session.run({ [name]: new ort.Tensor('float32', input.data, input.shape) });
    const output = /** @type {ort.Tensor} */ (outputs[/** @type {string} */ (session.outputNames[0])]);
    return { shape: output.dims, data: /** @type {Float32Array} */ (output.data) };
  }

  /**
   * @param {Uint8Array[]} images
   * @param {{ onStage?: StageListener }} [hooks]
   * @returns {Promise<OcrResult[]>}
   */
  async function run(images, { onStage } = {}) {
    /** @template T @param {Stage} stage @param {{ items: number, width?: number }} batch @param {() => T} work */
    const timed = async (stage, batch, work) => {
      const start = performance.now();
      const result = await work();
      onStage?.(stage, performance.now() - start, batch);
      return result;
    };
    /** @type {{ image: number, box: import('./stages/det-post.mjs').Box, crop: import('./stages/crop.mjs').LineCrop,
     *   text?: string, score?: number }[]} */
    const lines = [];
    for (const [index, bytes] of images.entries()) {
      const one = { items: 1 };
      const pixels = await timed('decode', one, () => decodeImage(bytes, image));
      const input = await timed('det-pre', one, () => detPreprocess(pixels, det));
      const map = await timed('det-run', one, () => infer(detector, input));
      const found = await timed('det-post', one, () => detPostprocess(map, pixels, det));
      const crops = await timed('crop', { items: found.length }, () =>
        Promise.all(found.map(({ box }) => cropLine(pixels, box, rec))),
      );
      for (const [i, { box }] of found.entries()) {
        lines.push({ image: index, box, crop: /** @type {import('./stages/crop.mjs').LineCrop} */ (crops[i]) });
      }
    }

    /** @type {Map<number, typeof lines>} */
    const buckets = new Map();
    for (const line of lines) {
      const width = bucketWidth(line.crop.width, rec);
      const members = buckets.get(width);
      if (members === undefined) buckets.set(width, [line]);
      else members.push(line);
    }
    for (const [width, members] of buckets) {
      for (let start = 0; start < members.length; start += maxBatch) {
        const batch = members.slice(start, start + maxBatch);
        const size = { items: batch.length, width };
        const input = await timed('rec-pre', size, () =>
          recBatch(
            batch.map((line) => line.crop),
            width,
            rec,
          ),
        );
        const output = await timed('rec-run', size, () => infer(recognizer, input));
        // The recognizer downsamples width by a fixed factor (8 for PP-OCRv4), so the steps past a crop's real
        // width saw only padding. It answers blanks there on the test images; reading only the covered steps keeps
        // a stray end character out when it does not.
        const perStep = width / (output.shape[1] ?? width);
        const steps = batch.map((line) => Math.ceil(line.crop.width / perStep));
        const decoded = await timed('ctc', size, () => ctcDecode(output, classes, steps));
        for (const [i, line] of batch.entries()) Object.assign(line, decoded[i]);
      }
    }

    return timed('order', { items: images.length }, () =>
      images.map((_, index) => {
        const kept = lines.filter((line) => line.image === index && (line.score ?? 0) >= rec.dropScore);
        const order = readingOrder(kept.map((line) => line.box));
        return {
          text: order.map((i) => kept[i]?.text ?? ''),
          boxes: order.map((i) => (kept[i]?.box ?? []).map(([x, y]) => [x, y])),
        };
      }),
    );
  }

  async function close() {
    await detector.release();
    await recognizer.release();
  }

  return { run, close };
}
