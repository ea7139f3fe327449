import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { afterEach, expect, test } from 'vitest';
import { ownedForTransfer } from '../src/formats/model-calls-wire.js';
import { RequestSignals, serveModelCalls } from '../src/formats/model-calls-host.js';
import type { ModelCallOptions, ModelCalls } from '../src/model/model-calls.js';
import type { InferResult, Tensor } from '../src/model/tensor.js';

// The main thread's side of a JS model's `models` calls: what it takes from the worker's port (anything:
// the port is the model's code's), and what it passes on to the server's models.
const open: MessagePort[] = [];
afterEach(() => {
  for (const port of open.splice(0)) port.close();
});

interface Seen {
  name: string;
  inputs: Record<string, Tensor>;
  options: ModelCallOptions;
}

function host(answer: (seen: Seen) => Promise<InferResult> = async () => ({})) {
  const seen: Seen[] = [];
  const calls: ModelCalls = {
    infer: (name, inputs, options = {}) => {
      seen.push({ name, inputs, options });
      return answer({ name, inputs, options });
    },
    generate: async function* () {},
  };
  const requests = new RequestSignals();
  const { port1, port2 } = new MessageChannel();
  open.push(port1, port2);
  serveModelCalls(port1, calls, { name: 'ocr', declared: undefined, requests });
  const answers: any[] = [];
  port2.on('message', (message) => answers.push(message));
  return { seen, answers, worker: port2, requests };
}

const x = (): Tensor => ({ datatype: 'FP32', shape: [1, 2], data: Float32Array.of(1, 2) });

test("a call goes on with the batch's chain (and this model), its trace, and the tighter of its timeout and deadline", async () => {
  const { seen, answers, worker } = host(async () => ({ y: x() }));
  const trace = { traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), traceFlags: 1 };
  worker.postMessage({
    type: 'infer',
    id: 1,
    model: 'det',
    inputs: { x: x() },
    options: { timeout: 5_000, priority: 2 },
    caller: { chain: ['pipeline', 'ocr'], deadline: Date.now() + 300, trace },
  });
  await expect.poll(() => answers.length).toBe(1);
  expect(seen).toHaveLength(1);
  const { options } = seen[0] as Seen;
  expect(options.chain).toEqual(['pipeline', 'ocr']);
  expect(options.trace).toEqual(trace);
  expect(options.priority).toBe(2);
  expect(options.timeout).toBeGreaterThan(200);
  expect(options.timeout).toBeLessThanOrEqual(300);
  expect(answers[0]).toMatchObject({ type: 'result', id: 1, outputs: { y: { datatype: 'FP32', shape: [1, 2] } } });
});

test('what is not a call is ignored; a call with bad parts is answered with the reason, never left waiting', async () => {
  const { seen, answers, worker } = host();
  for (const junk of [null, 7, 'infer', { type: 'infer' }, { type: 'nope', id: 3 }, { type: 'infer', id: -1 }])
    worker.postMessage(junk);
  worker.postMessage({ type: 'infer', id: 4, model: '', inputs: {} });
  worker.postMessage({
    type: 'infer',
    id: 5,
    model: 'det',
    inputs: { x: { datatype: 'FP99', shape: [1], data: [1] } },
  });
  worker.postMessage({
    type: 'infer',
    id: 6,
    model: 'det',
    inputs: { x: { datatype: 'FP32', shape: [-1], data: [] } },
  });
  worker.postMessage({ type: 'generate', id: 7, model: 'gen', request: { prompt: 'no text_input' } });
  await expect.poll(() => answers.length).toBe(4);
  expect(seen).toHaveLength(0);
  expect(answers.map((a) => [a.id, a.type, a.error.fields.status])).toEqual([
    [4, 'error', 400],
    [5, 'error', 400],
    [6, 'error', 400],
    [7, 'error', 400],
  ]);
  expect(answers[0].error.message).toBe('models call: the model to call must be named by a non-empty string');
});

test('a cancel gives the call up; the worker exiting gives up every call it left running', async () => {
  const signals: AbortSignal[] = [];
  const { worker } = host(
    ({ options }) =>
      new Promise((_resolve, reject) => {
        signals.push(options.signal as AbortSignal);
        options.signal?.addEventListener('abort', () => reject(options.signal?.reason));
      }),
  );
  worker.postMessage({ type: 'infer', id: 1, model: 'det', inputs: { x: x() } });
  worker.postMessage({ type: 'infer', id: 2, model: 'det', inputs: { x: x() } });
  await expect.poll(() => signals.length).toBe(2);
  worker.postMessage({ type: 'cancel', id: 1 });
  await expect.poll(() => signals[0]?.aborted).toBe(true);
  expect(signals[1]?.aborted).toBe(false);
  worker.close();
  await expect.poll(() => signals[1]?.aborted).toBe(true);
});

test('the calls of a batch are given up once every request they serve is, and not before', async () => {
  const signals: AbortSignal[] = [];
  const { worker, requests } = host(
    ({ options }) =>
      new Promise((_resolve, reject) => {
        signals.push(options.signal as AbortSignal);
        options.signal?.addEventListener('abort', () => reject(options.signal?.reason));
      }),
  );
  const a = new AbortController();
  const b = new AbortController();
  const ra = requests.register(a.signal);
  const rb = requests.register(b.signal);
  worker.postMessage({
    type: 'infer',
    id: 1,
    model: 'det',
    inputs: { x: x() },
    caller: { chain: [], origins: [ra.id, rb.id] },
  });
  await expect.poll(() => signals.length).toBe(1);
  a.abort();
  await new Promise((resolve) => setTimeout(resolve, 20));
  expect(signals[0]?.aborted).toBe(false);
  b.abort();
  expect(signals[0]?.aborted).toBe(true);
});

test("a caller's inputs move (a view of part of a buffer is copied once); answers are always copied once", () => {
  const batch = new Float32Array(8);
  const part = batch.subarray(2, 4);
  const whole = new Float32Array(4);
  const given = {
    part: { datatype: 'FP32', shape: [2], data: part },
    whole: { datatype: 'FP32', shape: [4], data: whole },
    text: { datatype: 'BYTES', shape: [2], data: [Uint8Array.of(1, 2), Uint8Array.of(3)] },
  } satisfies Record<string, Tensor>;
  // An answer's buffer may hold other answers (a batch's rows, one array answered to all): never moved.
  const answer = ownedForTransfer(given, 'always');
  expect(answer.tensors.whole?.data).not.toBe(whole);
  expect(answer.transfer).not.toContain(whole.buffer);
  const { tensors, transfer } = ownedForTransfer(given, 'shared');
  const part2 = tensors.part?.data as Float32Array;
  expect(part2.buffer).not.toBe(batch.buffer);
  expect(part2.buffer.byteLength).toBe(8);
  expect(tensors.whole?.data).toBe(whole);
  const text = tensors.text?.data as Uint8Array[];
  expect(text[0]?.buffer).toBe(text[1]?.buffer);
  expect(transfer).toHaveLength(3);
  expect(transfer).not.toContain(batch.buffer);
});
