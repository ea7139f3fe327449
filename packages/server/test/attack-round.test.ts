import { type ChildProcess, spawn } from 'node:child_process';
import type { ClientHttp2Session } from 'node:http2';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { afterEach, expect, test } from 'vitest';
import { type RunningServer, serveModel } from '@batched-fn/server';
import { gatedModel } from './helpers.js';
import { frame, rawSession as openRawSession, rawCall as sendRaw } from './raw-grpc.js';

// An attack round on the fixes of the third hardening round (note 19): a message that passes the
// pre-scans and still explodes in the decoder, and a tune killed at a step its cleanup missed.
// Each test is named after its attack, and failed before its fix.
let server: RunningServer | undefined;
const sessions: ClientHttp2Session[] = [];
const started: ChildProcess[] = [];
afterEach(async () => {
  for (const session of sessions.splice(0)) session.destroy();
  for (const proc of started.splice(0)) proc.kill('SIGKILL');
  await server?.close();
  server = undefined;
});

async function start() {
  const gated = gatedModel();
  server = await serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, bodyLimit: MESSAGE_LIMIT });
  return gated;
}

/** A raw HTTP/2 connection to this test's server's gRPC port. */
const rawSession = (): Promise<ClientHttp2Session> =>
  openRawSession((server as RunningServer).grpcUrl as string, sessions);

/** One whole call: its grpc-status and grpc-message, and how long the answer took. */
async function rawCall(
  session: ClientHttp2Session,
  method: string,
  message: Buffer,
): Promise<{ code: number; details: string; ms: number }> {
  const begun = performance.now();
  const answer = await sendRaw(session, method, frame(message)).answer;
  return { ...answer, ms: performance.now() - begun };
}

const MESSAGE_LIMIT = 8 * 1024 * 1024;
const varint = (n: number): number[] => {
  const bytes: number[] = [];
  for (; n > 127; n = Math.floor(n / 128)) bytes.push((n % 128) | 128);
  return [...bytes, n];
};
const field = (number: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([...varint(number * 8 + 2), ...varint(body.length)]), body]);
const bytesOf = (unit: number[], count: number): Buffer =>
  Buffer.from(Buffer.from(unit).toString('latin1').repeat(count), 'latin1');
const modelName = field(1, Buffer.from('gated'));
const int64Input = (contents: Buffer, datatype = 'INT64'): Buffer =>
  field(
    5,
    Buffer.concat([
      field(1, Buffer.from('x')),
      field(2, Buffer.from(datatype)),
      field(3, Buffer.from([1, 2])),
      field(5, contents),
    ]),
  );

// ---- gRPC: messages the wire scan let through ----

test('an 8 MiB ModelInfer of packed zeros in int64_contents (8.4 M decimal strings to decode) is refused before decoding', async () => {
  await start();
  const session = await rawSession();
  const rss = process.memoryUsage().rss;
  // 8.4 M one-byte varints: the server reads 64-bit integers as decimal strings (exact past 2^53).
  const packed = await rawCall(
    session,
    'ModelInfer',
    Buffer.concat([modelName, int64Input(field(3, Buffer.alloc(MESSAGE_LIMIT - 200)))]),
  );
  const details =
    'ModelInferRequest has more than 65536 typed INT64/UINT64 elements (each is decoded into a string; --max-objects): refused before decoding. Send a large 64-bit tensor in raw_input_contents';
  // Before: decoded whole, then "Input `x` has 8388408 elements, but its shape needs 2", after a
  // 3.3 s main-thread stall and +790 MB of RSS (uint64_contents: 3.6 s).
  expect(packed).toMatchObject({ code: status.INVALID_ARGUMENT, details });
  expect(packed.ms).toBeLessThan(3_000);
  expect(process.memoryUsage().rss - rss).toBeLessThan(300 * 1024 * 1024);
  // Unpacked (a tag per element) and uint64_contents count the same way.
  const unpacked = bytesOf([0x28, 0x00], (MESSAGE_LIMIT - 200) / 2); // field 5 (uint64_contents), varint 0
  expect(
    await rawCall(session, 'ModelInfer', Buffer.concat([modelName, int64Input(unpacked, 'UINT64')])),
  ).toMatchObject({ code: status.INVALID_ARGUMENT, details });
  // At the limit the scan lets it through, and the decoder answers as before.
  const atLimit = await rawCall(
    session,
    'ModelInfer',
    Buffer.concat([modelName, int64Input(field(3, Buffer.alloc(65_536)))]),
  );
  expect(atLimit).toMatchObject({
    code: status.INVALID_ARGUMENT,
    details: 'Input `x` must have datatype FP32, got "INT64"',
  });
});

