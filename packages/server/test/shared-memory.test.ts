import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { decodeInferRequest } from '../dist/protocol/decode.js';
import { SharedMemoryRegistry } from '../dist/protocol/shared-memory.js';
import { grpcClient, rawOf } from './grpc-client.js';

// Triton's system shared-memory extension, as tritonclient uses it (its simple_http_shm_client.py
// and simple_grpc_shm_client.py, and qa/L0_shared_memory): regions of files under /dev/shm.

const REPOSITORY = fileURLToPath(new URL('./fixtures/triton-models', import.meta.url));
/** Every key this file creates starts so, and afterAll removes them all. */
const PREFIX = `bfn-shm-test-${process.pid}-`;
const created = new Set<string>();
let counter = 0;

/** A fresh key (`/name`) and the file under /dev/shm that holds `content` (a size: zeros). */
function region(content: number | Buffer): { key: string; path: string } {
  const name = `${PREFIX}${counter++}`;
  const path = join('/dev/shm', name);
  writeFileSync(path, typeof content === 'number' ? Buffer.alloc(content) : content);
  created.add(path);
  return { key: `/${name}`, path };
}

const int32s = (bytes: Buffer, offset = 0, count = 16): number[] =>
  Array.from({ length: count }, (_, i) => bytes.readInt32LE(offset + 4 * i));
const le32 = (values: number[]): Buffer => rawOf(Int32Array.from(values));
/** BYTES elements in Triton's layout: a 4-byte little-endian length, then the bytes. */
const lengthPrefixed = (values: string[]): Buffer =>
  Buffer.concat(values.flatMap((v) => [le32([Buffer.byteLength(v)]), Buffer.from(v)]));

const INPUT0 = Array.from({ length: 16 }, (_, i) => i);
const INPUT1 = Array.from({ length: 16 }, () => 1);

let server: RunningServer;
let off: RunningServer;

beforeAll(async () => {
  server = await startServer({
    modelRepository: REPOSITORY,
    port: 0,
    grpcPort: 0,
    dashboard: 'off',
    sharedMemory: 'system',
  });
  off = await startServer({ modelRepository: REPOSITORY, port: 0, grpcPort: 0, dashboard: 'off' });
}, 60_000);

afterAll(async () => {
  await Promise.all([server?.close(), off?.close()]);
  for (const path of created) rmSync(path, { force: true, recursive: true });
  expect([...created].filter((path) => existsSync(path))).toEqual([]);
});

/** GET for `/v2` and the status routes; POST otherwise, with `body` as JSON (or none). */
async function rest(url: string, path: string, body?: object): Promise<{ status: number; body: any }> {
  const get = path === '/v2' || path.endsWith('/status');
  const response = await fetch(
    `${url}${path}`,
    body === undefined
      ? { method: get ? 'GET' : 'POST' }
      : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) },
  );
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

const register = (url: string, name: string, key: string, byteSize: number, offset?: number) =>
  rest(url, `/v2/systemsharedmemory/region/${encodeURIComponent(name)}/register`, {
    key,
    byte_size: byteSize,
    ...(offset === undefined ? {} : { offset }),
  });
const unregisterAll = (url: string) => rest(url, '/v2/systemsharedmemory/unregister');

/** What `fn` throws. */
function thrown(fn: () => unknown): any {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('did not throw');
}

// Each test starts with no region registered.
beforeEach(async () => {
  if (server !== undefined) await unregisterAll(server.url);
});

/** A `simple` request whose tensors name regions: `[region, byte_size, offset]` per tensor. */
function shmRequest(inputs: [string, number, number][], outputs: [string, number, number][]) {
  const parameters = ([name, size, offset]: [string, number, number]) => ({
    shared_memory_region: name,
    shared_memory_byte_size: size,
    ...(offset === 0 ? {} : { shared_memory_offset: offset }),
  });
  return {
    inputs: inputs.map((r, i) => ({ name: `INPUT${i}`, datatype: 'INT32', shape: [1, 16], parameters: parameters(r) })),
    outputs: outputs.map((r, i) => ({ name: `OUTPUT${i}`, parameters: { binary_data: false, ...parameters(r) } })),
  };
}

