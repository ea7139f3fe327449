import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';

// A BYTES tensor was one buffer per string on its way to and from the worker thread, and Node checks a
// transfer list pairwise: 150,000 empty strings in one request froze the whole server for about 5 s.
let repo = '';
let server: RunningServer | undefined;

beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), 'bfn-bytes-'));
  mkdirSync(join(repo, 'echo'));
  writeFileSync(
    join(repo, 'echo', 'model.mjs'),
    `export const inputs = [{ name: 'text', datatype: 'BYTES', shape: [-1, -1] }];
export const outputs = [{ name: 'same', datatype: 'BYTES', shape: [-1, -1] }];
export function handler(requests) { return requests.map((r) => ({ same: { shape: r.inputs.text.shape, data: r.inputs.text.data } })); }
`,
  );
  // Answers how many bytes stand behind its BYTES input: a model must see its request's bytes, nothing more.
  mkdirSync(join(repo, 'behind'));
  writeFileSync(join(repo, 'behind', 'config.json'), JSON.stringify({ parameters: { binary: true } }));
  writeFileSync(
    join(repo, 'behind', 'model.mjs'),
    `export const inputs = [{ name: 'text', datatype: 'BYTES', shape: [-1, -1] }];
export const outputs = [{ name: 'bytes', datatype: 'FP64', shape: [-1, 1] }];
export function handler(requests) { return requests.map((r) => ({ bytes: { data: [r.inputs.text.data[0].buffer.byteLength] } })); }
`,
  );
  server = await startServer({ modelRepository: repo, port: 0, grpcPort: 0, maxDelay: 0 });
});

afterAll(async () => {
  await server?.close();
  rmSync(repo, { recursive: true, force: true });
});

/** The longest the server took to answer /v2/health/live while `work` ran. */
async function longestStall(work: Promise<unknown>): Promise<number> {
  let done = false;
  void work.finally(() => (done = true));
  let longest = 0;
  while (!done) {
    const started = performance.now();
    await fetch(`${server?.url}/v2/health/live`);
    longest = Math.max(longest, performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return longest;
}

test('150,000 empty strings in one BYTES row go to a JS model and back without freezing the server', async () => {
  const count = 150_000;
  const body = JSON.stringify({
    inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, count], data: new Array(count).fill('') }],
  });
  const answer = fetch(`${server?.url}/v2/models/echo/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  }).then((r) => r.json());
  const stall = await longestStall(answer);
  const result = (await answer) as { outputs: { name: string; shape: number[]; data: string[] }[] };
  expect(result.outputs[0]?.shape).toEqual([1, count]);
  expect(result.outputs[0]?.data.length).toBe(count);
  // Before the fix the health check waited about 5 s (the whole post was quadratic); now the parse and the
  // copies are linear. Wide margin for a loaded 2-core machine.
  expect(stall).toBeLessThan(2_000);
});

test('BYTES elements keep their content through the packing, in order', async () => {
  const data = ['', 'a', 'héllo', '', '✓✓', 'x'.repeat(1000)];
  const response = await fetch(`${server?.url}/v2/models/echo/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'text', datatype: 'BYTES', shape: [2, 3], data }] }),
  });
  const result = (await response.json()) as { outputs: { data: string[] }[] };
  expect(result.outputs[0]?.data).toEqual(data);
});

test("a BYTES element from a small binary request is no view of Node's pooled body buffer: the model never sees another client's bytes", async () => {
  const element = Buffer.from('secret');
  const tensor = Buffer.concat([Buffer.from(Uint32Array.of(element.length).buffer), element]);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: tensor.length } }],
    }),
  );
  const response = await fetch(`${server?.url}/v2/models/behind/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, tensor]),
  });
  const result = (await response.json()) as { outputs: { data: number[] }[] };
  // The element's own bytes, packed without their length prefixes. Before: 8192, the whole pooled block the
  // body was read into, other requests' bytes included.
  expect(result.outputs[0]?.data).toEqual([element.length]);
});

test('a legitimate BYTES batch of 64 x 4,096 strings is served over gRPC typed contents; past --max-bytes-elements a request is refused before parsing', async () => {
  const client = grpcClient(server?.grpcUrl as string);
  try {
    const count = 64 * 4_096;
    const answer = await client.call('ModelInfer', {
      model_name: 'echo',
      inputs: [
        {
          name: 'text',
          datatype: 'BYTES',
          shape: [64, 4_096],
          contents: { bytes_contents: Array.from({ length: count }, (_, i) => Buffer.from(String(i % 10))) },
        },
      ],
    });
    // Before: INVALID_ARGUMENT, its BYTES elements counted against --max-objects (65,536).
    expect(answer.outputs[0].shape.map(Number)).toEqual([64, 4_096]);
  } finally {
    client.close();
  }
  const tooMany = 1_048_577;
  const body = JSON.stringify({
    inputs: [{ name: 'text', datatype: 'BYTES', shape: [1, tooMany], data: new Array(tooMany).fill('') }],
  });
  const response = await fetch(`${server?.url}/v2/models/echo/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  expect(response.status).toBe(400);
  expect(((await response.json()) as { error: string }).error).toBe(
    'Request body has more than 1048576 JSON strings (--max-bytes-elements): refused before parsing',
  );
});
