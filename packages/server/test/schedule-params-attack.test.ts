import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { jsonRequest, postJson } from './helpers.js';
import { scratchDir } from './scratch.js';
import { messages } from './triton-helpers.js';

// An attack pass on three commits, as a Triton user sees them: REST generate's schedule-policy parameters and a
// generator's priority levels (9e1d4c9), ensembles forwarding their request's parameters and `models.infer(...,
// { parameters })` (36a7e38), and the batched_fn_held_sequences gauge (720a50d). Checked against Triton's published
// texts: the parameters extension (reserved: sequence_id, priority, timeout, sequence_start, sequence_end, headers,
// every `triton_` key: "not accessible in the Triton C-API"), the schedule-policy and generate extensions, core's
// ensemble scheduler (a step gets the request's priority, timeout, correlation id and its *custom* parameters) and
// tritonclient.

const ECHO = fileURLToPath(new URL('./fixtures/generators/echo/', import.meta.url));
const NORMALIZER = fileURLToPath(new URL('../../../examples/sequence-model/repository/normalizer/', import.meta.url));

let server: RunningServer;
let client: ReturnType<typeof grpcClient>;
let repo = '';

function put(path: string, content: string): void {
  mkdirSync(join(repo, path, '..'), { recursive: true });
  writeFileSync(join(repo, path), content);
}

const FOUR = "[{ name: 'x', datatype: 'FP32', shape: [-1, 4] }]";

/** A JS model whose handler answers each request with `body` (an async expression of `r` and `models`). */
const caller = (body: string): string => `
export const inputs = ${FOUR};
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }, { name: 'text', datatype: 'BYTES', shape: [-1, 1] }];
export async function context(config, { models }) { return { models }; }
export async function handler(requests, { models }) {
  return Promise.all(requests.map(async (r) => ${body}));
}`;

/** An ensemble (our layout, Triton's field names) of one step, x → `model` → its outputs. */
const oneStep = (model: string, output: { name: string; type: string }) =>
  JSON.stringify({
    platform: 'ensemble',
    max_batch_size: 8,
    input: [{ name: 'x', data_type: 'TYPE_FP32', dims: [2] }],
    output: [{ name: output.name, data_type: output.type, dims: output.type === 'TYPE_STRING' ? [1] : [2] }],
    ensemble_scheduling: {
      step: [
        { model_name: model, model_version: -1, input_map: { x: 'x' }, output_map: { [output.name]: output.name } },
      ],
    },
  });

