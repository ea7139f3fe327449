import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { parseTextFormat } from '../dist/repository/pbtxt.js';
import { modelConfigType } from '../dist/repository/triton-config.js';
import { readConfigJson } from '../dist/repository/config-json.js';
import { ensemblePlan, readEnsembleConfigJson } from '../dist/repository/ensemble-config.js';
import { repositoryLoader } from '../dist/repository/repository.js';
import { batchSettings } from '../dist/cli/banner.js';
import { SERVER_DEFAULTS } from '../dist/settings/settings.js';
import type { ModelCalls } from '../dist/model/model-calls.js';
import { scratchDir } from './scratch.js';

// An ensemble's config, in both forms (config.pbtxt's text format, config.json in Triton's field
// names), read into one plan; every refusal names the file and the field.

const PBTXT = `name: "ens"
platform: "ensemble"
max_batch_size: 4
input [ { name: "ens_in" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "ens_out" data_type: TYPE_FP32 dims: [ 2 ] }, { name: "side" data_type: TYPE_FP32 dims: [ 2 ] } ]
ensemble_scheduling {
  step [
    { model_name: "a" model_version: -1 input_map { key: "IN" value: "ens_in" } output_map { key: "OUT" value: "tmp" } },
    { model_name: "b" model_version: 2 input_map { key: "X" value: "tmp" } output_map { key: "Y" value: "ens_out" } },
    { model_name: "c" input_map [ { key: "P" value: "ens_in" }, { key: "Q" value: "tmp" } ] output_map { key: "R" value: "side" } }
  ]
}
`;

const JSON_FORM = {
  name: 'ens',
  platform: 'ensemble',
  max_batch_size: 4,
  input: [{ name: 'ens_in', data_type: 'TYPE_FP32', dims: [2] }],
  output: [
    { name: 'ens_out', data_type: 'TYPE_FP32', dims: [2] },
    { name: 'side', data_type: 'TYPE_FP32', dims: [2] },
  ],
  ensemble_scheduling: {
    step: [
      { model_name: 'a', model_version: -1, input_map: { IN: 'ens_in' }, output_map: { OUT: 'tmp' } },
      { model_name: 'b', model_version: '2', input_map: { X: 'tmp' }, output_map: { Y: 'ens_out' } },
      { model_name: 'c', input_map: { P: 'ens_in', Q: 'tmp' }, output_map: { R: 'side' } },
    ],
  },
};

const pbtxtPlan = (text: string) => ensemblePlan(parseTextFormat(text, modelConfigType()), 'ens', 'config.pbtxt');
const refused = (text: string): string => {
  try {
    pbtxtPlan(text);
  } catch (error) {
    expect((error as { code?: string }).code).toBe('ERR_MODEL_LOAD');
    return (error as Error).message;
  }
  throw new Error('accepted');
};

const STEPS = [
  { model_name: 'a', model_version: -1, input_map: { IN: 'ens_in' }, output_map: { OUT: 'tmp' } },
  { model_name: 'b', model_version: 2, input_map: { X: 'tmp' }, output_map: { Y: 'ens_out' } },
  { model_name: 'c', model_version: -1, input_map: { P: 'ens_in', Q: 'tmp' }, output_map: { R: 'side' } },
];

test('config.pbtxt and config.json give one plan: tensors with the batch dimension, steps as written, version -1 when left out', () => {
  const plan = pbtxtPlan(PBTXT);
  expect(plan).toEqual({
    maxBatchSize: 4,
    inputs: [{ name: 'ens_in', datatype: 'FP32', shape: [-1, 2] }],
    outputs: [
      { name: 'ens_out', datatype: 'FP32', shape: [-1, 2] },
      { name: 'side', datatype: 'FP32', shape: [-1, 2] },
    ],
    steps: STEPS,
    versionPolicy: { latest: { num_versions: 1 } },
  });
  expect(ensemblePlan(readConfigJson(JSON.stringify(JSON_FORM)), 'ens', 'config.json')).toEqual(plan);
  // max_batch_size 0: the shapes are whole.
  expect(pbtxtPlan(PBTXT.replace('max_batch_size: 4', '')).inputs).toEqual([
    { name: 'ens_in', datatype: 'FP32', shape: [2] },
  ]);
});

