import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { TEST_CACHE } from './helpers.js';
import { killRunning, run } from './cli-run.js';

afterEach(killRunning);

test('a server that ran an ONNX model leaves no mat-debug-<pid>.log (onnxruntime telemetry) in its temp folder', async () => {
  const temp = mkdtempSync(join(tmpdir(), 'bfn-litter-'));
  try {
    const cli = run(['serve', '--port', '0', '--no-grpc', '--threads', '1', '--cache-dir', TEST_CACHE], {
      TMPDIR: temp,
    });
    const url = await cli.url;
    const metadata = (await (await fetch(`${url}/v2/models/mlp`)).json()) as {
      inputs: { name: string; shape: number[] }[];
    };
    const input = metadata.inputs[0] as { name: string; shape: number[] };
    const width = input.shape[1] as number;
    const response = await fetch(`${url}/v2/models/mlp/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: input.name, datatype: 'FP32', shape: [1, width], data: new Array(width).fill(0.5) }],
      }),
    });
    expect(response.status).toBe(200);
    cli.child.kill('SIGTERM');
    expect(await cli.exit).toBe(0);
    expect(readdirSync(temp)).toEqual([]);
  } finally {
    rmSync(temp, { recursive: true, force: true });
  }
});
