import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { scratchDir } from './scratch.js';

// Ensembles served for real: two JS models and a third that adds, an ensemble over them in Triton's
// layout (config.pbtxt and an empty version folder) and one in ours (config.json), answered as the
// steps answer by hand over REST; READY only while their steps are; counted in the statistics,
// the ensemble and each step.

let server: RunningServer;
let url = '';

const jsModel = (inputs: string[], output: string, body: string): string => `
export const inputs = ${JSON.stringify(inputs.map((name) => ({ name, datatype: 'FP32', shape: [-1, 2] })))};
export const outputs = [{ name: '${output}', datatype: 'FP32', shape: [-1, 2] }];
export function handler(requests) {
  return requests.map((r) => ({ ${output}: { data: Float32Array.from(r.inputs.${inputs[0]}.data, (v, i) => ${body}) } }));
}
`;

const ENSEMBLE = `platform: "ensemble"
max_batch_size: 8
input [ { name: "ens_in" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "ens_out" data_type: TYPE_FP32 dims: [ 2 ] } ]
ensemble_scheduling {
  step [
    { model_name: "double" model_version: -1 input_map { key: "x" value: "ens_in" } output_map { key: "y" value: "doubled" } },
    { model_name: "plus" model_version: -1 input_map { key: "x" value: "ens_in" } output_map { key: "y" value: "plussed" } },
    {
      model_name: "sum"
      model_version: -1
      input_map [ { key: "a" value: "doubled" }, { key: "b" value: "plussed" } ]
      output_map { key: "z" value: "ens_out" }
    }
  ]
}
`;

/** The same flow's first two steps in our layout, in Triton's field names as JSON: ens_in → double → plus. */
const CHAIN = {
  platform: 'ensemble',
  max_batch_size: 8,
  input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [2] }],
  output: [{ name: 'out', data_type: 'TYPE_FP32', dims: [2] }],
  ensemble_scheduling: {
    step: [
      { model_name: 'double', model_version: -1, input_map: { x: 'x' }, output_map: { y: 'tmp' } },
      { model_name: 'plus', model_version: -1, input_map: { x: 'tmp' }, output_map: { y: 'out' } },
    ],
  },
};

beforeAll(async () => {
  const repo = scratchDir('bfn-ensemble-server-');
  const put = (path: string, content: string): void => {
    mkdirSync(join(repo, path, '..'), { recursive: true });
    writeFileSync(join(repo, path), content);
  };
  put('double/model.mjs', jsModel(['x'], 'y', 'v * 2'));
  put('plus/model.mjs', jsModel(['x'], 'y', 'v + 10'));
  put('sum/model.mjs', jsModel(['a', 'b'], 'z', 'v + r.inputs.b.data[i]'));
  for (const name of ['double', 'plus', 'sum']) put(`${name}/config.json`, JSON.stringify({ maxDelay: 0 }));
  put(
    'picky/model.mjs',
    `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }];
export function handler(requests) {
  return requests.map((r) =>
    r.inputs.x.data[0] === 999
      ? Object.assign(new Error('999 is not a number here'), { status: 422 })
      : { y: { data: Float32Array.from(r.inputs.x.data) } },
  );
}
`,
  );
  put(
    'viapicky/config.json',
    JSON.stringify({
      ...CHAIN,
      ensemble_scheduling: { step: [{ model_name: 'picky', input_map: { x: 'x' }, output_map: { y: 'out' } }] },
    }),
  );
  // A step that reads the request's parameters: y = x * scale (1 without one).
  put(
    'scaled/model.mjs',
    `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 2] }];
export function handler(requests) {
  return requests.map((r) => ({ y: { data: Float32Array.from(r.inputs.x.data, (v) => v * (r.parameters.scale ?? 1)) } }));
}
`,
  );
  put('scaled/config.json', JSON.stringify({ maxDelay: 0 }));
  put(
    'scaler/config.json',
    JSON.stringify({
      ...CHAIN,
      ensemble_scheduling: {
        step: [
          { model_name: 'double', input_map: { x: 'x' }, output_map: { y: 'tmp' } },
          { model_name: 'scaled', input_map: { x: 'tmp' }, output_map: { y: 'out' } },
        ],
      },
    }),
  );
  put('ens/config.pbtxt', ENSEMBLE);
  mkdirSync(join(repo, 'ens', '1'));
  put('chain/config.json', JSON.stringify(CHAIN));
  server = await startServer({
    modelRepository: repo,
    modelControl: 'explicit',
    loadModel: '*',
    port: 0,
    host: '127.0.0.1',
    grpcPort: 0,
  });
  url = server.url;
});
afterAll(async () => {
  await server?.close();
});