test('config.json: Triton\'s field names when it says platform "ensemble"; our keys otherwise; another platform refused', () => {
  const dir = scratchDir('bfn-ensemble-config-');
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(JSON_FORM));
  expect(ensemblePlan(readEnsembleConfigJson(file) as Record<string, unknown>, 'ens', file).steps).toEqual(STEPS);
  writeFileSync(file, JSON.stringify({ maxBatchSize: 4 }));
  expect(readEnsembleConfigJson(file)).toBeUndefined();
  expect(readEnsembleConfigJson(join(dir, 'missing.json'))).toBeUndefined();
  writeFileSync(file, JSON.stringify({ platform: 'onnxruntime_onnx' }));
  expect(() => readEnsembleConfigJson(file)).toThrow(
    `${file}: \`platform\` is "onnxruntime_onnx"; a config.json says \`platform\` only for an ensemble`,
  );
  writeFileSync(file, JSON.stringify({ ...JSON_FORM, maxBatchSize: 4 }));
  // Read by Triton's JSON mapping: lowerCamelCase is a field's JSON name, given twice here.
  expect(() => readEnsembleConfigJson(file)).toThrow(`${file}: \`max_batch_size\` is given twice`);
  writeFileSync(file, JSON.stringify({ ...JSON_FORM, steps: [] }));
  expect(() => readEnsembleConfigJson(file)).toThrow(`${file}: \`steps\` is not a field of ModelConfig`);
});

test('every refusal names the field: step names, versions, maps, and what an ensemble may not say', () => {
  const step = (fields: string) =>
    PBTXT.replace(/ensemble_scheduling \{[\s\S]*\n\}\n/, `ensemble_scheduling { step [ ${fields} ] }\n`);
  const ok =
    'input_map { key: "IN" value: "ens_in" } output_map [ { key: "O" value: "ens_out" }, { key: "S" value: "side" } ]';
  expect(pbtxtPlan(step(`{ model_name: "a" ${ok} }`)).steps).toHaveLength(1);
  expect(refused(step(`{ model_name: "../a" ${ok} }`))).toBe(
    'config.pbtxt: `ensemble_scheduling.step[0].model_name` must name a model of the repository (letters, digits, `_`, `.`, `-`; at most 64), got "../a"',
  );
  expect(refused(step(`{ ${ok} }`))).toMatch(/`ensemble_scheduling.step\[0\].model_name` must name a model .* got ""$/);
  expect(refused(step(`{ model_name: "ens" ${ok} }`))).toBe(
    'config.pbtxt: `ensemble_scheduling.step[0].model_name` is the ensemble itself: it would wait on itself',
  );
  for (const version of ['0', '-2'])
    expect(refused(step(`{ model_name: "a" model_version: ${version} ${ok} }`))).toBe(
      `config.pbtxt: \`ensemble_scheduling.step[0].model_version\` must be -1 (the highest served) or a version from 1, got ${version}`,
    );
  expect(refused(step('{ model_name: "a" output_map { key: "O" value: "ens_out" } }'))).toBe(
    'config.pbtxt: `ensemble_scheduling.step[0].input_map` is empty: each input of `a` must read an ensemble tensor',
  );
  expect(refused(step('{ model_name: "a" input_map { key: "IN" value: "ens_in" } }'))).toBe(
    'config.pbtxt: `ensemble_scheduling.step[0].output_map` is empty: nothing `a` answers would be used',
  );
  expect(
    refused(step(`{ model_name: "a" input_map { key: "IN" value: "" } output_map { key: "O" value: "ens_out" } }`)),
  ).toBe('config.pbtxt: `ensemble_scheduling.step[0].input_map["IN"]` must name an ensemble tensor');
  expect(refused(PBTXT.replace(/ensemble_scheduling \{[\s\S]*\n\}\n/, '')).toString()).toBe(
    'config.pbtxt: an ensemble needs `ensemble_scheduling` with at least one `step`',
  );
  expect(refused(`${PBTXT}default_model_filename: "m.onnx"`)).toBe(
    "config.pbtxt: `default_model_filename` is not for an ensemble: its steps' models are batched and run each by its own config",
  );
  // dynamic_batching and sequence_batching are ensemble_scheduling's alternatives in the schema itself.
  expect(() => pbtxtPlan(`${PBTXT}dynamic_batching { }`)).toThrow(
    /they are alternatives \(oneof `scheduling_choice`\)/,
  );
  expect(refused(`${PBTXT}instance_group [ { count: 2 } ]`)).toMatch(/`instance_group` is not for an ensemble/);
  expect(refused(`${PBTXT}backend: "js"`)).toMatch(/`backend` is not for an ensemble/);
  // Parts of ensemble_scheduling we do not serve, by name, as every field.
  expect(refused(PBTXT.replace('ensemble_scheduling {', 'ensemble_scheduling { max_inflight_requests: 4'))).toBe(
    'config.pbtxt: `ensemble_scheduling.max_inflight_requests` is not supported yet',
  );
  expect(refused(PBTXT.replace('{ model_name: "a"', '{ model_namespace: "x" model_name: "a"'))).toBe(
    'config.pbtxt: `ensemble_scheduling.step.model_namespace` is not supported yet',
  );
  expect(refused(PBTXT.replace(/input \[.*\]\n/, ''))).toBe('config.pbtxt: an ensemble must declare its `input`');
  expect(refused(PBTXT.replace(/output \[.*\]\n/, ''))).toBe('config.pbtxt: an ensemble must declare its `output`');
  expect(refused(PBTXT.replace('name: "ens"', 'name: "other"'))).toBe(
    'config.pbtxt: `name` is "other", but the model\'s folder is "ens": they must be the same',
  );
});

