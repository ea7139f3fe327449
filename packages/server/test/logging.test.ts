import { status } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { type RunningServer, serverLog, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { postJson } from './helpers.js';
import { row16, tritonRepository } from './triton-helpers.js';

// Triton's logging extension: GET/POST /v2/logging and gRPC LogSettings read and change what the
// running server logs. The log is the process's, so each test starts from the defaults.
let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
let lines: string[] = [];
const stderr = serverLog.write;
afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
  serverLog.reset();
  serverLog.write = stderr;
});

async function start() {
  lines = [];
  serverLog.write = (line) => void lines.push(line);
  server = await startServer({
    modelRepository: tritonRepository({ broken: 'export const inputs = 1;' }),
    modelControl: 'explicit',
    port: 0,
    grpcPort: 0,
  });
  client = grpcClient(server.grpcUrl as string);
  return { url: server.url, client };
}

const INITIAL = {
  log_file: '',
  log_info: true,
  log_warning: true,
  log_error: true,
  log_verbose_level: 0,
  log_format: 'default',
};
const post = (url: string, settings: object) => postJson(`${url}/v2/logging`, JSON.stringify(settings));
const infer = (url: string) =>
  postJson(
    `${url}/v2/models/simple/infer`,
    JSON.stringify({
      inputs: [
        { name: 'INPUT0', shape: [1, 16], datatype: 'INT32', data: row16(0) },
        { name: 'INPUT1', shape: [1, 16], datatype: 'INT32', data: row16(1) },
      ],
    }),
  );