const infer = async (model: string, inputs: { name: string; shape: number[]; data: number[] }[]) => {
  const response = await fetch(`${url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: inputs.map((input) => ({ ...input, datatype: 'FP32' })) }),
  });
  return { status: response.status, body: (await response.json()) as any };
};
const dataOf = (answer: { body: any }): number[] => answer.body.outputs[0].data;
const stats = async (model: string) => {
  const body = (await (await fetch(`${url}/v2/models/${model}/stats`)).json()) as any;
  const s = body.model_stats[0];
  return {
    success: s.inference_stats.success.count,
    fail: s.inference_stats.fail.count,
    inferences: s.inference_count,
    executions: s.execution_count,
  };
};
const ready = async (model: string) => (await fetch(`${url}/v2/models/${model}/ready`)).status;
const index = async () =>
  Object.fromEntries(
    ((await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as any[]).map((m) => [
      m.name,
      [m.state, m.reason],
    ]),
  );

test('the answers equal running the steps by hand over REST, in both layouts; metadata and config say ensemble', async () => {
  expect(await index()).toMatchObject({ ens: ['READY', ''], chain: ['READY', ''] });
  for (const [shape, x] of [
    [
      [1, 2],
      [1, 2],
    ],
    [
      [2, 2],
      [3, -4, 0.5, 8],
    ],
  ] as const) {
    const ens = await infer('ens', [{ name: 'ens_in', shape: [...shape], data: [...x] }]);
    expect(ens.status).toBe(200);
    const doubled = dataOf(await infer('double', [{ name: 'x', shape: [...shape], data: [...x] }]));
    const plussed = dataOf(await infer('plus', [{ name: 'x', shape: [...shape], data: [...x] }]));
    const byHand = await infer('sum', [
      { name: 'a', shape: [...shape], data: doubled },
      { name: 'b', shape: [...shape], data: plussed },
    ]);
    expect(ens.body.outputs).toEqual([{ name: 'ens_out', datatype: 'FP32', shape, data: dataOf(byHand) }]);
    const chain = await infer('chain', [{ name: 'x', shape: [...shape], data: [...x] }]);
    const chainByHand = await infer('plus', [{ name: 'x', shape: [...shape], data: doubled }]);
    expect(chain.body.outputs).toEqual([{ name: 'out', datatype: 'FP32', shape, data: dataOf(chainByHand) }]);
  }
  const metadata = (await (await fetch(`${url}/v2/models/ens`)).json()) as any;
  expect(metadata).toEqual({
    name: 'ens',
    versions: ['1'],
    platform: 'ensemble',
    inputs: [{ name: 'ens_in', datatype: 'FP32', shape: [-1, 2] }],
    outputs: [{ name: 'ens_out', datatype: 'FP32', shape: [-1, 2] }],
  });
  const config = (await (await fetch(`${url}/v2/models/ens/config`)).json()) as any;
  expect(config).toMatchObject({
    name: 'ens',
    platform: 'ensemble',
    max_batch_size: 8,
    input: [{ name: 'ens_in', data_type: 'TYPE_FP32', dims: [2] }],
    output: [{ name: 'ens_out', data_type: 'TYPE_FP32', dims: [2] }],
    ensemble_scheduling: {
      step: [
        { model_name: 'double', model_version: -1, input_map: { x: 'ens_in' }, output_map: { y: 'doubled' } },
        { model_name: 'plus', model_version: -1, input_map: { x: 'ens_in' }, output_map: { y: 'plussed' } },
        {
          model_name: 'sum',
          model_version: -1,
          input_map: { a: 'doubled', b: 'plussed' },
          output_map: { z: 'ens_out' },
        },
      ],
    },
  });
  expect(config.dynamic_batching).toBeUndefined();
  // gRPC ModelConfig: the same message through Triton's model_config.proto.
  const client = grpcClient(server.grpcUrl as string);
  try {
    const answer = (await client.call('ModelConfig', { name: 'ens' })).config;
    expect(answer.platform).toBe('ensemble');
    expect(answer.ensemble_scheduling.step.map((step: any) => [step.model_name, String(step.model_version)])).toEqual([
      ['double', '-1'],
      ['plus', '-1'],
      ['sum', '-1'],
    ]);
    expect(answer.ensemble_scheduling.step[2].input_map).toEqual({ a: 'doubled', b: 'plussed' });
  } finally {
    client.close();
  }
});

test('the statistics count the ensemble and each step, exactly', async () => {
  const before = {
    ens: await stats('ens'),
    double: await stats('double'),
    plus: await stats('plus'),
    sum: await stats('sum'),
  };
  // Requests one after the other (each step's model batches nothing else): rows 1, 2, 1.
  for (const rows of [1, 2, 1])
    expect((await infer('ens', [{ name: 'ens_in', shape: [rows, 2], data: new Array(rows * 2).fill(1) }])).status).toBe(
      200,
    );
  // A request the ensemble refuses at decoding (a wrong shape) fails there, and no step is called.
  expect((await infer('ens', [{ name: 'ens_in', shape: [1, 3], data: [1, 2, 3] }])).status).toBe(400);
  const diff = async (model: keyof typeof before) => {
    const now = await stats(model);
    const was = before[model];
    return {
      success: now.success - was.success,
      fail: now.fail - was.fail,
      inferences: now.inferences - was.inferences,
      executions: now.executions - was.executions,
    };
  };
  expect(await diff('ens')).toEqual({ success: 3, fail: 1, inferences: 4, executions: 3 });
  for (const step of ['double', 'plus', 'sum'] as const)
    expect(await diff(step)).toEqual({ success: 3, fail: 0, inferences: 4, executions: 3 });
});

test('an ensemble is READY only while its steps are: unloading one makes it UNAVAILABLE with the reason, loading it brings it back', async () => {
  const unload = await fetch(`${url}/v2/repository/models/plus/unload`, { method: 'POST' });
  expect(unload.status).toBe(200);
  expect(await ready('ens')).toBe(503);
  expect(await ready('chain')).toBe(503);
  const states = await index();
  expect(states.plus).toEqual(['UNAVAILABLE', 'unloaded']);
  expect(states.ens).toEqual(['UNAVAILABLE', '`plus`, which it calls, is UNAVAILABLE (unloaded)']);
  expect(states.chain).toEqual(['UNAVAILABLE', '`plus`, which it calls, is UNAVAILABLE (unloaded)']);
  const refused = await infer('ens', [{ name: 'ens_in', shape: [1, 2], data: [1, 2] }]);
  expect(refused.status).toBe(503);
  expect(refused.body.error).toBe(
    "Request for unknown model: 'ens' has no available versions (it is UNAVAILABLE: `plus`, which it calls, is UNAVAILABLE (unloaded))",
  );
  // The steps that stay are served on their own meanwhile.
  expect(await ready('double')).toBe(200);
  const load = await fetch(`${url}/v2/repository/models/plus/load`, { method: 'POST' });
  expect(load.status).toBe(200);
  expect(await ready('ens')).toBe(200);
  expect(await ready('chain')).toBe(200);
  expect((await index()).ens).toEqual(['READY', '']);
  expect(dataOf(await infer('ens', [{ name: 'ens_in', shape: [1, 2], data: [1, 2] }]))).toEqual([13, 16]);
});

test("a step's failure is the request's: its status kept and the step named", async () => {
  expect(dataOf(await infer('viapicky', [{ name: 'x', shape: [1, 2], data: [1, 2] }]))).toEqual([1, 2]);
  // picky answers 999 with its own 422: the ensemble's client reads that status, and which step said it.
  const bad = await infer('viapicky', [{ name: 'x', shape: [1, 2], data: [999, 2] }]);
  expect(bad).toEqual({ status: 422, body: { error: 'ensemble step 0 (`picky`) failed: 999 is not a number here' } });
});

test("an ensemble request's parameters reach every step, as Triton forwards them (each request its own)", async () => {
  const scaled = async (parameters: Record<string, unknown> | undefined, x: number[]) => {
    const response = await fetch(`${url}/v2/models/scaler/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'x', shape: [1, 2], datatype: 'FP32', data: x }],
        ...(parameters === undefined ? {} : { parameters }),
      }),
    });
    expect(response.status).toBe(200);
    return ((await response.json()) as any).outputs[0].data as number[];
  };
  // Requests in flight together, with different parameters: each step request carries its own.
  expect(
    await Promise.all([scaled({ scale: 3 }, [1, 2]), scaled({ scale: -1 }, [1, 2]), scaled(undefined, [1, 2])]),
  ).toEqual([
    [6, 12],
    [-2, -4],
    [2, 4],
  ]);
});
