// @ts-check
// file: examples/ocr-service/ocr-model.mjs
// The served `ocr` model (a JS model calling two ONNX models through the server: Triton's BLS). One request is
// one image: decode it, call `ocr-detect` for its text map, cut the lines, and call `ocr-recognize` for them.
// The recognizer's batcher keys batches by input shape, and every crop is padded to a width bucket, so the crops
// of every image in flight that fall in one bucket share a batch. prepare.js writes the repository whose
// `ocr/1/model.mjs` re-exports this module; pipeline.mjs does the same work in one thread, and its answers are
// what this model's must equal.
import { MODEL_FILES } from './models.mjs';
import {
  OcrImageError,
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

/** The models this one calls: the server loads them first and refuses a cycle. */
export const calls = ['ocr-detect', 'ocr-recognize'];

/** One image, the bytes of a PNG or JPEG file; no batch dimension (config.pbtxt: max_batch_size 0). */
export const inputs = [{ name: 'image', datatype: 'BYTES', shape: [1] }];

/** One text per line, top to bottom; each line's 4 corners ([x, y] pixels, clockwise from top-left). */
export const outputs = [
  { name: 'text', datatype: 'BYTES', shape: [-1] },
  { name: 'boxes', datatype: 'FP32', shape: [-1, 4, 2] },
];

/**
 * A tensor as a model call takes and answers it.
 * @typedef {{ datatype: string, shape: number[], data: any }} Tensor
 */

/**
 * The server's handle on its other models (the second argument of `context`).
 * @typedef {object} Models
 * @property {(name: string, inputs: Record<string, Tensor>, options?: { priority?: number, timeout?: number,
 *   signal?: AbortSignal }) => Promise<Record<string, Tensor>>} infer
 */

/**
 * @typedef {object} OcrContext
 * @property {Models} models
 * @property {string[]} classes the recognizer's classes
 * @property {import('./stages/params.mjs').ImageOptions} image
 * @property {import('./stages/params.mjs').DetOptions} det
 * @property {import('./stages/params.mjs').RecOptions} rec
 * @property {number} recognizeRows the most crops in one `ocr-recognize` call
 */

/**
 * @typedef {object} OcrRequest
 * @property {Record<string, { datatype: string, shape: number[], data: (Uint8Array | string)[] }>} inputs
 */

/** The default of config.pbtxt's `recognize_rows`: one crop a call, so `ocr-recognize`'s batcher forms every batch. */
const RECOGNIZE_ROWS = 1;

/**
 * Reads the model's parameters (config.pbtxt `parameters`, string values) once per thread.
 * @param {{ parameters?: Record<string, unknown> }} config
 * @param {{ models?: Models }} [server]
 * @returns {Promise<OcrContext>}
 */
export async function context(config, server = {}) {
  const { models } = server;
  if (typeof models?.infer !== 'function') {
    throw new TypeError("The ocr model calls ocr-detect and ocr-recognize: it needs the server's `models` handle");
  }
  const parameters = config?.parameters ?? {};
  if (parameters.binary !== true && parameters.binary !== 'true') {
    throw new TypeError(
      'The ocr model reads image bytes: config.pbtxt must set parameters { key: "binary" ... "true" }',
    );
  }
  const rows = Number(parameters.recognize_rows ?? RECOGNIZE_ROWS);
  if (!Number.isInteger(rows) || rows < 1 || rows > 1024) {
    throw new RangeError(`Expected \`recognize_rows\` to be an integer from 1 to 1024, got \`${String(rows)}\``);
  }
  return {
    models,
    classes: loadClasses(MODEL_FILES.dictionary),
    image: imageOptions(),
    det: detOptions(),
    rec: recOptions(),
    recognizeRows: rows,
  };
}

/** @param {Record<string, Tensor>} outputs @param {string} model */
function onlyOutput(outputs, model) {
  const [tensor] = Object.values(outputs);
  if (tensor === undefined) throw new Error(`${model} answered no output`);
  return { shape: tensor.shape, data: /** @type {Float32Array} */ (tensor.data) };
}

/**
 * Recognizes line crops of one width bucket: one `ocr-recognize` call per `recognizeRows` crops, all at once.
 * @param {import('./stages/crop.mjs').LineCrop[]} crops @param {number} width @param {OcrContext} ctx
 * @returns {Promise<import('./stages/ctc.mjs').RecognizedLine[]>}
 */
async function recognize(crops, width, ctx) {
  /** @type {Promise<import('./stages/ctc.mjs').RecognizedLine[]>[]} */
  const pending = [];
  for (let start = 0; start < crops.length; start += ctx.recognizeRows) {
    const part = crops.slice(start, start + ctx.recognizeRows);
    pending.push(
      ctx.models.infer('ocr-recognize', { x: recBatch(part, width, ctx.rec) }).then((answer) => {
        const output = onlyOutput(answer, 'ocr-recognize');
        // The steps past a crop's real width saw only padding (pipeline.mjs says why they are not read).
        const perStep = width / (output.shape[1] ?? width);
        const steps = part.map((crop) => Math.ceil(crop.width / perStep));
        return ctcDecode(output, ctx.classes, steps);
      }),
    );
  }
  return (await Promise.all(pending)).flat();
}

/**
 * One image to its lines in reading order.
 * @param {Uint8Array} bytes @param {OcrContext} ctx
 * @returns {Promise<{ text: string[], boxes: Float32Array }>}
 */
export async function readImage(bytes, ctx) {
  const pixels = await decodeImage(bytes, ctx.image);
  const input = await detPreprocess(pixels, ctx.det);
  const map = onlyOutput(await ctx.models.infer('ocr-detect', { x: input }), 'ocr-detect');
  const found = detPostprocess(map, pixels, ctx.det);
  const crops = await Promise.all(found.map(({ box }) => cropLine(pixels, box, ctx.rec)));

  /** @type {Map<number, number[]>} bucket width to the indices of its crops */
  const buckets = new Map();
  crops.forEach((crop, i) => {
    const width = bucketWidth(crop.width, ctx.rec);
    const members = buckets.get(width);
    if (members === undefined) buckets.set(width, [i]);
    else members.push(i);
  });
  /** @type {import('./stages/ctc.mjs').RecognizedLine[]} */
  const lines = new Array(crops.length);
  await Promise.all(
    [...buckets].map(async ([width, members]) => {
      const read = await recognize(
        members.map((i) => /** @type {import('./stages/crop.mjs').LineCrop} */ (crops[i])),
        width,
        ctx,
      );
      members.forEach((i, j) => {
        lines[i] = /** @type {import('./stages/ctc.mjs').RecognizedLine} */ (read[j]);
      });
    }),
  );

  const kept = found.flatMap(({ box }, i) => ((lines[i]?.score ?? 0) >= ctx.rec.dropScore ? [{ box, i }] : []));
  const order = readingOrder(kept.map((line) => line.box));
  const boxes = new Float32Array(order.length * 8);
  const text = order.map((k, n) => {
    const line = /** @type {(typeof kept)[number]} */ (kept[k]);
    boxes.set(line.box.flat(), n * 8);
    return lines[line.i]?.text ?? '';
  });
  return { text, boxes };
}

/**
 * An image the client sent that is not one we read: the client's fault, a 400 (the server reads `status`).
 * @param {OcrImageError} error
 */
function clientError(error) {
  return Object.assign(new Error(error.message), { name: error.name, code: error.code, status: 400 });
}

/**
 * Each request on its own: one that fails (a bad image, a call that timed out) fails alone.
 * @param {OcrRequest[]} requests @param {OcrContext} ctx
 */
export async function handler(requests, ctx) {
  return Promise.all(
    requests.map(async (request) => {
      try {
        const image = request.inputs.image;
        const bytes = image?.data[0];
        // BYTES arrive as text unless the server honours config.pbtxt's `binary`: bytes lost in decoding.
        if (typeof bytes === 'string')
          throw new Error('the server handed the image over as text, not bytes (`binary`)');
        if (!(bytes instanceof Uint8Array)) throw new OcrImageError('image: expected the bytes of a PNG or JPEG file');
        const { text, boxes } = await readImage(bytes, ctx);
        return {
          text: { shape: [text.length], data: text },
          boxes: { shape: [text.length, 4, 2], data: boxes },
        };
      } catch (error) {
        return error instanceof OcrImageError ? clientError(error) : error;
      }
    }),
  );
}