beforeAll(async () => {
  repo = scratchDir('bfn-schedule-attack-');
  // `echo`: one sequence at a time, two levels, the default the HIGHEST (1): who waits is chosen by level.
  cpSync(ECHO, join(repo, 'echo'), { recursive: true });
  put(
    'echo/config.json',
    JSON.stringify({ maxActive: 1, maxTokens: 100, defaultMaxTokens: 50, priorityLevels: 2, defaultPriorityLevel: 1 }),
  );
  // `plain`: the same generator without levels.
  cpSync(ECHO, join(repo, 'plain'), { recursive: true });
  put('plain/config.json', JSON.stringify({ maxActive: 4, maxTokens: 100, defaultMaxTokens: 50 }));
  // `triecho`: the generator in Triton's layout, its levels in config.pbtxt.
  cpSync(join(ECHO, 'model.mjs'), join(repo, 'triecho', '1', 'model.mjs'), { recursive: true });
  put(
    'triecho/config.pbtxt',
    `backend: "js"
max_batch_size: 0
dynamic_batching { priority_levels: 2 default_priority_level: 1 }
`,
  );
  // `tridecoupled`: the same, as Triton's decoupled models (vLLM's, TensorRT-LLM's) declare themselves.
  cpSync(join(ECHO, 'model.mjs'), join(repo, 'tridecoupled', '1', 'model.mjs'), { recursive: true });
  put('tridecoupled/config.pbtxt', 'backend: "js"\nmax_batch_size: 0\nmodel_transaction_policy { decoupled: true }\n');
  // `seen`: answers the keys of the parameters it was given, sorted, comma-separated.
  put(
    'seen/model.mjs',
    `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }];
export const outputs = [{ name: 'keys', datatype: 'BYTES', shape: [-1, 1] }];
export function handler(requests) {
  return requests.map((r) => {
    const keys = Object.keys(r.parameters).sort().join(',');
    return { keys: { shape: [r.inputs.x.shape[0], 1], data: Array.from({ length: r.inputs.x.shape[0] }, () => keys) } };
  });
}`,
  );
  put('seen/config.json', JSON.stringify({ maxDelay: 0 }));
  put('seeing/config.json', oneStep('seen', { name: 'keys', type: 'TYPE_STRING' }));
  // `target`: y = x * parameters.scale (1 without one); the BLS callers below call it.
  put(
    'target/model.mjs',
    `export const inputs = ${FOUR};
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 4] }];
export function handler(requests) {
  return requests.map((r) => ({ y: { data: Float32Array.from(r.inputs.x.data, (v) => v * (r.parameters.scale ?? 1)) } }));
}`,
  );
  put('target/config.json', JSON.stringify({ maxDelay: 0, maxBatchSize: 16 }));
  const bls = (name: string, body: string) => {
    put(`${name}/model.mjs`, caller(body));
    put(`${name}/config.json`, JSON.stringify({ maxDelay: 0, maxBatchSize: 16 }));
  };
  const y = (call: string) =>
    `({ y: { data: (await ${call}).y.data }, text: { shape: [r.inputs.x.shape[0], 1], data: Array.from({ length: r.inputs.x.shape[0] }, () => '') } })`;
  bls('mapcaller', y("models.infer('target', { x: r.inputs.x }, { parameters: new Map([['scale', 3]]) })"));
  bls(
    'gettercaller',
    y(
      "models.infer('target', { x: r.inputs.x }, { parameters: { get scale() { throw new Error('the getter says no'); } } })",
    ),
  );
  const text = (request: string, options = '{}') => `(async () => {
    let text = '';
    for await (const chunk of models.generate('plain', ${request}, ${options})) text += chunk.text_output;
    return { y: { data: Float32Array.from(r.inputs.x.data) }, text: { shape: [r.inputs.x.shape[0], 1], data: Array.from({ length: r.inputs.x.shape[0] }, () => text) } };
  })()`;
  bls('genparams', text("{ text_input: 'abc', parameters: { priority: 1, timeout: 60000000 } }"));
  bls('genoptions', text("{ text_input: 'abc' }", '{ parameters: { upper: true } }'));
  // A stateful model, unloaded and loaded again below.
  cpSync(NORMALIZER, join(repo, 'norm'), { recursive: true });
  put(
    'norm/config.json',
    JSON.stringify({ workers: 1, maxDelay: 0, sequence_batching: { max_sequence_idle_microseconds: 600_000_000 } }),
  );
  server = await startServer({
    modelRepository: repo,
    modelControl: 'explicit',
    loadModel: '*',
    port: 0,
    host: '127.0.0.1',
    grpcPort: 0,
    dashboard: 'off',
    workers: 1,
  });
  client = grpcClient(server.grpcUrl as string);
}, 90_000);
afterAll(async () => {
  client?.close();
  await server?.close();
});

const generate = (model: string, parameters: Record<string, unknown>, text = 'abc') =>
  postJson(`${server.url}/v2/models/${model}/generate`, JSON.stringify({ text_input: text, parameters }));

const infer = (model: string, parameters: Record<string, unknown>, x: number[] = [1, 2]) =>
  postJson(`${server.url}/v2/models/${model}/infer`, jsonRequest('x', [1, x.length], 'FP32', x, { parameters }));

/** Resolves once the echo generator's stats say so (polled; the test's own timeout bounds it). */
async function until(holds: (stats: { active: number; waiting: number }) => boolean): Promise<void> {
  const stream = server.generators.find((g) => g.name === 'echo')?.generate;
  while (stream === undefined || !holds(stream.stats)) await new Promise((resolve) => setTimeout(resolve, 5));
}

