import { afterEach, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { postJson, writeIntModel } from './helpers.js';
import { row16, tritonRepository } from './triton-helpers.js';

// Triton's statistics extension measures three phases of each execution: compute_input (the inputs
// stacked into one batch and sent to the worker thread), compute_infer (the model's own run) and
// compute_output (the batch split per request and sent back). Each execution counts once in each.
let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
afterEach(async () => {
  client?.close();
  await server?.close();
  server = client = undefined;
});

type Duration = { count: number; ns: number };

/** The model's statistics over REST and gRPC, checked to agree. */
async function stats(name: string): Promise<Record<string, any>> {
  const rest = (
    (await (await fetch(`${server?.url}/v2/models/${name}/stats`)).json()) as { model_stats: Record<string, any>[] }
  ).model_stats[0] as Record<string, any>;
  const grpc = (await client?.call('ModelStatistics', { name, version: '' }))?.model_stats[0];
  for (const phase of ['compute_input', 'compute_infer', 'compute_output'])
    expect(grpc.inference_stats[phase]).toEqual(rest.inference_stats[phase]);
  expect(grpc.execution_count).toBe(rest.execution_count);
  return rest;
}

/** Every phase counted once per execution, each with time; the three add up to the executions' time. */
function expectPhases(model: Record<string, any>): void {
  const executions = model.execution_count as number;
  expect(executions).toBeGreaterThan(0);
  const phases = ['compute_input', 'compute_infer', 'compute_output'].map((p) => model.inference_stats[p] as Duration);
  for (const phase of phases) {
    expect(phase.count).toBe(executions);
    expect(phase.ns).toBeGreaterThan(0);
  }
  let batches = 0;
  for (const entry of model.batch_stats as Record<string, any>[]) {
    const counts = ['compute_input', 'compute_infer', 'compute_output'].map((p) => (entry[p] as Duration).count);
    expect(new Set(counts).size).toBe(1);
    batches += counts[0] as number;
    for (const p of ['compute_input', 'compute_infer', 'compute_output'])
      expect((entry[p] as Duration).ns).toBeGreaterThanOrEqual(0);
  }
  expect(batches).toBe(executions);
}

test('an ONNX model: compute_input and compute_output counted once per execution, with time, on REST and gRPC', async () => {
  server = await startServer({ model: writeIntModel(), port: 0, grpcPort: 0, maxDelay: 2 });
  client = grpcClient(server.grpcUrl as string);
  const name = server.model.name;
  const body = (rows: number) =>
    JSON.stringify({
      inputs: [
        { name: 'ids', shape: [rows, 4], datatype: 'INT64', data: Array(rows * 4).fill(2) },
        { name: 'mask', shape: [rows, 4], datatype: 'INT32', data: Array(rows * 4).fill(1) },
      ],
    });
  const answers = await Promise.all(
    Array.from({ length: 12 }, (_, i) => postJson(`${server?.url}/v2/models/${name}/infer`, body(1 + (i % 3)))),
  );
  expect(answers.map((a) => a.status)).toEqual(Array(12).fill(200));
  const model = await stats(name);
  expect(model.inference_count).toBe(24);
  expectPhases(model);
});

test("a JS model (Triton's simple): the same, and the phases add up to the executions' time", async () => {
  server = await startServer({ modelRepository: tritonRepository(), port: 0, grpcPort: 0, maxDelay: 2 });
  client = grpcClient(server.grpcUrl as string);
  const calls = Array.from({ length: 10 }, (_, i) =>
    client?.call('ModelInfer', {
      model_name: 'simple',
      inputs: [
        { name: 'INPUT0', datatype: 'INT32', shape: [1, 16], contents: { int_contents: row16(i) } },
        { name: 'INPUT1', datatype: 'INT32', shape: [1, 16], contents: { int_contents: row16(0) } },
      ],
    }),
  );
  await Promise.all(calls);
  const model = await stats('simple');
  expect(model.inference_count).toBe(10);
  expectPhases(model);
  // The split moves time between phases, never adds any: per batch size too.
  const total = (d: Record<string, Duration>) =>
    (d.compute_input?.ns ?? 0) + (d.compute_infer?.ns ?? 0) + (d.compute_output?.ns ?? 0);
  expect(total(model.inference_stats)).toBe(
    model.batch_stats.reduce((sum: number, entry: Record<string, Duration>) => sum + total(entry), 0),
  );
});