describe('REST', () => {
  test('round trip: INPUT0 and INPUT1 read from one region, OUTPUT0 and OUTPUT1 written into another, read back from the file', async () => {
    const input = region(Buffer.concat([le32(INPUT0), le32(INPUT1)]));
    const output = region(128);
    expect((await register(server.url, 'input_data', input.key, 128)).status).toBe(200);
    // As tritonclient.http sends it: a JSON body without Content-Type.
    const bare = await fetch(`${server.url}/v2/systemsharedmemory/region/output_data/register`, {
      method: 'POST',
      body: Buffer.from(JSON.stringify({ key: output.key, offset: 0, byte_size: 128 })),
    });
    expect(bare.status).toBe(200);
    const answer = await rest(
      server.url,
      '/v2/models/simple/infer',
      shmRequest(
        [
          ['input_data', 64, 0],
          ['input_data', 64, 64],
        ],
        [
          ['output_data', 64, 0],
          ['output_data', 64, 64],
        ],
      ),
    );
    expect(answer.status).toBe(200);
    // No data for an output written into a region: only where it went.
    expect(answer.body.outputs).toEqual([
      {
        name: 'OUTPUT0',
        datatype: 'INT32',
        shape: [1, 16],
        parameters: { shared_memory_region: 'output_data', shared_memory_byte_size: 64 },
      },
      {
        name: 'OUTPUT1',
        datatype: 'INT32',
        shape: [1, 16],
        parameters: { shared_memory_region: 'output_data', shared_memory_byte_size: 64, shared_memory_offset: 64 },
      },
    ]);
    const written = readFileSync(output.path);
    expect(int32s(written, 0)).toEqual(INPUT0.map((x, i) => x + (INPUT1[i] as number)));
    expect(int32s(written, 64)).toEqual(INPUT0.map((x, i) => x - (INPUT1[i] as number)));

    const status = await rest(server.url, '/v2/systemsharedmemory/status');
    expect(status.body).toEqual([
      { name: 'input_data', key: input.key, offset: 0, byte_size: 128 },
      { name: 'output_data', key: output.key, offset: 0, byte_size: 128 },
    ]);
    expect((await rest(server.url, '/v2')).body.extensions).toContain('system_shared_memory');
    expect((await unregisterAll(server.url)).status).toBe(200);
  });

  test("BYTES (simple_string): Triton's length-prefixed layout read from a region and written into one", async () => {
    const a = INPUT0.map(String);
    const b = INPUT1.map(String);
    const bytes0 = lengthPrefixed(a);
    const bytes1 = lengthPrefixed(b);
    const input = region(Buffer.concat([bytes0, bytes1]));
    const output = region(512);
    await register(server.url, 'strings_in', input.key, bytes0.length + bytes1.length);
    await register(server.url, 'strings_out', output.key, 512);
    const body = {
      inputs: [
        {
          name: 'INPUT0',
          datatype: 'BYTES',
          shape: [1, 16],
          parameters: { shared_memory_region: 'strings_in', shared_memory_byte_size: bytes0.length },
        },
        {
          name: 'INPUT1',
          datatype: 'BYTES',
          shape: [1, 16],
          parameters: {
            shared_memory_region: 'strings_in',
            shared_memory_byte_size: bytes1.length,
            shared_memory_offset: bytes0.length,
          },
        },
      ],
      outputs: [{ name: 'OUTPUT0', parameters: { shared_memory_region: 'strings_out', shared_memory_byte_size: 512 } }],
    };
    const answer = await rest(server.url, '/v2/models/simple_string/infer', body);
    expect(answer.status).toBe(200);
    const sums = INPUT0.map((x, i) => String(x + (INPUT1[i] as number)));
    const expected = lengthPrefixed(sums);
    expect(answer.body.outputs[0].parameters).toEqual({
      shared_memory_region: 'strings_out',
      shared_memory_byte_size: expected.length,
    });
    expect(readFileSync(output.path).subarray(0, expected.length)).toEqual(expected);
    await unregisterAll(server.url);
  });

  test("a region registered at an offset into its object (a page in, as Triton's qa registers it): reads and writes land there", async () => {
    const page = 4096;
    const input = region(Buffer.concat([Buffer.alloc(page, 0xff), le32(INPUT0), le32(INPUT1)]));
    const output = region(page + 128);
    await register(server.url, 'in_at_page', input.key, 128, page);
    await register(server.url, 'out_at_page', output.key, 128, page);
    const answer = await rest(
      server.url,
      '/v2/models/simple/infer',
      shmRequest(
        [
          ['in_at_page', 64, 0],
          ['in_at_page', 64, 64],
        ],
        [['out_at_page', 64, 64]],
      ),
    );
    expect(answer.status).toBe(200);
    const written = readFileSync(output.path);
    expect(int32s(written, page + 64)).toEqual(INPUT0.map((x, i) => x + (INPUT1[i] as number)));
    // Nothing outside the bytes the request gave the output.
    expect(written.subarray(0, page + 64).every((byte) => byte === 0)).toBe(true);
  });

  test("registration is checked against the file: offset + byte_size past its end is refused, in Triton's words", async () => {
    const { key } = region(64);
    for (const [size, offset] of [
      [65, 0],
      [64, 1],
      [1, 64],
      [0, 65],
    ] as const) {
      const answer = await register(server.url, 'too_far', key, size, offset);
      expect(answer.status).toBe(400);
      expect(answer.body.error).toMatch(/failed to register shared memory region 'too_far'.*invalid args/);
    }
    const missing = await register(server.url, 'missing', `/${PREFIX}never-created`, 8);
    expect(missing).toMatchObject({
      status: 400,
      body: { error: expect.stringContaining('Unable to open shared memory region') },
    });
    expect((await rest(server.url, '/v2/systemsharedmemory/status')).body).toEqual([]);
  });

  test('a bad key is refused before anything is opened: ../etc/passwd, /a/b, /.., /, no leading slash, NUL, too long', async () => {
    for (const key of [
      '../etc/passwd',
      '/../etc/passwd',
      '/a/b',
      '/..',
      '/.',
      '/',
      '///',
      'no-slash',
      '/a\u0000b',
      `/${'x'.repeat(256)}`,
    ]) {
      const answer = await register(server.url, 'evil', key, 8);
      expect(answer.status, key).toBe(400);
      expect(answer.body.error).toContain("cannot register shared memory region 'evil' - invalid shm key");
    }
    const noKey = await rest(server.url, '/v2/systemsharedmemory/region/evil/register', { byte_size: 8 });
    expect(noKey).toMatchObject({ status: 400, body: { error: "Shared memory register request has no 'key' field" } });
    const badSize = await rest(server.url, '/v2/systemsharedmemory/region/evil/register', { key: '/x', byte_size: -1 });
    expect(badSize.status).toBe(400);
    expect((await rest(server.url, '/v2/systemsharedmemory/status')).body).toEqual([]);
  });

  test('a symbolic link under /dev/shm is refused, even to another region; a FIFO cannot hold the server', async () => {
    const target = region(64);
    const link = join('/dev/shm', `${PREFIX}link`);
    symlinkSync('/etc/passwd', link);
    created.add(link);
    const toShm = join('/dev/shm', `${PREFIX}link-to-shm`);
    symlinkSync(target.path, toShm);
    created.add(toShm);
    for (const path of [link, toShm]) {
      const answer = await register(server.url, 'linked', `/${path.slice('/dev/shm/'.length)}`, 8);
      expect(answer).toMatchObject({ status: 400, body: { error: expect.stringContaining('it is a symbolic link') } });
    }
    const fifo = join('/dev/shm', `${PREFIX}fifo`);
    execFileSync('mkfifo', [fifo]);
    created.add(fifo);
    const started = performance.now();
    const answer = await register(server.url, 'fifo', `/${PREFIX}fifo`, 8);
    expect(answer).toMatchObject({ status: 400, body: { error: expect.stringContaining('not a regular file') } });
    expect(performance.now() - started).toBeLessThan(5000);
    // A directory is no region either.
    const directory = join('/dev/shm', `${PREFIX}dir`);
    mkdirSync(directory);
    created.add(directory);
    expect(await register(server.url, 'dir', `/${PREFIX}dir`, 8)).toMatchObject({
      status: 400,
      body: { error: expect.stringContaining('it is a directory') },
    });
    expect((await rest(server.url, '/v2/systemsharedmemory/status')).body).toEqual([]);
  });

  test('a region unlinked, shrunk or replaced after registration is a 400 at use, for inputs and outputs; the server serves on', async () => {
    const make = async (name: string) => {
      const r = region(Buffer.concat([le32(INPUT0), le32(INPUT1)]));
      expect((await register(server.url, name, r.key, 128)).status).toBe(200);
      return r;
    };
    const out = await make('out');
    const infer = (inputRegion: string, outputRegion = 'out') =>
      rest(
        server.url,
        '/v2/models/simple/infer',
        shmRequest(
          [
            [inputRegion, 64, 0],
            [inputRegion, 64, 64],
          ],
          [[outputRegion, 64, 0]],
        ),
      );

    const gone = await make('gone');
    rmSync(gone.path);
    const vanished = await infer('gone');
    expect(vanished).toMatchObject({ status: 400, body: { error: expect.stringContaining('no longer exists') } });

    const shrunk = await make('shrunk');
    truncateSync(shrunk.path, 100);
    const short = await infer('shrunk');
    expect(short).toMatchObject({ status: 400, body: { error: expect.stringContaining('shrank to 100 bytes') } });

    const replaced = await make('replaced');
    rmSync(replaced.path);
    writeFileSync(replaced.path, Buffer.alloc(128));
    const other = await infer('replaced');
    expect(other).toMatchObject({
      status: 400,
      body: { error: expect.stringContaining('another object than the one registered') },
    });

    // An output region that vanished: the inputs are read, the answer is refused.
    await make('input_ok');
    rmSync(out.path);
    const noOutput = await infer('input_ok');
    expect(noOutput).toMatchObject({
      status: 400,
      body: { error: expect.stringContaining("Cannot write output 'OUTPUT0'") },
    });

    // Still serving, from a region that is fine.
    const fresh = region(128);
    await register(server.url, 'out2', fresh.key, 128);
    expect((await infer('input_ok', 'out2')).status).toBe(200);
    expect(int32s(readFileSync(fresh.path))).toEqual(INPUT0.map((x) => x + 1));
    await unregisterAll(server.url);
  });

  test("the request's offsets and sizes are checked against the region and the shape, in Triton's words", async () => {
    const r = region(Buffer.concat([le32(INPUT0), le32(INPUT1)]));
    await register(server.url, 'in', r.key, 128);
    const out = region(128);
    await register(server.url, 'out', out.key, 128);
    const infer = (body: object) => rest(server.url, '/v2/models/simple/infer', body);
    expect(
      (
        await infer(
          shmRequest(
            [
              ['in', 64, 0],
              ['in', 64, 128],
            ],
            [],
          ),
        )
      ).body.error,
    ).toContain("Invalid offset for shared memory region: 'in'");
    expect(
      (
        await infer(
          shmRequest(
            [
              ['in', 64, 0],
              ['in', 64, 65],
            ],
            [],
          ),
        )
      ).body.error,
    ).toContain("Invalid offset + byte size for shared memory region: 'in'");
    expect(
      (
        await infer(
          shmRequest(
            [
              ['in', 64, 0],
              ['in', 128, 0],
            ],
            [],
          ),
        )
      ).body.error,
    ).toContain("input byte size mismatch for input 'INPUT1'");
    expect(
      (
        await infer(
          shmRequest(
            [
              ['in', 64, 0],
              ['in', 64, 64],
            ],
            [['out', 32, 0]],
          ),
        )
      ).body.error,
    ).toContain(
      "shared memory size specified with the request for output 'OUTPUT0' (32 bytes) should be at least 64 bytes to hold the results",
    );
    expect(
      (
        await infer(
          shmRequest(
            [
              ['nowhere', 64, 0],
              ['in', 64, 64],
            ],
            [],
          ),
        )
      ).body.error,
    ).toContain("Unable to find shared memory region: 'nowhere'");
    expect(
      (
        await infer(
          shmRequest(
            [
              ['in', 2 ** 64 - 32, 32],
              ['in', 64, 64],
            ],
            [],
          ),
        )
      ).body.error,
    ).toContain('Integer overflow detected: byte_size ');
    const both = shmRequest(
      [
        ['in', 64, 0],
        ['in', 64, 64],
      ],
      [],
    );
    (both.inputs[0] as Record<string, unknown>).data = INPUT0;
    expect((await infer(both)).body.error).toContain("reads shared memory region 'in' and also has `data`");
    const stray = {
      inputs: [
        {
          name: 'INPUT0',
          datatype: 'INT32',
          shape: [1, 16],
          data: INPUT0,
          parameters: { shared_memory_byte_size: 64 },
        },
      ],
    };
    expect((await infer(stray)).body.error).toContain(
      "'shared_memory_byte_size' can not be specified without 'shared_memory_region'",
    );
    await unregisterAll(server.url);
  });

  test('status, unregister (one or all), and a name registered twice', async () => {
    const a = region(16);
    const b = region(16);
    await register(server.url, 'a', a.key, 16);
    await register(server.url, 'b', b.key, 8, 8);
    expect((await rest(server.url, '/v2/systemsharedmemory/region/b/status')).body).toEqual([
      { name: 'b', key: b.key, offset: 8, byte_size: 8 },
    ]);
    expect(await rest(server.url, '/v2/systemsharedmemory/region/zz/status')).toMatchObject({
      status: 404,
      body: { error: "Unable to find system shared memory region: 'zz'" },
    });
    expect(await register(server.url, 'a', b.key, 16)).toMatchObject({
      status: 400,
      body: { error: "shared memory region 'a' already in manager" },
    });
    expect((await rest(server.url, '/v2/systemsharedmemory/region/a/unregister')).status).toBe(200);
    // Unregistering a region that is not registered is no error (Triton's behaviour).
    expect((await rest(server.url, '/v2/systemsharedmemory/region/a/unregister')).status).toBe(200);
    expect((await rest(server.url, '/v2/systemsharedmemory/status')).body.map((s: { name: string }) => s.name)).toEqual(
      ['b'],
    );
    expect((await unregisterAll(server.url)).status).toBe(200);
    expect((await rest(server.url, '/v2/systemsharedmemory/status')).body).toEqual([]);
  });

  test('CUDA shared memory: no region, unregistering is a no-op, registering is a 400 that says it is not supported', async () => {
    expect(await rest(server.url, '/v2/cudasharedmemory/status')).toMatchObject({ status: 200, body: [] });
    expect((await rest(server.url, '/v2/cudasharedmemory/unregister')).status).toBe(200);
    const answer = await rest(server.url, '/v2/cudasharedmemory/region/gpu/register', {
      raw_handle: { b64: 'AAAA' },
      device_id: 0,
      byte_size: 64,
    });
    expect(answer).toMatchObject({
      status: 400,
      body: { error: expect.stringContaining('CUDA shared memory is not supported on this server') },
    });
  });
});