interface StreamAnswer {
  error_message: string;
  infer_response: { raw_output_contents: Buffer[]; parameters: Record<string, { bool_param?: boolean }> };
}
const streamText = (answer: StreamAnswer): string | undefined => {
  const raw = answer.infer_response.raw_output_contents[0];
  return raw === undefined ? undefined : raw.subarray(4, 4 + raw.readUInt32LE(0)).toString();
};

/** One ModelStreamInfer request to `model`, read to its final response (or its error). */
async function grpcGenerate(model: string, parameters: Record<string, object>): Promise<StreamAnswer[]> {
  const stream = client.raw.ModelStreamInfer();
  const answers = messages<StreamAnswer>(stream);
  stream.write({
    model_name: model,
    id: 'q',
    inputs: [{ name: 'text_input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from('abc')] } }],
    parameters,
  });
  const read: StreamAnswer[] = [];
  for (;;) {
    const answer = await answers.next();
    read.push(answer);
    if (answer.error_message !== '' || answer.infer_response.parameters.triton_final_response?.bool_param === true)
      break;
  }
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
  return read;
}

// ---- 1. REST generate / gRPC generation / OpenAI: the schedule-policy parameters and the levels ----

test('an OpenAI request runs at the generator’s defaultPriorityLevel, as a REST generate without priority does', async () => {
  // echo: levels 1..2, default 1. A REST request at level 2 waits first; an OpenAI completion (no priority: level 1)
  // must join before it, as a REST generate without `priority` would.
  const finished: string[] = [];
  const track = async (name: string, response: Promise<Response>) => {
    expect((await response).status).toBe(200);
    finished.push(name);
  };
  const post = (path: string, body: unknown) =>
    fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const running = track(
    'running',
    post('/v2/models/echo/generate', { text_input: 'hold..', parameters: { delay: 100 } }),
  );
  await until((s) => s.active === 1);
  const low = track(
    'rest-level-2',
    post('/v2/models/echo/generate', { text_input: 'low', parameters: { priority: 2 } }),
  );
  await until((s) => s.waiting === 1);
  const openai = track('openai-default', post('/v1/completions', { model: 'echo', prompt: 'open', max_tokens: 10 }));
  await until((s) => s.waiting === 2);
  await Promise.all([running, low, openai]);
  expect(finished).toEqual(['running', 'openai-default', 'rest-level-2']);
});

test('tritonclient’s `triton_enable_empty_final_response` gives the empty final response (gRPC generation)', async () => {
  // tritonclient's async_stream_infer(..., enable_empty_final_response=True) sends this name (grpc/_client.py);
  // grpc/generation.ts reads only `enable_empty_final_response` and drops this one silently.
  const read = await grpcGenerate('plain', { triton_enable_empty_final_response: { bool_param: true } });
  expect(read.map(streamText)).toEqual(['a', 'b', 'c', undefined]);
});

test('REST generate treats Triton’s reserved sequence parameters as gRPC generation does (not a 400)', async () => {
  // The same request over gRPC is served (SERVER_PARAMETERS drops them); REST called them unknown sampling parameters.
  const reserved = { sequence_id: { uint64_param: '7' }, sequence_start: { bool_param: true } };
  expect((await grpcGenerate('plain', reserved)).map(streamText).join('')).toBe('abc');
  const rest = await generate('plain', { sequence_id: 7, sequence_start: true });
  expect(rest.body).toEqual({ model_name: 'plain', model_version: '1', text_output: 'abc' });
  expect(rest.status).toBe(200);
});

test('the generate extension’s own example parameter `stream` is not a 400 (gRPC ignores a `stream` input)', async () => {
  // docs/protocol/extension_generate.md: {"text_input": "client input", "parameters": {"stream": false, ...}}.
  const answer = await generate('plain', { stream: false });
  expect(answer.body).toEqual({ model_name: 'plain', model_version: '1', text_output: 'abc' });
});

test('REST generate: bad priority and timeout values are 400s naming the parameter; the edges are served', async () => {
  for (const priority of [-1, 1.5, '1', true, 2 ** 53, null]) {
    const answer = await generate('plain', { priority });
    expect([priority, answer.status]).toEqual([priority, 400]);
    expect(answer.body.error).toMatch(/^parameters\.priority must be an integer priority level from 0/);
  }
  for (const timeout of [-1, 1.5, '10', 2147483647001, false]) {
    const answer = await generate('plain', { timeout });
    expect([timeout, answer.status]).toEqual([timeout, 400]);
    expect(answer.body.error).toMatch(/^parameters\.timeout must be an integer number of microseconds from 0/);
  }
  // The largest level of a generator without levels, the longest timeout, 0 for both (the model's defaults).
  for (const parameters of [{ priority: 2 ** 53 - 1 }, { timeout: 2147483647000 }, { priority: 0, timeout: 0 }]) {
    const answer = await generate('plain', parameters);
    expect([parameters, answer.status, answer.body.text_output]).toEqual([parameters, 200, 'abc']);
  }
});

test('gRPC generation: a level the generator lacks is INVALID_ARGUMENT with REST’s words', async () => {
  const read = await grpcGenerate('echo', { priority: { uint64_param: '3' } });
  expect(read.map((a) => a.error_message)).toEqual([
    'parameters.priority is 3, but model `echo` has priority levels 1 to 2 (1 is the highest; 0 means its default level, 1)',
  ]);
  const rest = await generate('echo', { priority: 3 });
  expect([rest.status, rest.body.error]).toEqual([400, read[0]?.error_message]);
});

test('a Triton-layout generator’s dynamic_batching priority levels are applied (a level it lacks is a 400)', async () => {
  const answer = await generate('triecho', { priority: 3 });
  expect([answer.status, answer.body.error]).toEqual([
    400,
    'parameters.priority is 3, but model `triecho` has priority levels 1 to 2 (1 is the highest; 0 means its default level, 1)',
  ]);
  expect((await generate('triecho', { priority: 2 })).body.text_output).toBe('abc');
});

test('a Triton-layout generator declared `decoupled: true` (as Triton requires of one) loads and generates', async () => {
  // repository/triton-config.ts mapped model_transaction_policy.decoupled to "only `false`": the model was UNAVAILABLE.
  const answer = await generate('tridecoupled', {});
  expect([answer.status, answer.body.text_output ?? answer.body.error]).toEqual([200, 'abc']);
  // A model that answers one response per request may not say it is decoupled.
  mkdirSync(join(repo, 'plaindecoupled', '1'), { recursive: true });
  cpSync(join(repo, 'seen', 'model.mjs'), join(repo, 'plaindecoupled', '1', 'model.mjs'));
  put(
    'plaindecoupled/config.pbtxt',
    'backend: "js"\nmax_batch_size: 8\nmodel_transaction_policy { decoupled: true }\n',
  );
  const load = await postJson(`${server.url}/v2/repository/models/plaindecoupled/load`, '{}');
  expect(load.status).toBe(400);
  expect(String(load.body.error)).toContain(
    '`model_transaction_policy { decoupled: true }` is for a generator (a model.js exporting `step`);',
  );
});

test('a generator’s /config shows the priority levels it applies (ours and Triton’s layout)', async () => {
  // A client learns a model's levels from its configuration (dynamic_batching.priority_levels); a generator's
  // config shows no dynamic_batching at all (model-config.ts: config.dynamicBatching is false for generators).
  for (const name of ['echo', 'triecho']) {
    const config = (await (await fetch(`${server.url}/v2/models/${name}/config`)).json()) as any;
    expect([name, config.dynamic_batching?.priority_levels, config.dynamic_batching?.default_priority_level]).toEqual([
      name,
      2,
      1,
    ]);
  }
});

test('a generator with defaultPriorityLevel and no priorityLevels is refused at load, with the reason', async () => {
  cpSync(ECHO, join(repo, 'badgen'), { recursive: true });
  put('badgen/config.json', JSON.stringify({ defaultPriorityLevel: 1 }));
  const load = await postJson(`${server.url}/v2/repository/models/badgen/load`, '{}');
  expect(load.status).toBe(400);
  expect(String(load.body.error)).toMatch(/defaultPriorityLevel/);
});

// ---- 2. Ensembles forward their request's parameters; models.infer(..., { parameters }) ----

test('an ensemble step sees the custom parameters only, never the reserved ones (Triton: not in the C-API)', async () => {
  const parameters = { custom: 'c', priority: 1, timeout: 60_000_000, binary_data_output: false, headers: 'h' };
  const direct = await infer('seeing', parameters);
  expect(direct.status).toBe(200);
  expect(direct.body.outputs[0].data).toEqual(['custom']);
});

test('an ensemble takes what its step takes: a gRPC int64 parameter above 2^53 (a BigInt here)', async () => {
  const request = (model: string) => ({
    model_name: model,
    inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], contents: { fp32_contents: [1, 2] } }],
    parameters: { big: { int64_param: '9007199254740993' } },
  });
  const direct = await client.call('ModelInfer', request('seen'));
  expect(direct.model_name).toBe('seen');
  // Through the ensemble the step call refuses the BigInt (protocol/model-calls.ts checkOptions): INVALID_ARGUMENT.
  const viaEnsemble = await client.call('ModelInfer', request('seeing'));
  expect(viaEnsemble.model_name).toBe('seeing');
});

