import { afterAll, beforeAll, expect, test } from 'vitest';
import * as ort from 'onnxruntime-node';
import { type RunningServer, startServer } from '@batched-fn/server';
import { ocrClassifierPath, postJson } from './helpers.js';

// A real pretrained CNN shipped in an npm package: PaddleOCR's text-direction classifier.
const modelPath = ocrClassifierPath();
let server: RunningServer;
let session: ort.InferenceSession;

beforeAll(async () => {
  server = await startServer({ port: 0, model: modelPath, name: 'ocr-cls', maxBatchSize: 8, maxDelay: 5 });
  session = await ort.InferenceSession.create(modelPath);
});
afterAll(async () => {
  await server?.close();
  await session?.release();
});

const image = (seed: number): number[] =>
  Array.from({ length: 3 * 48 * 192 }, (_, i) => Math.sin(i * 0.01 * seed) * 0.5);

test('the pretrained CNN served over HTTP equals a direct run, alone and batched', async () => {
  const seeds = [1, 2, 3, 4];
  const responses = await Promise.all(
    seeds.map((seed) =>
      postJson(
        `${server.url}/v2/models/ocr-cls/infer`,
        JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3, 48, 192], datatype: 'FP32', data: image(seed) }] }),
      ),
    ),
  );
  for (const [i, response] of responses.entries()) {
    expect(response.status).toBe(200);
    const [output] = response.body.outputs;
    expect(output.shape).toEqual([1, 2]);
    const direct = await session.run({
      x: new ort.Tensor('float32', Float32Array.from(image(seeds[i] as number)), [1, 3, 48, 192]),
    });
    const expected = Array.from((direct['softmax_0.tmp_0'] as ort.Tensor).data as Float32Array);
    output.data.forEach((v: number, j: number) => {
      expect(v).toBeCloseTo(expected[j] as number, 4);
    });
    expect(output.data[0] + output.data[1]).toBeCloseTo(1, 4);
  }
});

test('images of different widths never share a session.run, and each is answered correctly', async () => {
  const widths = [96, 192, 96, 160, 192];
  const image = (w: number, seed: number) =>
    Array.from({ length: 3 * 48 * w }, (_, i) => Math.cos(i * 0.013 * seed) * 0.5);
  const responses = await Promise.all(
    widths.map((w, i) =>
      postJson(
        `${server.url}/v2/models/ocr-cls/infer`,
        JSON.stringify({ inputs: [{ name: 'x', shape: [1, 3, 48, w], datatype: 'FP32', data: image(w, i + 1) }] }),
      ),
    ),
  );
  for (const [i, response] of responses.entries()) {
    const w = widths[i] as number;
    expect(response.status).toBe(200);
    const direct = await session.run({
      x: new ort.Tensor('float32', Float32Array.from(image(w, i + 1)), [1, 3, 48, w]),
    });
    const expected = Array.from((direct['softmax_0.tmp_0'] as ort.Tensor).data as Float32Array);
    response.body.outputs[0].data.forEach((v: number, j: number) => {
      expect(v).toBeCloseTo(expected[j] as number, 4);
    });
  }
});

test('the CNN rejects an image with the wrong channel count', async () => {
  const response = await postJson(
    `${server.url}/v2/models/ocr-cls/infer`,
    JSON.stringify({
      inputs: [{ name: 'x', shape: [1, 1, 48, 192], datatype: 'FP32', data: image(1).slice(0, 48 * 192) }],
    }),
  );
  expect(response).toMatchObject({
    status: 400,
    body: { error: 'Input `x`: dimension 1 is 1, the model expects 3 (shape [-1,3,-1,-1])' },
  });
});