test('the steps must make one flow: each tensor written once, read once written, no cycle, nothing declared left out', () => {
  const flow = (steps: string, inputs = 'ens_in', outputs = 'ens_out') =>
    `platform: "ensemble"
input [ ${inputs
      .split(',')
      .map((n) => `{ name: "${n}" data_type: TYPE_FP32 dims: [ 1 ] }`)
      .join(', ')} ]
output [ ${outputs
      .split(',')
      .map((n) => `{ name: "${n}" data_type: TYPE_FP32 dims: [ 1 ] }`)
      .join(', ')} ]
ensemble_scheduling { step [ ${steps} ] }`;
  const s = (model: string, reads: string, writes: string) =>
    `{ model_name: "${model}" input_map { key: "I" value: "${reads}" } output_map { key: "O" value: "${writes}" } }`;
  expect(refused(flow(`${s('a', 'ens_in', 'ens_out')}, ${s('b', 'ens_in', 'ens_out')}`))).toBe(
    'config.pbtxt: ensemble tensor `ens_out` is written twice: by step 1 (`b`) and by step 0 (`a`)',
  );
  expect(refused(flow(`${s('a', 'ens_in', 'ens_in')}`))).toBe(
    'config.pbtxt: ensemble tensor `ens_in` is written twice: by step 0 (`a`) and by the ensemble input of that name',
  );
  expect(refused(flow(`${s('a', 'nowhere', 'ens_out')}`))).toBe(
    'config.pbtxt: step 0 (`a`) reads `nowhere` (for its input `I`), which no ensemble input or step output writes',
  );
  expect(refused(flow(`${s('a', 'ens_in', 'ens_out')}`, 'ens_in,unused'))).toBe(
    'config.pbtxt: ensemble input `unused` is read by no step',
  );
  expect(refused(flow(`${s('a', 'ens_in', 'ens_out')}`, 'ens_in', 'ens_out,missing'))).toBe(
    'config.pbtxt: ensemble output `missing` is written by no step',
  );
  // a reads what c writes, c what b writes, b what a writes; d alone reads the input.
  expect(
    refused(
      flow(
        `${s('d', 'ens_in', 'ens_out')}, { model_name: "a" input_map [ { key: "I" value: "t3" }, { key: "J" value: "ens_in" } ] output_map { key: "O" value: "t1" } }, ${s('b', 't1', 't2')}, ${s('c', 't2', 't3')}`,
      ),
    ),
  ).toBe('config.pbtxt: the steps wait on each other: step 1 (`a`) → step 2 (`b`) → step 3 (`c`) → step 1 (`a`)');
  expect(refused(flow(`${s('d', 'ens_in', 'ens_out')}, ${s('a', 'me', 'me')}`))).toBe(
    'config.pbtxt: the steps wait on each other: step 1 (`a`) → step 1 (`a`)',
  );
  // A step's output nobody reads is allowed (as Triton allows leaving outputs unmapped, it is just not used).
  expect(pbtxtPlan(flow(`${s('a', 'ens_in', 'ens_out')}, ${s('b', 'ens_in', 'spare')}`)).steps).toHaveLength(2);
});