describe('gRPC', () => {
  const param = (value: string | number) =>
    typeof value === 'string' ? { string_param: value } : { int64_param: value };
  const shm = (name: string, size: number, offset = 0) => ({
    shared_memory_region: param(name),
    shared_memory_byte_size: param(size),
    ...(offset === 0 ? {} : { shared_memory_offset: param(offset) }),
  });

  test('round trip: inputs read from a region (one beside a raw input), outputs written into one, read back from the file', async () => {
    const client = grpcClient(server.grpcUrl as string);
    try {
      const input = region(Buffer.concat([le32(INPUT0), le32(INPUT1)]));
      const output = region(128);
      await client.call('SystemSharedMemoryRegister', {
        name: 'input_data',
        key: input.key,
        offset: 0,
        byte_size: 128,
      });
      await client.call('SystemSharedMemoryRegister', {
        name: 'output_data',
        key: output.key,
        offset: 0,
        byte_size: 128,
      });
      const status = await client.call('SystemSharedMemoryStatus', {});
      expect(status.regions).toEqual({
        input_data: { name: 'input_data', key: input.key, offset: 0, byte_size: 128 },
        output_data: { name: 'output_data', key: output.key, offset: 0, byte_size: 128 },
      });
      const answer = await client.call('ModelInfer', {
        model_name: 'simple',
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: shm('input_data', 64) },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: shm('input_data', 64, 64) },
        ],
        outputs: [
          { name: 'OUTPUT0', parameters: shm('output_data', 64) },
          { name: 'OUTPUT1', parameters: shm('output_data', 64, 64) },
        ],
      });
      // As Triton: each output keeps its place in raw_output_contents, empty.
      expect(answer.raw_output_contents.map((b: Buffer) => b.length)).toEqual([0, 0]);
      expect(answer.outputs[1]).toMatchObject({ name: 'OUTPUT1', datatype: 'INT32', shape: [1, 16] });
      expect(answer.outputs[1].parameters.shared_memory_region.string_param).toBe('output_data');
      const written = readFileSync(output.path);
      expect(int32s(written, 0)).toEqual(INPUT0.map((x) => x + 1));
      expect(int32s(written, 64)).toEqual(INPUT0.map((x) => x - 1));

      // INPUT0 from the region, INPUT1 raw: raw_input_contents holds the one raw input only, as tritonclient sends it.
      const mixed = await client.call('ModelInfer', {
        model_name: 'simple',
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: shm('input_data', 64) },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16] },
        ],
        outputs: [{ name: 'OUTPUT0' }],
        raw_input_contents: [le32(INPUT0.map(() => 5))],
      });
      expect(int32s(mixed.raw_output_contents[0])).toEqual(INPUT0.map((x) => x + 5));

      const ext = await client.call('ServerMetadata', {});
      expect(ext.extensions).toContain('system_shared_memory');
      await client.call('SystemSharedMemoryUnregister', { name: 'input_data' });
      expect(Object.keys((await client.call('SystemSharedMemoryStatus', {})).regions)).toEqual(['output_data']);
      await client.call('SystemSharedMemoryUnregister', {});
      expect((await client.call('SystemSharedMemoryStatus', {})).regions).toEqual({});
    } finally {
      client.close();
    }
  });

  test('errors: bad key and bounds INVALID_ARGUMENT, twice ALREADY_EXISTS, unknown NOT_FOUND, a vanished region at use INVALID_ARGUMENT, CUDA UNIMPLEMENTED', async () => {
    const client = grpcClient(server.grpcUrl as string);
    try {
      const r = region(Buffer.concat([le32(INPUT0), le32(INPUT1)]));
      const key = await client.fails('SystemSharedMemoryRegister', { name: 'x', key: '../etc/passwd', byte_size: 8 });
      expect(key).toMatchObject({
        code: GrpcStatus.INVALID_ARGUMENT,
        details: expect.stringContaining('invalid shm key'),
      });
      const bounds = await client.fails('SystemSharedMemoryRegister', {
        name: 'x',
        key: r.key,
        offset: 1,
        byte_size: 128,
      });
      expect(bounds).toMatchObject({
        code: GrpcStatus.INVALID_ARGUMENT,
        details: expect.stringMatching(/failed to register shared memory region 'x'.*invalid args/),
      });
      const huge = await client.fails('SystemSharedMemoryRegister', {
        name: 'x',
        key: r.key,
        offset: 0,
        byte_size: '18446744073709551615',
      });
      expect(huge).toMatchObject({
        code: GrpcStatus.INVALID_ARGUMENT,
        details: expect.stringContaining('past the largest offset'),
      });
      await client.call('SystemSharedMemoryRegister', { name: 'x', key: r.key, byte_size: 128 });
      expect(await client.fails('SystemSharedMemoryRegister', { name: 'x', key: r.key, byte_size: 128 })).toMatchObject(
        { code: GrpcStatus.ALREADY_EXISTS, details: "shared memory region 'x' already in manager" },
      );
      expect(await client.fails('SystemSharedMemoryStatus', { name: 'nope' })).toMatchObject({
        code: GrpcStatus.NOT_FOUND,
      });

      rmSync(r.path);
      const use = await client.fails('ModelInfer', {
        model_name: 'simple',
        inputs: [
          { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], parameters: shm('x', 64) },
          { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], parameters: shm('x', 64, 64) },
        ],
      });
      expect(use).toMatchObject({
        code: GrpcStatus.INVALID_ARGUMENT,
        details: expect.stringContaining('no longer exists'),
      });

      expect((await client.call('CudaSharedMemoryStatus', {})).regions).toEqual({});
      await client.call('CudaSharedMemoryUnregister', {});
      const cuda = await client.fails('CudaSharedMemoryRegister', {
        name: 'gpu',
        raw_handle: Buffer.alloc(64),
        device_id: 0,
        byte_size: 64,
      });
      expect(cuda).toMatchObject({
        code: GrpcStatus.UNIMPLEMENTED,
        details: expect.stringContaining('CUDA shared memory is not supported on this server'),
      });
      await client.call('SystemSharedMemoryUnregister', {});
    } finally {
      client.close();
    }
  });
});

