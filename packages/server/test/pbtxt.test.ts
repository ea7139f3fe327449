import { expect, test } from 'vitest';
import { parseTextFormat, TextFormatError } from '../dist/repository/pbtxt.js';
import { modelConfigType, planFromConfig } from '../dist/repository/triton-config.js';

// config.pbtxt: protobuf text format read strictly against Triton's ModelConfig, then mapped onto
// our settings. Every refusal names the line and column (parser) or the field (mapping).

const parse = (text: string) => parseTextFormat(text, modelConfigType());
const fails = (text: string): string => {
  try {
    parse(text);
  } catch (error) {
    expect(error).toBeInstanceOf(TextFormatError);
    expect((error as TextFormatError).code).toBe('ERR_TEXT_FORMAT');
    return (error as Error).message;
  }
  throw new Error('parsed');
};
const plan = (text: string) => planFromConfig(parse(text), 'm', 'config.pbtxt');
const refused = (text: string): string => {
  try {
    plan(text);
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('accepted');
};

test('every form Triton configs use: lists, repeated fields given one by one, messages with or without a colon, maps, comments, separators', () => {
  const config = parse(`
    # a comment, and one after a value
    name: "m"  # here
    max_batch_size: 0x10;
    input [ { name: "a", data_type: TYPE_FP32, dims: [ 2, -1 ] }, { name: "b" data_type: 13 dims: 3 dims: 4 } ]
    input < name: 'c' data_type: TYPE_BOOL >
    output: { name: "y" dims: [] }
    version_policy { specific: { versions: [ 1, 3 ] } }
    dynamic_batching { preserve_ordering: True default_queue_policy { allow_timeout_override: t } }
    parameters { key: "k1" value { string_value: "v1" } }
    parameters: [ { key: "k2", value: { string_value: "v2" } } ]
    optimization { cuda { graph_spec [ { batch_size: 1 } ] } }
  `);
  expect(config).toEqual({
    name: 'm',
    max_batch_size: 16,
    input: [
      { name: 'a', data_type: 'TYPE_FP32', dims: [2, -1] },
      { name: 'b', data_type: 'TYPE_STRING', dims: [3, 4] },
      { name: 'c', data_type: 'TYPE_BOOL' },
    ],
    output: [{ name: 'y', dims: [] }],
    version_policy: { specific: { versions: [1, 3] } },
    dynamic_batching: { preserve_ordering: true, default_queue_policy: { allow_timeout_override: true } },
    parameters: { k1: { string_value: 'v1' }, k2: { string_value: 'v2' } },
    optimization: { cuda: { graph_spec: [{ batch_size: 1 }] } },
  });
});

test('strings: both quotes, adjacent literals joined, C escapes (octal and hex as bytes), \\u and \\U', () => {
  expect(parse(String.raw`name: "a\"b" 'c\'d' "\n\t\\" "\101\x42\u00e9\U0001F600"`).name).toBe('a"bc\'d\n\t\\ABé😀');
  expect(fails(String.raw`name: "\q"`)).toBe('line 1, column 8: unknown escape \\q');
  expect(fails('name: "open\nmax_batch_size: 1')).toBe('line 1, column 7: unterminated string');
  expect(fails(String.raw`name: "\xff"`)).toBe('line 1, column 7: `ModelConfig.name` is not valid UTF-8');
});

test('names, types and ranges are checked against ModelConfig', () => {
  expect(fails('max_batch_sise: 4')).toBe(
    'line 1, column 1: unknown field `max_batch_sise` in ModelConfig (did you mean `max_batch_size`?)',
  );
  expect(fails('input { nmae: "x" }')).toBe(
    'line 1, column 9: unknown field `nmae` in ModelConfig.input (did you mean `name`?)',
  );
  expect(fails('max_batch_size: 4\nmax_batch_size: 8')).toBe(
    'line 2, column 1: `ModelConfig.max_batch_size` is given twice; it is not a repeated field',
  );
  expect(fails('max_batch_size: "4"')).toBe(
    'line 1, column 17: expected an integer for `ModelConfig.max_batch_size`, got a string',
  );
  expect(fails('max_batch_size: 1.5')).toBe(
    'line 1, column 17: `ModelConfig.max_batch_size` must be an integer, got `1.5`',
  );
  expect(fails('max_batch_size: 2147483648')).toBe(
    'line 1, column 17: `ModelConfig.max_batch_size` must be from -2147483648 to 2147483647, got 2147483648',
  );
  expect(fails('version_policy { latest { num_versions: -1 } }')).toBe(
    'line 1, column 41: `ModelConfig.version_policy.latest.num_versions` must be from 0 to 4294967295, got -1',
  );
  expect(fails('input { data_type: TYPE_FLOAT }')).toMatch(
    /^line 1, column 20: `ModelConfig.input.data_type` cannot be TYPE_FLOAT; it is one of TYPE_INVALID, TYPE_BOOL, /,
  );
  expect(fails('input { data_type: 99 }')).toMatch(/^line 1, column 20: `ModelConfig.input.data_type` cannot be 99/);
  expect(fails('version_policy { all {} latest {} }')).toBe(
    'line 1, column 25: `ModelConfig.version_policy.latest` and `ModelConfig.version_policy.all` are both given; they are alternatives (oneof `policy_choice`)',
  );
  expect(fails('dynamic_batching: 3')).toBe(
    'line 1, column 19: expected `{` to open `ModelConfig.dynamic_batching`, got `3`',
  );
  expect(fails('name [ "a" ]')).toBe('line 1, column 6: expected `:` after `ModelConfig.name`, got `[`');
  expect(fails('name: [ "a" ]')).toBe(
    'line 1, column 7: `ModelConfig.name` is not a repeated field: give it one value, not a list',
  );
  expect(
    fails('parameters { key: "a" value { string_value: "1" } }\nparameters { key: "a" value { string_value: "2" } }'),
  ).toBe('line 2, column 52: `ModelConfig.parameters` has key "a" twice');
  expect(fails('parameters { key: "a" }')).toBe(
    'line 1, column 24: the entry "a" of `ModelConfig.parameters` has no `value`',
  );
  expect(fails('[inference.x] { }')).toBe(
    'line 1, column 1: extensions and Any (`[...]`) are not supported in ModelConfig',
  );
  expect(fails('input { name: "x"')).toBe(
    'line 1, column 18: expected `}` to close ModelConfig.input, got the end of the file',
  );
  expect(fails('max_batch_size: 12abc')).toBe('line 1, column 17: malformed number `12a...`');
});

test('bounded: the text size, the nesting depth and the count of values', () => {
  const limits = { maxBytes: 64, maxDepth: 3, maxValues: 10 };
  const type = modelConfigType();
  expect(() => parseTextFormat(`name: "${'a'.repeat(100)}"`, type, limits)).toThrow(
    'line 1, column 1: the text is 108 bytes, more than 64',
  );
  expect(() => parseTextFormat('optimization { cuda { graph_spec { } } }', type, limits)).toThrow(
    'line 1, column 36: messages nested deeper than 3',
  );
  expect(() => parseTextFormat('input { dims: [1,2,3,4,5,6,7,8,9,10] }', type, { ...limits, maxBytes: 1000 })).toThrow(
    'more than 10 fields and values',
  );
  // The defaults: a megabyte of text, 32 levels, 100,000 values.
  expect(() => parse(`input { dims: [${'1,'.repeat(100_000)}1] }`)).toThrow(/more than 100000 fields and values/);
  expect(() => parse('x'.repeat(1024 * 1024 + 1))).toThrow(/more than 1048576/);
});

test("the mapping: our settings from the fields, Triton's own checks, and every field we do not serve refused by name", () => {
  expect(
    plan(`max_batch_size: 8
      dynamic_batching { max_queue_delay_microseconds: 1500 preferred_batch_size: [2, 8] priority_levels: 3 default_priority_level: 2
        default_queue_policy { max_queue_size: 9 default_timeout_microseconds: 250000 allow_timeout_override: true timeout_action: REJECT } }
      instance_group [ { count: 2 kind: KIND_CPU }, { count: 1 kind: KIND_AUTO } ]
      optimization { input_pinned_memory { enable: true } output_pinned_memory { enable: true } }
      model_transaction_policy { decoupled: false }`),
  ).toMatchObject({
    backend: undefined,
    versionPolicy: { latest: { num_versions: 1 } },
    settings: {
      maxDelay: 1.5,
      preferredBatchSizes: [2, 8],
      priorityLevels: 3,
      defaultPriorityLevel: 2,
      channelCap: 9,
      timeout: 250,
    },
    dynamicBatching: true,
    allowTimeoutOverride: true,
    autoComplete: true,
    instances: 3,
  });
  // Defaults are what proto3 makes of a field left out: accepted.
  expect(plan('batch_input: [] runtime: "" response_cache { enable: false } cc_model_filenames: []').settings).toEqual(
    {},
  );
  // sequence_batching is served (sequences.test.ts); the parts of it we do not serve are refused by name.
  expect(refused('sequence_batching { control_input [ { name: "START" } ] }')).toBe(
    'config.pbtxt: `sequence_batching.control_input` is not supported yet',
  );
  // Ensembles are served (ensemble-config.test.ts); ensemble_scheduling on another model is refused by name.
  expect(refused('ensemble_scheduling { }')).toBe(
    'config.pbtxt: `ensemble_scheduling` is for an ensemble: give it `platform: "ensemble"`',
  );
  expect(refused('model_warmup [ { name: "w" batch_size: 1 } ]')).toBe(
    'config.pbtxt: `model_warmup` is not supported yet',
  );
  expect(refused('optimization { graph { level: 1 } }')).toBe(
    'config.pbtxt: `optimization.graph` is not supported yet',
  );
  expect(refused('response_cache { enable: true }')).toBe(
    'config.pbtxt: `response_cache.enable` is not supported yet (only false)',
  );
  expect(refused('dynamic_batching { preserve_ordering: true }')).toBe(
    'config.pbtxt: `dynamic_batching.preserve_ordering` is not supported yet (only false)',
  );
  expect(refused('dynamic_batching { default_queue_policy { timeout_action: DELAY } }')).toBe(
    'config.pbtxt: `dynamic_batching.default_queue_policy.timeout_action` is not supported yet (only "REJECT")',
  );
  expect(refused('dynamic_batching { priority_queue_policy { key: 1 value { max_queue_size: 2 } } }')).toBe(
    'config.pbtxt: `dynamic_batching.priority_queue_policy` is not supported yet',
  );
  expect(refused('input { name: "x" data_type: TYPE_FP32 dims: [1] reshape { shape: [] } }')).toBe(
    'config.pbtxt: `input.reshape` is not supported yet',
  );
  expect(refused('instance_group { kind: KIND_CPU gpus: [0] }')).toBe(
    'config.pbtxt: `instance_group.gpus` is not supported yet',
  );
  expect(refused('instance_group { name: "g" count: 1 kind: KIND_MODEL }')).toBe(
    'config.pbtxt: instance group "g" has kind KIND_MODEL, which is not supported yet (KIND_CPU or KIND_AUTO)',
  );
  // Left out, the kind is KIND_AUTO: the CPU here.
  expect(plan('instance_group { name: "g" count: 3 } optimization { priority: PRIORITY_DEFAULT }').instances).toBe(3);
  // Read, and checked against the model once it is built (a generator only: triton-repository.ts).
  expect(plan('model_transaction_policy { decoupled: true }').decoupled).toBe(true);
  expect(plan('').decoupled).toBe(false);
  // Triton's own checks, in its words.
  expect(refused('max_batch_size: 4 dynamic_batching { preferred_batch_size: [8] }')).toBe(
    'config.pbtxt: dynamic batching preferred size must be <= max batch size for m',
  );
  expect(refused('max_batch_size: 4 dynamic_batching { priority_levels: 2 }')).toBe(
    'config.pbtxt: default priority level must be in range [1, 2] for m',
  );
  expect(refused('version_policy { latest { } }')).toBe(
    "config.pbtxt: at least one version must be available under the version policy of model 'm' (`version_policy.latest.num_versions` is 0)",
  );
  expect(refused('name: "other"')).toBe(
    'config.pbtxt: `name` is "other", but the model\'s folder is "m": they must be the same',
  );
  expect(refused('backend: "python"')).toBe(
    'config.pbtxt: backend "python" is not served here: this server runs ONNX models (platform `onnxruntime_onnx`, backend `onnxruntime`) and JS models (backend `js`)',
  );
  expect(refused('input { name: "x" data_type: TYPE_FP32 dims: [0] }')).toBe(
    'config.pbtxt: input `x` has dims [0]: each must be -1 (any size) or at least 1',
  );
  expect(refused('default_model_filename: "../model.onnx"')).toBe(
    'config.pbtxt: `default_model_filename` must be a plain file name in the version folder, got "../model.onnx"',
  );
});