const fakeCalls: ModelCalls = {
  infer: async () => ({}),
  generate: async function* () {},
};

test("both layouts load through the repository: Triton's with an empty version folder, ours with config.json and no model file", async () => {
  const repo = scratchDir('bfn-ensemble-layouts-');
  mkdirSync(join(repo, 'ens', '1'), { recursive: true });
  writeFileSync(join(repo, 'ens', 'config.pbtxt'), PBTXT);
  mkdirSync(join(repo, 'ours'));
  writeFileSync(join(repo, 'ours', 'config.json'), JSON.stringify({ ...JSON_FORM, name: 'ours' }));
  mkdirSync(join(repo, 'noversion'));
  writeFileSync(join(repo, 'noversion', 'config.pbtxt'), PBTXT.replace('name: "ens"', ''));
  mkdirSync(join(repo, 'withfile'));
  writeFileSync(join(repo, 'withfile', 'config.json'), JSON.stringify({ ...JSON_FORM, name: 'withfile' }));
  writeFileSync(join(repo, 'withfile', 'model.mjs'), 'export const inputs = [];');
  const batches: unknown[] = [];
  const load = repositoryLoader(repo, {
    defaults: { ...SERVER_DEFAULTS },
    onBatch: (info) => batches.push(info),
    calls: fakeCalls,
  });
  for (const name of ['ens', 'ours']) {
    const model = await load(name);
    expect({ platform: model.platform, version: model.version, maxBatchSize: model.maxBatchSize }).toEqual({
      platform: 'ensemble',
      version: '1',
      maxBatchSize: 4,
    });
    expect(model.dependencies).toEqual(['a', 'b', 'c']);
    expect(model.signature.inputs).toEqual([{ name: 'ens_in', datatype: 'FP32', shape: [-1, 2] }]);
    // The banner says what it is: no workers of its own, its steps, how many requests it runs at once.
    expect(batchSettings(model)).toBe('ensemble of 3 step(s) (a, b, c), max batch 4, 1024 at once');
    await model.batcher.close();
  }
  await expect(load('noversion')).rejects.toThrow(
    "at least one version must be available under the version policy of model 'noversion' (it has no version folders: an ensemble needs an empty one, such as 1/)",
  );
  await expect(load('withfile')).rejects.toThrow(
    /says `platform: "ensemble"`, but .* holds model.mjs: an ensemble has no model file/,
  );
  // Without the server's calls (a library's loader), an ensemble cannot be served: said at load.
  const library = repositoryLoader(repo, { defaults: { ...SERVER_DEFAULTS }, onBatch: () => {} });
  await expect(library('ens')).rejects.toThrow(
    "is an ensemble, whose steps call the server's other models; this loader was given no `calls`",
  );
});