test('off by default, as in Triton: status is empty, register/unregister refused (REST 400, gRPC UNIMPLEMENTED), and an input naming a region is a 400, not "0 elements"', async () => {
  const r = region(128);
  expect(await rest(off.url, '/v2/systemsharedmemory/status')).toMatchObject({ status: 200, body: [] });
  const refused = await register(off.url, 'r', r.key, 128);
  expect(refused).toMatchObject({
    status: 400,
    body: { error: expect.stringContaining('Client shared memory is disabled') },
  });
  expect((await unregisterAll(off.url)).body.error).toContain('Client shared memory is disabled');
  const infer = await rest(
    off.url,
    '/v2/models/simple/infer',
    shmRequest(
      [
        ['r', 64, 0],
        ['r', 64, 64],
      ],
      [],
    ),
  );
  expect(infer).toMatchObject({
    status: 400,
    body: { error: expect.stringContaining("Start the server with '--shared-memory system'") },
  });
  expect((await rest(off.url, '/v2')).body.extensions).not.toContain('system_shared_memory');
  const client = grpcClient(off.grpcUrl as string);
  try {
    expect(await client.fails('SystemSharedMemoryRegister', { name: 'r', key: r.key, byte_size: 128 })).toMatchObject({
      code: GrpcStatus.UNIMPLEMENTED,
      details: expect.stringContaining('Client shared memory is disabled'),
    });
    expect((await client.call('SystemSharedMemoryStatus', {})).regions).toEqual({});
  } finally {
    client.close();
  }
});

