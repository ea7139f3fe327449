// One server with three models (ONNX MLP, ONNX OCR CNN, JS sentiment) under mixed load, against each
// model served alone: req/s and mean batch (inference_count / execution_count, from the statistics
// extension). The server runs in its own process; autocannon drives it from this one. 2 cores shared.
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLoad } from '../dist/cli/bench/load.js';
import { prepareRepository, REPOSITORY } from '../../../examples/dist/model-repository/prepare.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CLIENTS = Number(process.env.BENCH_CLIENTS ?? 16);
const BIN = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
const MODELS = {
  mlp: {
    inputs: [
      { name: 'input', shape: [1, 256], datatype: 'FP32', data: Array.from({ length: 256 }, (_, i) => (i % 7) / 7) },
    ],
  },
  ocr: {
    inputs: [
      {
        name: 'x',
        shape: [1, 3, 48, 192],
        datatype: 'FP32',
        data: Array.from({ length: 3 * 48 * 192 }, (_, i) => (i % 11) / 11),
      },
    ],
  },
  sentiment: {
    inputs: [
      {
        name: 'text',
        shape: [2],
        datatype: 'BYTES',
        data: ['I love how fast and great this is', 'slow, broken and not good'],
      },
    ],
  },
};

function repositoryWith(names) {
  const dir = mkdtempSync(join(tmpdir(), 'bfn-bench-repo-'));
  for (const name of names)
    cpSync(join(REPOSITORY, name), join(dir, name), {
      recursive: true,
      filter: (source) => !source.endsWith('model.onnx'),
    });
  prepareRepository(dir);
  return dir;
}

async function serve(dir) {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--model-repository', dir, '--port', '0', '--grpc-port', '0', '--threads', '1'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  while (!/ on (http:\/\/127\.0\.0\.1:\d+)/.test(out)) {
    if (child.exitCode !== null) throw new Error(out);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    url: / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)[1],
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGTERM');
      }),
  };
}

const counts = async (url) =>
  Object.fromEntries(
    ((await (await fetch(`${url}/v2/models/stats`)).json()).model_stats ?? []).map((m) => [
      m.name,
      [m.inference_count, m.execution_count],
    ]),
  );

async function measure(url, names) {
  const warm = names.map((name) =>
    runLoad({
      url: `${url}/v2/models/${name}/infer`,
      body: JSON.stringify(MODELS[name]),
      concurrency: CLIENTS,
      durationSeconds: 1,
      progress: false,
    }),
  );
  await Promise.all(warm);
  const before = await counts(url);
  const runs = await Promise.all(
    names.map((name) =>
      runLoad({
        url: `${url}/v2/models/${name}/infer`,
        body: JSON.stringify(MODELS[name]),
        concurrency: CLIENTS,
        durationSeconds: SECONDS,
        progress: false,
      }),
    ),
  );
  const after = await counts(url);
  return Object.fromEntries(
    names.map((name, i) => {
      const [inferences, executions] = [after[name][0] - before[name][0], after[name][1] - before[name][1]];
      return [
        name,
        {
          rps: runs[i].requestsPerSecond,
          batch: inferences / Math.max(1, executions),
          errors: runs[i].errors + runs[i].non2xx,
        },
      ];
    }),
  );
}

const names = Object.keys(MODELS);
const mixedDir = repositoryWith(names);
const mixedServer = await serve(mixedDir);
const mixed = await measure(mixedServer.url, names);
await mixedServer.stop();
rmSync(mixedDir, { recursive: true, force: true });
const alone = {};
for (const name of names) {
  const dir = repositoryWith([name]);
  const server = await serve(dir);
  alone[name] = (await measure(server.url, [name]))[name];
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(
  `\nThree models in one server under mixed load against each alone: ${CLIENTS} clients per model, ${SECONDS} s, 2-core machine`,
);
console.table(
  names.map((name) => ({
    model: name,
    'alone req/s': Math.round(alone[name].rps),
    'alone mean batch': alone[name].batch.toFixed(1),
    'mixed req/s': Math.round(mixed[name].rps),
    'mixed mean batch': mixed[name].batch.toFixed(1),
    'mixed / alone': (mixed[name].rps / alone[name].rps).toFixed(2),
    errors: mixed[name].errors + alone[name].errors,
  })),
);
