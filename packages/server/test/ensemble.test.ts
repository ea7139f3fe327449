import { expect, test } from 'vitest';
import type { BatchInfo } from 'batched-fn';
import { createEnsembleModel } from '../dist/formats/ensemble.js';
import type { EnsembleStep } from '../dist/model/ensemble-step.js';
import type { ModelCallOptions, ModelCalls } from '../dist/model/model-calls.js';
import type { InferItem, InferResult, Tensor } from '../dist/model/tensor.js';

// An ensemble's data flow with a recording ModelCalls: which step is called when, with what, and
// how its answer or failure becomes the request's. No timing: order is read from the calls made.

interface Call {
  name: string;
  inputs: Record<string, Tensor>;
  options: ModelCallOptions;
  resolve: (result: InferResult) => void;
  reject: (error: unknown) => void;
}

/** Calls held until the test answers them. */
function heldCalls(): { calls: ModelCalls; made: Call[]; next: (n: number) => Promise<void> } {
  const made: Call[] = [];
  const waiters: (() => void)[] = [];
  const calls: ModelCalls = {
    infer: (name, inputs, options = {}) =>
      new Promise<InferResult>((resolve, reject) => {
        made.push({ name, inputs, options, resolve, reject });
        for (const wake of waiters.splice(0)) wake();
      }),
    generate: async function* () {},
  };
  const next = async (n: number): Promise<void> => {
    while (made.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  return { calls, made, next };
}

const f32 = (...values: number[]): Tensor => ({
  datatype: 'FP32',
  shape: [1, values.length],
  data: Float32Array.from(values),
});
const values = (tensor: Tensor | undefined): number[] => Array.from(tensor?.data as Float32Array);
const item = (tensor: Tensor, extra: Partial<InferItem> = {}): InferItem => ({
  rows: 1,
  inputs: { ens_in: tensor },
  ...extra,
});

/** ens_in → b (doubles) and c (adds 1), independent; d adds their answers into ens_out. */
const DIAMOND: EnsembleStep[] = [
  { model_name: 'b', model_version: -1, input_map: { X: 'ens_in' }, output_map: { Y: 'tb' } },
  { model_name: 'c', model_version: 3, input_map: { X: 'ens_in' }, output_map: { Y: 'tc' } },
  { model_name: 'd', model_version: -1, input_map: { L: 'tb', R: 'tc' }, output_map: { S: 'ens_out' } },
];
const SIGNATURE = {
  inputs: [{ name: 'ens_in', datatype: 'FP32' as const, shape: [-1, 2] }],
  outputs: [{ name: 'ens_out', datatype: 'FP32' as const, shape: [-1, 2] }],
};

function diamond(calls: ModelCalls, onBatch?: (info: BatchInfo) => void) {
  return createEnsembleModel({
    name: 'ens',
    maxBatchSize: 4,
    signature: SIGNATURE,
    steps: DIAMOND,
    calls,
    ...(onBatch === undefined ? {} : { onBatch }),
  });
}

/** The steps' models, as plain functions, for answering calls and for running the steps by hand. */
const MODELS: Record<string, (inputs: Record<string, Tensor>) => InferResult> = {
  b: ({ X }) => ({ Y: f32(...values(X).map((v) => v * 2)) }),
  c: ({ X }) => ({ Y: f32(...values(X).map((v) => v + 1)) }),
  d: ({ L, R }) => ({ S: f32(...values(L).map((v, i) => v + (values(R)[i] as number))) }),
};

test('independent steps run at once: both are called before either answers; the step after them waits for both', async () => {
  const { calls, made, next } = heldCalls();
  const model = diamond(calls);
  const answer = model.infer(item(f32(1, 2)), {});
  await next(2);
  // b and c are both in flight, neither answered; d has not been called.
  expect(made.map((c) => c.name)).toEqual(['b', 'c']);
  expect(made[1]?.options.version).toBe('3');
  expect(made[0]?.options.version).toBeUndefined();
  made[0]?.resolve(MODELS.b?.(made[0].inputs) as InferResult);
  await new Promise((resolve) => setImmediate(resolve));
  expect(made.map((c) => c.name)).toEqual(['b', 'c']);
  made[1]?.resolve(MODELS.c?.(made[1].inputs) as InferResult);
  await next(3);
  expect(made[2]?.name).toBe('d');
  expect(values(made[2]?.inputs.L)).toEqual([2, 4]);
  expect(values(made[2]?.inputs.R)).toEqual([2, 3]);
  made[2]?.resolve(MODELS.d?.(made[2].inputs) as InferResult);
  expect(values((await answer).ens_out)).toEqual([4, 7]);
  await model.batcher.close();
});

test('the answer equals running the steps by hand, and a tensor read by two steps reaches both whole though each call may take its buffers', async () => {
  const seen: string[] = [];
  const calls: ModelCalls = {
    infer: async (name, inputs) => {
      seen.push(name);
      // As a step in a worker thread: its inputs' buffers are transferred away (detached here).
      const moved = structuredClone(inputs, {
        transfer: Object.values(inputs).map((t) => (t.data as Float32Array).buffer as ArrayBuffer),
      });
      return (MODELS[name] as (i: Record<string, Tensor>) => InferResult)(moved);
    },
    generate: async function* () {},
  };
  const model = diamond(calls);
  for (const input of [
    [1, 2],
    [-3, 0.5],
  ]) {
    const b = MODELS.b?.({ X: f32(...input) }) as InferResult;
    const c = MODELS.c?.({ X: f32(...input) }) as InferResult;
    const byHand = MODELS.d?.({ L: b.Y as Tensor, R: c.Y as Tensor }) as InferResult;
    const result = await model.infer(item(f32(...input)), {});
    expect(values(result.ens_out)).toEqual(values(byHand.S));
    expect(result.ens_out?.shape).toEqual([1, 2]);
  }
  expect(seen).toEqual(['b', 'c', 'd', 'b', 'c', 'd']);
  await model.batcher.close();
});

test("a step's failure fails the request with its error, step named and status kept; the steps in flight are aborted", async () => {
  const { calls, made, next } = heldCalls();
  const batches: BatchInfo[] = [];
  const model = diamond(calls, (info) => batches.push(info));
  const answer = model.infer(item(f32(1, 2)), {});
  answer.catch(() => {});
  await next(2);
  class StepError extends Error {
    override name = 'StepError';
    readonly protocolStatus = 'invalid-argument';
    readonly retryAfter = 3;
  }
  const original = new StepError('input `X` is bad');
  made[1]?.reject(original);
  const error = (await answer.then(
    () => undefined,
    (e: unknown) => e,
  )) as StepError & { cause: unknown };
  expect(error).toBeInstanceOf(StepError);
  expect(error.message).toBe('ensemble step 1 (`c`) failed: input `X` is bad');
  expect({ status: error.protocolStatus, retryAfter: error.retryAfter, cause: error.cause }).toEqual({
    status: 'invalid-argument',
    retryAfter: 3,
    cause: original,
  });
  // The step's own error is untouched: its other callers read their own message.
  expect(original.message).toBe('input `X` is bad');
  // b, still in flight, was given up; d was never called.
  expect(made[0]?.options.signal?.aborted).toBe(true);
  expect(made.map((c) => c.name)).toEqual(['b', 'c']);
  // Counted as a failed run, not an execution (the statistics count rows of executions only).
  expect(batches.map((b) => ({ rows: b.rows, items: b.items, ok: b.ok }))).toEqual([{ rows: 1, items: 1, ok: false }]);
  await model.batcher.close();
});

test('steps inherit the request: the chain with the ensemble added, its priority level, what is left of its time, its trace', async () => {
  const { calls, made, next } = heldCalls();
  const model = diamond(calls);
  const trace = { span: 'request' };
  const answer = model.infer(item(f32(1, 2), { caller: { chain: ['outer'] } }), {
    level: 2,
    priority: 7,
    timeout: 5_000,
    trace,
  });
  await next(2);
  for (const call of made) {
    expect(call.options.chain).toEqual(['outer', 'ens']);
    expect(call.options.priority).toBe(2);
    expect(call.options.trace).toBe(trace);
    expect(call.options.timeout).toBeGreaterThan(0);
    expect(call.options.timeout).toBeLessThanOrEqual(5_000);
  }
  for (const call of made) call.resolve((MODELS[call.name] as (i: Record<string, Tensor>) => InferResult)(call.inputs));
  await next(3);
  made[2]?.resolve((MODELS.d as (i: Record<string, Tensor>) => InferResult)(made[2].inputs));
  await answer;
  // Without a caller or a level: the chain is the ensemble alone, no priority, no timeout.
  const plain = model.infer(item(f32(1, 2)), {});
  await next(5);
  expect(made[3]?.options.chain).toEqual(['ens']);
  expect(made[3]?.options.priority).toBeUndefined();
  expect(made[3]?.options.timeout).toBeUndefined();
  for (const call of made.slice(3))
    call.resolve((MODELS[call.name] as (i: Record<string, Tensor>) => InferResult)(call.inputs));
  await next(6);
  made[5]?.resolve((MODELS.d as (i: Record<string, Tensor>) => InferResult)(made[5].inputs));
  await plain;
  await model.batcher.close();
});

test('a client that leaves aborts the steps in flight; the request fails with its reason', async () => {
  const { calls, made, next } = heldCalls();
  const model = diamond(calls);
  const client = new AbortController();
  const answer = model.infer(item(f32(1, 2)), { signal: client.signal });
  answer.catch(() => {});
  await next(2);
  const reason = new Error('client went away');
  client.abort(reason);
  await expect(answer).rejects.toBe(reason);
  expect(made.map((c) => c.options.signal?.aborted)).toEqual([true, true]);
  await model.batcher.close();
});

test('requests never share a run: each has its own flow, the statistics count its rows', async () => {
  const { calls, made, next } = heldCalls();
  const batches: BatchInfo[] = [];
  const model = diamond(calls, (info) => batches.push(info));
  const two: InferItem = {
    rows: 2,
    inputs: { ens_in: { datatype: 'FP32', shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) } },
  };
  const answers = [model.infer(two, {}), model.infer(item(f32(5, 6)), {})];
  // Both requests' first steps are in flight at once: the second did not wait behind the first.
  await next(4);
  expect(made.map((c) => c.name)).toEqual(['b', 'c', 'b', 'c']);
  // A step answering an output the ensemble declares otherwise fails its request, naming the step.
  for (const call of made.slice(0, 4))
    call.resolve({ Y: { ...call.inputs.X, data: (call.inputs.X as Tensor).data } as Tensor });
  await next(6);
  made[4]?.resolve({ S: { datatype: 'INT32', shape: [2, 2], data: Int32Array.of(1, 2, 3, 4) } });
  made[5]?.resolve({ S: f32(0, 0) });
  await expect(answers[0]).rejects.toThrow(
    'ensemble step 2 (`d`) failed: its output for `ens_out` is INT32, but the ensemble declares output `ens_out` as FP32',
  );
  expect(values((await answers[1])?.ens_out)).toEqual([0, 0]);
  expect(batches.map((b) => ({ items: b.items, rows: b.rows, ok: b.ok })).sort((a, b) => b.rows - a.rows)).toEqual([
    { items: 1, rows: 2, ok: false },
    { items: 1, rows: 1, ok: true },
  ]);
  await model.batcher.close();
});

test('a step answering without an output it maps fails the request, naming the step and the output', async () => {
  const { calls, made, next } = heldCalls();
  const model = diamond(calls);
  const answer = model.infer(item(f32(1, 2)), {});
  answer.catch(() => {});
  await next(2);
  made[0]?.resolve({ Z: f32(1, 1) });
  await expect(answer).rejects.toThrow('ensemble step 0 (`b`) failed: its answer has no output `Y` (mapped to `tb`)');
  expect(made[1]?.options.signal?.aborted).toBe(true);
  await model.batcher.close();
});

test('past its deadline a request fails with ERR_TIMEOUT and its run is freed, even if a step never answers', async () => {
  const { calls, made, next } = heldCalls();
  const model = diamond(calls);
  const answer = model.infer(item(f32(1, 2)), { timeout: 30 });
  answer.catch(() => {});
  await next(2);
  await expect(answer).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
  // close() drains running runs: it settles only because the run ended at the deadline.
  await model.batcher.close();
  expect(made.map((c) => c.options.signal?.aborted)).toEqual([true, true]);
});