test('the bytes one request reads from regions are bounded (the body limit): beyond, 413 before reading', () => {
  const registry = new SharedMemoryRegistry({ sharedMemory: 'system', maxReadBytes: 100 });
  const r = region(Buffer.concat([le32(INPUT0), le32(INPUT1)]));
  registry.register('in', r.key, 0, 128);
  const spec = (name: string) => ({ name, datatype: 'INT32' as const, shape: [-1, 16] });
  const signature = { inputs: [spec('INPUT0'), spec('INPUT1')], outputs: [spec('OUTPUT0')] };
  const body = shmRequest(
    [
      ['in', 64, 0],
      ['in', 64, 64],
    ],
    [],
  );
  expect(thrown(() => decodeInferRequest(body, undefined, signature, 64, registry))).toMatchObject({
    status: 413,
    message: expect.stringContaining('(--body-limit)'),
  });
  const roomy = new SharedMemoryRegistry({ sharedMemory: 'system', maxReadBytes: 128 });
  roomy.register('in', r.key, 0, 128);
  const decoded = decodeInferRequest(body, undefined, signature, 64, roomy);
  expect(Array.from(decoded.item.inputs.INPUT1?.data as Int32Array)).toEqual(INPUT1);
});

test('the registry: its options are checked, and at most sharedMemoryRegions regions are registered', () => {
  expect(() => new SharedMemoryRegistry({ sharedMemory: 'cuda' as 'system' })).toThrow(
    "Expected `sharedMemory` to be 'off' or 'system', got `cuda`",
  );
  expect(() => new SharedMemoryRegistry({ sharedMemoryRegions: 0 })).toThrow(
    'Expected `sharedMemoryRegions` to be an integer from 1 and up, got `0`',
  );
  expect(() => new SharedMemoryRegistry({ sharedMemoryRegions: '2' as unknown as number })).toThrow(TypeError);
  const registry = new SharedMemoryRegistry({ sharedMemory: 'system', sharedMemoryRegions: 2 });
  const r = region(8);
  registry.register('one', r.key, 0, 8);
  registry.register('two', r.key, 0, 8);
  expect(thrown(() => registry.register('three', r.key, 0, 8))).toMatchObject({
    status: 400,
    grpcCode: 'RESOURCE_EXHAUSTED',
    message: expect.stringContaining('at most 2 shared memory regions (--shared-memory-regions)'),
  });
  expect(() => new SharedMemoryRegistry().register('x'.repeat(257), r.key, 0, 8)).toThrow(
    'Client shared memory is disabled',
  );
  registry.unregister('one');
  expect(() => registry.register('x'.repeat(257), r.key, 0, 8)).toThrow('at most 256 characters');
  expect(registry.size).toBe(1);
});
