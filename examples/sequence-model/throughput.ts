// file: examples/sequence-model/throughput.ts
// Sequence batching against one sequence per run: the running normalizer of ./repository served
// twice, one sequence per run against up to 32 (one worker each), driven by 64 sequences in a closed loop
// over REST (each sends its next chunk once the last is answered), for `seconds` each. Prints the
// requests per second of both, and the statistics that show several sequences per run.
//   node examples/dist/sequence-model/throughput.js [seconds]
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '@batched-fn/server';

const SOURCE = fileURLToPath(new URL('../../sequence-model/repository/normalizer/', import.meta.url));
const SEQUENCES = 64;
const FEATURES = 8;

export async function throughput(seconds: number): Promise<Record<string, { perSecond: number; perRun: number }>> {
  const repository = mkdtempSync(join(tmpdir(), 'bfn-sequence-bench-'));
  const config = JSON.parse(readFileSync(join(SOURCE, 'config.json'), 'utf8')) as Record<string, unknown>;
  // A request is two frames, two rows: `maxBatchSize` 2 runs one sequence at a time, 64 up to 32.
  for (const [name, maxBatchSize] of [
    ['batched', 64],
    ['single', 2],
  ] as const) {
    cpSync(SOURCE, join(repository, name), { recursive: true });
    writeFileSync(join(repository, name, 'config.json'), JSON.stringify({ ...config, maxBatchSize, workers: 1 }));
  }
  const server = await startServer({ modelRepository: repository, port: 0, grpcPort: 0, dashboard: 'off' });
  const results: Record<string, { perSecond: number; perRun: number }> = {};
  try {
    for (const model of ['batched', 'single']) {
      let answered = 0;
      const until = performance.now() + seconds * 1000;
      const began = performance.now();
      await Promise.all(
        Array.from({ length: SEQUENCES }, async (_, s) => {
          for (let k = 0; performance.now() < until; k++) {
            const frames = Array.from({ length: 2 * FEATURES }, (_, i) => Math.sin(s + k + i));
            const response = await fetch(`${server.url}/v2/models/${model}/infer`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({
                inputs: [{ name: 'frames', datatype: 'FP32', shape: [2, FEATURES], data: frames }],
                parameters: { sequence_id: `${model}-${s}`, sequence_start: k === 0 },
              }),
            });
            if (response.status !== 200) throw new Error(`${model}: ${response.status} ${await response.text()}`);
            answered++;
          }
        }),
      );
      const elapsed = (performance.now() - began) / 1000;
      const stats = (await (await fetch(`${server.url}/v2/models/${model}/stats`)).json()) as {
        model_stats: { inference_count: number; execution_count: number }[];
      };
      const { inference_count, execution_count } = stats.model_stats[0] ?? { inference_count: 0, execution_count: 1 };
      // Two frames (rows) per request: sequences per run is rows per run over two.
      results[model] = { perSecond: answered / elapsed, perRun: inference_count / 2 / execution_count };
    }
  } finally {
    await server.close();
    rmSync(repository, { recursive: true, force: true });
  }
  return results;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const seconds = Number(process.argv[2] ?? 5);
  const results = await throughput(seconds);
  for (const [model, { perSecond, perRun }] of Object.entries(results))
    console.log(`${model}: ${perSecond.toFixed(0)} requests/s, ${perRun.toFixed(1)} sequences per run`);
}