test('a RepositoryModelLoad of 930,000 distinct parameters, and a TraceSetting of 2.8 M strings in one value, are refused before decoding', async () => {
  await start();
  const session = await rawSession();
  // RepositoryModelLoadRequest.parameters (field 3): entries with distinct 3-byte keys and an empty value.
  const count = Math.floor((MESSAGE_LIMIT - 64) / 9);
  const entries = Buffer.alloc(count * 9);
  for (let i = 0; i < count; i++) {
    entries.set(
      [0x1a, 7, 0x0a, 3, 0x21 + (i % 90), 0x21 + (Math.floor(i / 90) % 90), 0x21 + Math.floor(i / 8100), 0x12, 0],
      i * 9,
    );
  }
  const load = await rawCall(session, 'RepositoryModelLoad', entries);
  // Before: decoded whole (3.1 s stall, +300 MB), then FAILED_PRECONDITION: model control is off.
  expect(load).toMatchObject({
    code: status.INVALID_ARGUMENT,
    details:
      'RepositoryModelLoadRequest has more than 65536 fields (map entries and repeated elements, at any depth, count one each; --max-objects): refused before decoding',
  });
  expect(load.ms).toBeLessThan(3_000);
  // TraceSettingRequest: one `settings` entry whose SettingValue holds 2.8 M one-character strings.
  const strings = bytesOf([0x0a, 0x01, 0x61], Math.floor((MESSAGE_LIMIT - 64) / 3));
  const trace = await rawCall(
    session,
    'TraceSetting',
    field(1, Buffer.concat([field(1, Buffer.from('k')), field(2, strings)])),
  );
  expect(trace).toMatchObject({
    code: status.INVALID_ARGUMENT,
    details:
      'TraceSettingRequest has more than 65536 fields (map entries and repeated elements, at any depth, count one each; --max-objects): refused before decoding',
  });
  // An ordinary request of the same kind is untouched.
  expect(await rawCall(session, 'ModelMetadata', field(1, Buffer.from('gated')))).toMatchObject({ code: status.OK });
});

// ---- REST: bodies the JSON pre-scan let through ----

test('REST bodies of 2.8 M empty arrays, 4 M nested arrays, or 580,000 distinct parameter keys are refused before JSON.parse', async () => {
  await start();
  const post = async (body: string) => {
    const begun = performance.now();
    const response = await fetch(`${server?.url}/v2/models/gated/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    return {
      status: response.status,
      error: ((await response.json()) as { error?: string }).error,
      ms: performance.now() - begun,
    };
  };
  const tensor = (data: string) => `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":${data}}]}`;
  const room = MESSAGE_LIMIT - 300;
  // Before: 400 "`data` is nested unlike its shape" after JSON.parse built them all (1.25 s, +230 MB).
  const empty = await post(tensor(`[${'[],'.repeat(Math.floor(room / 3) - 1)}[]]`));
  expect(empty).toMatchObject({
    status: 400,
    error: 'Request body has more than 65536 JSON arrays (--max-objects): refused before parsing',
  });
  expect(empty.ms).toBeLessThan(3_000);
  // Before: the same answer after a 2 s stall.
  const depth = Math.floor(room / 2);
  const nested = await post(tensor(`${'['.repeat(depth)}${']'.repeat(depth)}`));
  expect(nested).toMatchObject({
    status: 400,
    error: 'Request body is nested more than 128 levels deep: JSON nesting depth exceeds maximum allowed limit',
  });
  // Before: a 1.2 s stall to intern the keys, and a 200.
  let keys = '';
  for (let i = 0; keys.length < room - 1_000; i++) keys += `"k${i.toString(36)}":0,`;
  const members = await post(
    `{"parameters":{${keys}"z":0},"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":[1,1]}]}`,
  );
  expect(members).toMatchObject({
    status: 400,
    error: 'Request body has more than 65536 JSON object members (--max-objects): refused before parsing',
  });
});

// ---- tune killed while its candidate is still starting ----

test('tune SIGKILLed while its candidate server is still loading its model: the candidate stops and its temporary folder goes too', async () => {
  // A JS model whose workers take 30 s to get ready: the candidate stays in its start-up, before
  // serve installs its SIGTERM handler, for the whole test.
  const repo = mkdtempSync(join(tmpdir(), 'bfn-attack-repo-'));
  mkdirSync(join(repo, 'slow'));
  writeFileSync(
    join(repo, 'slow', 'model.mjs'),
    [
      "export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }];",
      "export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }];",
      'export async function context() { await new Promise((resolve) => setTimeout(resolve, 30_000)); }',
      'export function handler(requests) { return requests.map(() => ({ y: { data: [0] } })); }',
    ].join('\n'),
  );
  writeFileSync(join(repo, 'slow', 'config.json'), JSON.stringify({ loadTimeout: 60_000 }));
  const tmp = mkdtempSync(join(tmpdir(), 'bfn-attack-tmp-'));
  const bin = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
  const args = [
    'tune',
    '--model-repository',
    repo,
    '--name',
    'slow',
    '--concurrency',
    '1',
    '--duration',
    '1',
    '--max-candidates',
    '1',
    '--out',
    join(tmp, 'out'),
  ];
  const tune = spawn(process.execPath, [bin, ...args], { stdio: 'ignore', env: { ...process.env, TMPDIR: tmp } });
  started.push(tune);
  let candidate = 0;
  await until(
    'the candidate to start',
    () => {
      candidate = childrenOf(tune.pid as number)[0] ?? 0;
      return candidate !== 0;
    },
    20_000,
  );
  // Its orphan guard is loaded, and it is well into loading the model.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  expect(readdirSync(tmp).filter((f) => f.startsWith('bfn-tune-'))).toHaveLength(1);
  tune.kill('SIGKILL');
  await until('the orphaned candidate to exit', () => !alive(candidate), 15_000);
  // Before: the candidate died of its own SIGTERM's default action, which runs no 'exit' hook,
  // and its folder (its repository copy and its TMPDIR) stayed for good.
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(readdirSync(tmp).filter((f) => f.startsWith('bfn-tune-'))).toEqual([]);
  rmSync(repo, { recursive: true, force: true });
  rmSync(tmp, { recursive: true, force: true });
}, 60_000);

/** Linux: a process is alive while /proc has it and it is not a zombie waiting to be reaped. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && state !== 'Z') out.push(Number(entry));
    } catch {
      // exited while listed
    }
  }
  return out;
}

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