test('an ensemble forwards many custom parameters, each to its step', async () => {
  const many = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`p${String(i).padStart(3, '0')}`, i]));
  const answer = await infer('seeing', many);
  expect(answer.status).toBe(200);
  expect(answer.body.outputs[0].data[0].split(',')).toEqual(Object.keys(many));
});

test('models.infer with `parameters` a Map (structured clone keeps it a Map) is a 400, not silently none', async () => {
  const answer = await infer('mapcaller', {}, [1, 2, 3, 4]);
  // Before: 200 with y = x (the Map's entries are no own properties: Object.entries(map) is [], the target saw none).
  expect(answer.status).toBe(400);
  expect(String(answer.body.error)).toMatch(/parameters/);
});

test('models.infer with a `parameters` getter that throws fails its caller with that error, no hang', async () => {
  const answer = await infer('gettercaller', {}, [1, 2, 3, 4]);
  expect(answer.status).toBe(500);
  expect(String(answer.body.error)).toMatch(/the getter says no/);
});

test('models.generate reads `parameters.priority`/`timeout` as REST generate does (same body, same answer)', async () => {
  // REST generate takes {"parameters": {"priority": 1, "timeout": 60000000}}; models.generate passed them to the
  // model as sampling parameters: "Unknown sampling parameter `priority`".
  const answer = await infer('genparams', {}, [1, 2, 3, 4]);
  expect([answer.status, answer.body.outputs?.find((o: { name: string }) => o.name === 'text')?.data]).toEqual([
    200,
    ['abc'],
  ]);
});

