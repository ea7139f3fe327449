// The OCR service (issue #24): prepare.js writes a Triton-layout repository; `ocr` (a JS model calling
// `ocr-detect` and `ocr-recognize` through the server) answers each test image with the reference pipeline's lines.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { type RunningServer, PROTO_OPTIONS, PROTO_PATH, startServer } from '@batched-fn/server';
import { credentials, loadPackageDefinition, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { binaryBody } from './rest-body.mjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MODEL_FILES } from './models.mjs';
import { context, handler } from './ocr-model.mjs';
import { type OcrResult, createPipeline } from './pipeline.mjs';
import { MODELS_DIR, prepareRepository } from './prepare.js';
import { type ManifestImage, prepareTestImages } from './test-images.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));

/** Every file under `dir`, by path, with its modification time and a hash of what it holds. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (at: string): void => {
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) walk(path);
      else out[relative(dir, path)] = `${statSync(path).mtimeMs} ${readFileSync(path).length}`;
    }
  };
  walk(dir);
  return out;
}

interface RestTensor<T> {
  name: string;
  datatype: string;
  shape: number[];
  data: T[];
}
interface RestAnswer {
  outputs: RestTensor<unknown>[];
  error?: string;
}
interface GrpcAnswer {
  outputs: { name: string; shape: (number | string)[] }[];
  raw_output_contents: Buffer[];
}
interface GrpcService {
  ModelInfer(request: object, done: (error: ServiceError | null, answer?: unknown) => void): void;
  close(): void;
}

/** What the ocr model answers one request. */
type Answer = { text: { shape: number[]; data: string[] }; boxes: { shape: number[]; data: Float32Array } };

let images: { file: string; bytes: Buffer; truth: ManifestImage }[];
/** The reference pipeline's answer for each image, alone. */
let reference: OcrResult[];

beforeAll(async () => {
  const prepared = await prepareTestImages();
  images = prepared.images.map((truth) => ({
    file: truth.file,
    bytes: readFileSync(join(prepared.dir, truth.file)),
    truth,
  }));
  const pipeline = await createPipeline();
  try {
    reference = [];
    for (const image of images) reference.push(...(await pipeline.run([image.bytes])));
  } finally {
    await pipeline.close();
  }
}, 60_000);

/** Our answer equals the reference: the same lines, the same boxes to a pixel. */
function expectReference(i: number, text: string[], boxes: ArrayLike<number>, shape: number[]): void {
  const expected = reference[i] as OcrResult;
  expect(text, images[i]?.file).toEqual(expected.text);
  expect(shape).toEqual([expected.text.length, 4, 2]);
  const flat = expected.boxes.flat(2);
  expect(boxes.length).toBe(flat.length);
  const off = flat.filter((value, k) => Math.abs((boxes[k] as number) - value) > 0.5);
  expect(off).toEqual([]);
}

describe('prepare.js', () => {
  test('writes the Triton-layout repository, and a second run changes nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocr-repo-'));
    try {
      const first = prepareRepository(dir);
      expect(first.written.sort()).toEqual([
        'ocr-detect/1/model.onnx',
        'ocr-detect/config.pbtxt',
        'ocr-recognize/1/model.onnx',
        'ocr-recognize/config.pbtxt',
        'ocr/1/model.mjs',
        'ocr/config.pbtxt',
      ]);
      expect(readFileSync(join(dir, 'ocr-recognize/1/model.onnx')).equals(readFileSync(MODEL_FILES.recognizer))).toBe(
        true,
      );
      const before = snapshot(dir);
      expect(prepareRepository(dir).written).toEqual([]);
      expect(snapshot(dir)).toEqual(before);
      // The module a server loads re-exports ocr-model.mjs from wherever the repository is.
      const served = await import(join(dir, 'ocr/1/model.mjs'));
      expect(served.calls).toEqual(['ocr-detect', 'ocr-recognize']);
      expect(served.handler).toBe(handler);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('`node prepare.js` prepares models/ and the images, and says so; again, it writes nothing', async () => {
    const run = () => promisify(execFile)(process.execPath, [join(here, 'prepare.js')], { cwd: here });
    await run();
    const before = snapshot(MODELS_DIR);
    const again = await run();
    expect(again.stdout).toMatch(
      /^Up to date: 10 test images in .*\nUp to date: the model repository in .*models\/\n$/,
    );
    expect(snapshot(MODELS_DIR)).toEqual(before);
  }, 30_000);

  test('the batching-off variant has max_batch_size 1, no dynamic_batching, and one crop a call', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ocr-repo-'));
    try {
      prepareRepository(dir, { batching: false });
      for (const model of ['ocr-detect', 'ocr-recognize']) {
        const config = readFileSync(join(dir, model, 'config.pbtxt'), 'utf8');
        expect(config).toContain('max_batch_size: 1\n');
        expect(config).not.toContain('dynamic_batching');
      }
      expect(readFileSync(join(dir, 'ocr/config.pbtxt'), 'utf8')).toContain(
        'key: "recognize_rows", value: { string_value: "1" }',
      );
      expect(() => prepareRepository(dir, { recRows: 9, recMaxBatch: 8 })).toThrow(
        'Expected `recRows` (9) to be at most `recMaxBatch` (8)',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the ocr model with a stand-in for the server (onnxruntime-node in this thread)', () => {
  let sessions: Record<string, ort.InferenceSession>;
  /** Every call the model made: the model and its input's shape. */
  const calls: { name: string; shape: number[] }[] = [];
  const models = {
    async infer(name: string, inputs: Record<string, { datatype: string; shape: number[]; data: unknown }>) {
      const session = sessions[name] as ort.InferenceSession;
      const x = inputs.x as { shape: number[]; data: Float32Array };
      calls.push({ name, shape: x.shape });
      const outputs = await session.run({ x: new ort.Tensor('float32', x.data, x.shape) });
      const output = outputs[session.outputNames[0] as string] as ort.Tensor;
      return { [session.outputNames[0] as string]: { datatype: 'FP32', shape: [...output.dims], data: output.data } };
    },
  };

  beforeAll(async () => {
    sessions = {
      'ocr-detect': await ort.InferenceSession.create(MODEL_FILES.detector),
      'ocr-recognize': await ort.InferenceSession.create(MODEL_FILES.recognizer),
    };
  });
  afterAll(async () => {
    for (const session of Object.values(sessions ?? {})) await session.release();
  });

  const request = (bytes: Uint8Array) => ({ inputs: { image: { datatype: 'BYTES', shape: [1], data: [bytes] } } });
  const config = (rows: string) => ({ parameters: { binary: 'true', recognize_rows: rows } });

  test('answers every test image as the reference pipeline does, one ocr-recognize call per crop', async () => {
    const ctx = await context(config('1'), { models });
    calls.length = 0;
    const answers = await handler(
      images.map((image) => request(image.bytes)),
      ctx,
    );
    answers.forEach((answer, i) => {
      const { text, boxes } = answer as Answer;
      expect(text.shape).toEqual([text.data.length]);
      expectReference(i, text.data, boxes.data, boxes.shape);
    });
    expect(calls.filter((c) => c.name === 'ocr-detect')).toHaveLength(images.length);
    const recognize = calls.filter((c) => c.name === 'ocr-recognize');
    expect(recognize.every((c) => c.shape[0] === 1 && c.shape[1] === 3 && c.shape[2] === 48)).toBe(true);
    // Every line the reference kept was one crop (a crop below dropScore would be one more).
    expect(recognize.length).toBe(reference.reduce((sum, r) => sum + r.text.length, 0));
  }, 60_000);

  test('recognize_rows 4: the crops of one bucket go in calls of at most 4, with the same answers', async () => {
    const ctx = await context(config('4'), { models });
    calls.length = 0;
    const letter = images.findIndex((image) => image.file.startsWith('letter'));
    const [answer] = await handler([request((images[letter] as { bytes: Buffer }).bytes)], ctx);
    const { text, boxes } = answer as Answer;
    expectReference(letter, text.data, boxes.data, boxes.shape);
    const rows = calls.filter((c) => c.name === 'ocr-recognize').map((c) => c.shape[0] as number);
    expect(Math.max(...rows)).toBeLessThanOrEqual(4);
    expect(Math.max(...rows)).toBeGreaterThan(1);
    expect(rows.reduce((a, b) => a + b, 0)).toBe(reference[letter]?.text.length);
  }, 30_000);

  test('a body that is not a PNG or JPEG fails that request alone, as a 400 with ERR_OCR_IMAGE', async () => {
    const ctx = await context(config('1'), { models });
    const [bad, good] = await handler(
      [request(Buffer.from('GIF89a not an image')), request(images[0]?.bytes as Buffer)],
      ctx,
    );
    expect(bad).toBeInstanceOf(Error);
    expect(bad).toMatchObject({
      message: 'image: expected the bytes of a PNG or JPEG file',
      code: 'ERR_OCR_IMAGE',
      status: 400,
    });
    expect((good as { text: { data: string[] } }).text.data).toEqual(reference[0]?.text);
  });

  test('context() refuses a config without binary BYTES, a bad recognize_rows, and no models handle', async () => {
    await expect(context({ parameters: {} }, { models })).rejects.toThrow(/parameters \{ key: "binary"/);
    await expect(context(config('0'), { models })).rejects.toThrow(
      'Expected `recognize_rows` to be an integer from 1 to 1024, got `0`',
    );
    await expect(context(config('1'))).rejects.toThrow(/needs the server's `models` handle/);
  });
});

describe('served: batched-fn serve --model-repository (prepare.js) on 127.0.0.1', () => {
  let dir: string;
  let server: RunningServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ocr-served-'));
    // The shipped settings but a 1 s recognizer delay: with the shipped 4 ms a crop runs alone whenever the
    // recognizer keeps up with the detector, which a busy CI machine decides, and the "share runs" checks below
    // would depend on it. A 1 s delay makes crops of images in flight together meet in one run.
    prepareRepository(dir, { recDelayUs: 1_000_000 });
    server = await startServer({ modelRepository: dir, host: '127.0.0.1', port: 0, grpcPort: 0, threads: 1 });
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  /** The binary extension: a JSON header, then the image as one BYTES element (rest-body.mjs). */
  async function inferRest(bytes: Uint8Array): Promise<{ status: number; json: RestAnswer }> {
    const { header, body } = binaryBody(bytes);
    const response = await fetch(`${server.url}/v2/models/ocr/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': `${header}` },
      body,
    });
    return { status: response.status, json: (await response.json()) as RestAnswer };
  }

  /** A client generated from the server's own .proto, as a KServe or Triton user's would be. */
  function grpcClient() {
    const pkg = loadPackageDefinition(loadSync(PROTO_PATH, PROTO_OPTIONS)) as unknown as {
      inference: {
        GRPCInferenceService: new (
          address: string,
          creds: ReturnType<typeof credentials.createInsecure>,
        ) => GrpcService;
      };
    };
    const address = (server.grpcUrl as string).replace('grpc://', '');
    const service = new pkg.inference.GRPCInferenceService(address, credentials.createInsecure());
    return {
      infer: (request: object) =>
        new Promise<GrpcAnswer>((resolve, reject) =>
          service.ModelInfer(request, (error, answer) =>
            error === null ? resolve(answer as GrpcAnswer) : reject(error),
          ),
        ),
      close: () => service.close(),
    };
  }

  async function counts(model: string): Promise<{ inferences: number; executions: number }> {
    const answer = (await (await fetch(`${server.url}/v2/models/${model}/stats`)).json()) as {
      model_stats: { inference_count: number; execution_count: number }[];
    };
    const stats = answer.model_stats[0];
    return { inferences: Number(stats?.inference_count), executions: Number(stats?.execution_count) };
  }

  test('the repository serves ocr (JS, no batch dimension) beside ocr-detect and ocr-recognize', async () => {
    const index = await (await fetch(`${server.url}/v2/repository/index`, { method: 'POST' })).json();
    expect(index).toEqual(
      ['ocr', 'ocr-detect', 'ocr-recognize'].map((name) => ({ name, version: '1', state: 'READY', reason: '' })),
    );
    const config = await (await fetch(`${server.url}/v2/models/ocr/config`)).json();
    expect(config).toMatchObject({ max_batch_size: 0, backend: 'js' });
  });

  test('REST binary: all test images at once get the reference lines; crops of several images share runs', async () => {
    const before = await counts('ocr-recognize');
    const answers = await Promise.all(images.map((image) => inferRest(image.bytes)));
    answers.forEach(({ status, json }, i) => {
      expect(status, JSON.stringify(json)).toBe(200);
      const [text, boxes] = json.outputs as [RestTensor<string>, RestTensor<number>];
      expect(text).toMatchObject({ name: 'text', datatype: 'BYTES', shape: [text.data.length] });
      expect(boxes).toMatchObject({ name: 'boxes', datatype: 'FP32' });
      expectReference(i, text.data, boxes.data, boxes.shape);
    });
    const after = await counts('ocr-recognize');
    const crops = reference.reduce((sum, r) => sum + r.text.length, 0);
    // One inference per crop (one crop a call), and fewer runs than crops: crops of several images shared a run.
    expect(after.inferences - before.inferences).toBe(crops);
    expect(after.executions - before.executions).toBeLessThan(crops);
  }, 60_000);

  test('one-line images sent together share ocr-recognize runs: 16 images, 16 crops, fewer than 16 runs', async () => {
    const one = images.findIndex((image) => image.file.startsWith('total-'));
    expect(reference[one]?.text).toHaveLength(1);
    const before = await counts('ocr-recognize');
    const answers = await Promise.all(
      Array.from({ length: 16 }, () => inferRest((images[one] as { bytes: Buffer }).bytes)),
    );
    for (const { status, json } of answers) {
      expect(status).toBe(200);
      expect(json.outputs[0]?.data).toEqual(reference[one]?.text);
    }
    const after = await counts('ocr-recognize');
    // Each image has one crop: a run of more than one crop holds crops of different images.
    expect(after.inferences - before.inferences).toBe(16);
    expect(after.executions - before.executions).toBeLessThan(16);
  }, 60_000);

  test('gRPC: raw_input_contents in, raw_output_contents out, the reference lines', async () => {
    const client = grpcClient();
    try {
      const answers = await Promise.all(
        images.map((image) => {
          const length = Buffer.alloc(4);
          length.writeUInt32LE(image.bytes.length);
          return client.infer({
            model_name: 'ocr',
            inputs: [{ name: 'image', datatype: 'BYTES', shape: [1] }],
            raw_input_contents: [Buffer.concat([length, image.bytes])],
          });
        }),
      );
      answers.forEach((answer, i) => {
        const names = answer.outputs.map((o) => o.name);
        const textRaw = answer.raw_output_contents[names.indexOf('text')] as Buffer;
        const text: string[] = [];
        for (let at = 0; at < textRaw.length; ) {
          const size = textRaw.readUInt32LE(at);
          text.push(textRaw.subarray(at + 4, at + 4 + size).toString('utf8'));
          at += 4 + size;
        }
        const boxes = answer.outputs[names.indexOf('boxes')];
        const data = new Float32Array(Uint8Array.from(answer.raw_output_contents[names.indexOf('boxes')] ?? []).buffer);
        expectReference(i, text, data, (boxes?.shape ?? []).map(Number));
      });
    } finally {
      client.close();
    }
  }, 60_000);

  test('a body that is not a PNG or JPEG is a 400 on REST and INVALID_ARGUMENT on gRPC, with the reason', async () => {
    const notImage = Buffer.from('%PDF-1.7 not an image');
    expect(await inferRest(notImage)).toEqual({
      status: 400,
      json: { error: 'image: expected the bytes of a PNG or JPEG file' },
    });
    const truncated = (images[0] as { bytes: Buffer }).bytes.subarray(0, 64);
    const cut = await inferRest(truncated);
    expect(cut.status).toBe(400);
    expect(cut.json.error).toMatch(/^image: cannot decode this PNG \(/);
    const client = grpcClient();
    try {
      const length = Buffer.alloc(4);
      length.writeUInt32LE(notImage.length);
      const refused = client.infer({
        model_name: 'ocr',
        inputs: [{ name: 'image', datatype: 'BYTES', shape: [1] }],
        raw_input_contents: [Buffer.concat([length, notImage])],
      });
      await expect(refused).rejects.toMatchObject({
        code: 3,
        details: 'image: expected the bytes of a PNG or JPEG file',
      });
    } finally {
      client.close();
    }
  });
});