test("the settings start as Triton's, and POST changes only what it names, answering all of them (Triton's own sequence)", async () => {
  const { url } = await start();
  expect((await (await fetch(`${url}/v2/logging`)).json()) as any).toEqual(INITIAL);
  const steps = [
    { log_info: false, log_warning: true, log_error: true, log_verbose_level: 0, log_format: 'default' },
    { log_info: false, log_warning: false, log_error: true, log_verbose_level: 0, log_format: 'default' },
    { log_info: false, log_warning: false, log_error: false, log_verbose_level: 0, log_format: 'default' },
    { log_info: false, log_warning: false, log_error: false, log_verbose_level: 1, log_format: 'default' },
    { log_info: false, log_warning: false, log_error: false, log_verbose_level: 1, log_format: 'ISO8601' },
  ];
  for (const step of steps)
    expect(await post(url, step)).toEqual(expect.objectContaining({ status: 200, body: { ...step, log_file: '' } }));
  expect((await post(url, { log_verbose_level: 2 })).body).toEqual({ ...steps[4], log_verbose_level: 2, log_file: '' });
  // null leaves a setting as it is; an empty body changes nothing.
  expect((await post(url, { log_info: null })).body.log_info).toBe(false);
  expect(
    (await fetch(`${url}/v2/logging`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' }))
      .status,
  ).toBe(200);
});

test('gRPC LogSettings: the same settings as SettingValues, read and changed', async () => {
  const { client } = await start();
  const initial = await client.call('LogSettings', {});
  expect(initial.settings).toEqual({
    log_file: expect.objectContaining({ string_param: '', parameter_choice: 'string_param' }),
    log_info: expect.objectContaining({ bool_param: true, parameter_choice: 'bool_param' }),
    log_warning: expect.objectContaining({ bool_param: true }),
    log_error: expect.objectContaining({ bool_param: true }),
    log_verbose_level: expect.objectContaining({ uint32_param: 0, parameter_choice: 'uint32_param' }),
    log_format: expect.objectContaining({ string_param: 'default' }),
  });
  const changed = await client.call('LogSettings', {
    settings: {
      log_info: { bool_param: false },
      log_verbose_level: { uint32_param: 1 },
      log_format: { string_param: 'ISO8601' },
    },
  });
  expect(changed.settings).toMatchObject({
    log_info: { bool_param: false },
    log_verbose_level: { uint32_param: 1 },
    log_format: { string_param: 'ISO8601' },
    log_error: { bool_param: true },
  });
  expect((await (await fetch(`${server?.url}/v2/logging`)).json()) as any).toEqual({
    ...INITIAL,
    log_info: false,
    log_verbose_level: 1,
    log_format: 'ISO8601',
  });
});

test.each([
  [
    { log_file: 'log_file.log' },
    'log file location can not be updated through network protocol',
    { log_file: { string_param: 'log_file.log' } },
  ],
  [{ log_info: 'yes' }, `expect boolean for 'log_info', got "yes"`, { log_info: { string_param: 'yes' } }],
  [{ log_error: 1 }, "expect boolean for 'log_error', got 1", { log_error: { uint32_param: 1 } }],
  [{ log_verbose_level: -1 }, "expect an integer from 0 to 2147483647 for 'log_verbose_level', got -1", undefined],
  [{ log_verbose_level: 1.5 }, "expect an integer from 0 to 2147483647 for 'log_verbose_level', got 1.5", undefined],
  [
    { log_verbose_level: true },
    "expect an integer from 0 to 2147483647 for 'log_verbose_level', got true",
    { log_verbose_level: { bool_param: true } },
  ],
  [{ log_format: 'fancy' }, 'invalid argument for log_format, got: fancy', { log_format: { string_param: 'fancy' } }],
  [{ log_format: 3 }, "expect string for 'log_format', got 3", { log_format: { uint32_param: 3 } }],
  [
    { log_colour: true },
    "Unknown log setting 'log_colour'; the settings are 'log_file', 'log_info', 'log_warning', 'log_error', 'log_verbose_level', 'log_format'",
    { log_colour: { bool_param: true } },
  ],
])('%j is a 400 (gRPC INVALID_ARGUMENT) that changes nothing', async (settings, message, grpcSettings) => {
  const { url, client } = await start();
  // A good field before the bad one is not applied either: the request is checked whole first.
  const response = await post(url, { log_warning: false, ...settings });
  expect(response).toMatchObject({ status: 400, body: { error: message } });
  if (grpcSettings !== undefined)
    expect(
      await client.fails('LogSettings', { settings: { log_warning: { bool_param: false }, ...grpcSettings } }),
    ).toEqual({ code: status.INVALID_ARGUMENT, details: message });
  expect((await (await fetch(`${url}/v2/logging`)).json()) as any).toEqual(INITIAL);
  expect((await post(url, [])).body.error).toBe('The log settings must be a JSON object, got []');
});

test('the settings change what the running server logs: verbose request lines, INFO on loads, ERROR on failures, the format', async () => {
  const { url } = await start();
  // INFO is on at the start: the repository's loads were logged, in Triton's default format.
  expect(lines.filter((l) => l.includes('successfully loaded'))).toHaveLength(2);
  expect(lines.filter((l) => l.startsWith('E'))).toEqual([
    expect.stringContaining(`registry:0] "failed to load 'broken'`),
  ]);
  expect(lines.find((l) => l.startsWith('I'))).toMatch(
    /^I\d{4} \d{2}:\d{2}:\d{2}\.\d{6} \d+ registry:0\] "successfully loaded '(simple|simple_string)' version 1"\n$/,
  );

  // Verbose 0: requests are not logged; verbose 1: each one is.
  lines = [];
  expect((await infer(url)).status).toBe(200);
  expect(lines).toEqual([]);
  await post(url, { log_verbose_level: 1 });
  lines = [];
  expect((await infer(url)).status).toBe(200);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^I\d{4} [\d:.]+ \d+ http:0\] "POST \/v2\/models\/simple\/infer 200 [\d.]+ ms"\n$/);

  // ISO8601, and INFO off: the unload is not logged; back on, the load is, in the new format.
  await post(url, { log_verbose_level: 0, log_format: 'ISO8601', log_info: false });
  lines = [];
  expect((await fetch(`${url}/v2/repository/models/simple/unload`, { method: 'POST' })).status).toBe(200);
  expect(lines).toEqual([]);
  await post(url, { log_info: true });
  expect((await fetch(`${url}/v2/repository/models/simple/load`, { method: 'POST' })).status).toBe(200);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(
    /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z I \d+ registry:0\] "successfully loaded 'simple' version 1"\n$/,
  );

  // A load that fails is an ERROR, unless ERROR is off.
  lines = [];
  expect((await fetch(`${url}/v2/repository/models/simple_string/load`, { method: 'POST' })).status).toBe(200);
  await post(url, { log_error: false });
  expect((await fetch(`${url}/v2/repository/models/broken/load`, { method: 'POST' })).status).toBe(400);
  expect(lines.filter((l) => / E /.test(l))).toEqual([]);
  await post(url, { log_error: true });
  expect((await fetch(`${url}/v2/repository/models/broken/load`, { method: 'POST' })).status).toBe(400);
  expect(lines.filter((l) => / E /.test(l)).map((l) => l.replace(/^\S+ E \d+ /, ''))).toEqual([
    expect.stringMatching(/^registry:0\] "failed to load 'broken': .*broken.model\.mjs must export a `handler/),
  ]);
});

test('/v2 lists logging', async () => {
  const { url, client } = await start();
  expect(((await (await fetch(`${url}/v2`)).json()) as any).extensions).toContain('logging');
  expect((await client.call('ServerMetadata')).extensions).toContain('logging');
});