test('models.generate refuses `options.parameters` (accepted by checkOptions, then dropped)', async () => {
  // The request's parameters are `request.parameters`; `{ parameters: { upper: true } }` in the options reached no one.
  const answer = await infer('genoptions', {}, [1, 2, 3, 4]);
  expect(answer.status).toBe(400);
});

// ---- 3. batched_fn_held_sequences ----

test('held_sequences: an unloaded stateful model’s series leaves; loaded again it starts at 0', async () => {
  const held = async (): Promise<string | undefined> =>
    /^batched_fn_held_sequences\{model="norm"\} (\d+)$/m.exec(await (await fetch(`${server.url}/metrics`)).text())?.[1];
  const frames = Array.from({ length: 8 }, (_, i) => i);
  const start = await postJson(
    `${server.url}/v2/models/norm/infer`,
    jsonRequest('frames', [1, 8], 'FP32', frames, { parameters: { sequence_id: 5, sequence_start: true } }),
  );
  expect(start.status).toBe(200);
  expect(await held()).toBe('1');
  expect((await postJson(`${server.url}/v2/repository/models/norm/unload`, '{}')).status).toBe(200);
  expect(await held()).toBeUndefined();
  expect((await postJson(`${server.url}/v2/repository/models/norm/load`, '{}')).status).toBe(200);
  expect(await held()).toBe('0');
});
