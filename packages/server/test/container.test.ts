import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, makeClientConstructor, Metadata } from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

/**
 * The Dockerfile, built and run for real: the image a user builds, serving the default model out of the box and a
 * mounted model repository, with its HEALTHCHECK, gRPC health and the drain on SIGTERM.
 *
 * No public registry can be reached here, so the base is a local stand-in for node:22-slim built by
 * scripts/docker-base.sh (Debian's packages and npm's Node, reused once built), unless BATCHED_FN_CONTAINER_BASE
 * names another. Builds and containers use the host's network and the containers listen on 127.0.0.1 only; the
 * bridge network is never used. BATCHED_FN_CONTAINER_TEST=skip skips it (a CI that runs the suite on several Node
 * versions needs the image once); so does a machine without a working dockerd.
 */
const root = fileURLToPath(new URL('../../..', import.meta.url));
// A tag of this run's own: suites running at once on one machine share the daemon, not their images.
const IMAGE = `batched-fn:container-test-${process.pid}`;
const LOCAL_BASE = 'batched-fn-base:bookworm-node22';
const MINUTE = 60_000;

/** Why this machine cannot run the test, or undefined when it can. Run once, at collection. */
function unavailableReason(): string | undefined {
  if (process.env.BATCHED_FN_CONTAINER_TEST === 'skip') return 'BATCHED_FN_CONTAINER_TEST=skip';
  const info = spawnSync('docker', ['info'], { stdio: 'ignore', timeout: 30_000 });
  if (info.error !== undefined || info.status !== 0) {
    return '`docker info` failed: no docker client or no dockerd answering (scripts/install-test-deps.sh starts one)';
  }
  if (process.env.BATCHED_FN_CONTAINER_BASE !== undefined) return undefined;
  const baseBuilt =
    spawnSync('docker', ['image', 'inspect', LOCAL_BASE], { stdio: 'ignore', timeout: 30_000 }).status === 0;
  if (baseBuilt) return undefined;
  if (spawnSync('sh', ['-c', 'command -v debootstrap'], { stdio: 'ignore' }).status !== 0) {
    return `no base image: ${LOCAL_BASE} is not built and debootstrap is missing (or set BATCHED_FN_CONTAINER_BASE)`;
  }
  if (process.getuid?.() !== 0)
    return `no base image: building ${LOCAL_BASE} needs root (or set BATCHED_FN_CONTAINER_BASE)`;
  return undefined;
}
const unavailable = unavailableReason();

interface Ran {
  code: number | null;
  output: string;
  stdout: string;
}

const tail = (text: string, lines = 40): string => text.trimEnd().split('\n').slice(-lines).join('\n');

/**
 * Runs a command from the repository's top folder, at most `timeout` ms: past it the command's whole process group
 * is killed, so a hung build or daemon call cannot outlive the test.
 */
function run(command: string, args: string[], timeout: number): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      output += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const timer = setTimeout(() => {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {
        // Already gone.
      }
      reject(new Error(`\`${command} ${args.join(' ')}\` did not finish within ${timeout} ms:\n${tail(output)}`));
    }, timeout);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, stdout });
    });
  });
}

/** Runs a command that must succeed; its stdout, trimmed. */
async function must(command: string, args: string[], timeout: number): Promise<string> {
  const ran = await run(command, args, timeout);
  if (ran.code !== 0) throw new Error(`\`${command} ${args.join(' ')}\` exited with ${ran.code}:\n${tail(ran.output)}`);
  return ran.stdout.trim();
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 100 ms until it holds, for at most `timeout` ms; `why` says what was awaited. */
async function until(check: () => Promise<boolean>, timeout: number, why: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeout} ms: ${await why()}`);
    await sleep(100);
  }
}

const containers: string[] = [];
let started = 0;

/** Starts the image on the host's network, listening on 127.0.0.1 only, on free ports; removed in afterAll. */
async function startContainer(dockerArgs: string[], serveArgs: string[]) {
  const [port, grpcPort] = [await freePort(), await freePort()];
  const name = `batched-fn-test-${process.pid}-${++started}`;
  containers.push(name);
  await must(
    'docker',
    [
      'run',
      '-d',
      '--name',
      name,
      '--network',
      'host',
      ...dockerArgs,
      IMAGE,
      '--host',
      '127.0.0.1',
      '--port',
      `${port}`,
      '--grpc-port',
      `${grpcPort}`,
      ...serveArgs,
    ],
    MINUTE,
  );
  const url = `http://127.0.0.1:${port}`;
  const logs = async (): Promise<string> => (await run('docker', ['logs', name], MINUTE)).output;
  const state = async (field: string): Promise<string> =>
    must('docker', ['inspect', '--format', `{{${field}}}`, name], MINUTE);
  // Until ready, for at most 2 minutes; a container that exits (a crash, a bad flag) fails at once, with its logs.
  const deadline = Date.now() + 2 * MINUTE;
  while (
    !(await fetch(`${url}/v2/health/ready`).then(
      (r) => r.status === 200,
      () => false,
    ))
  ) {
    const status = await state('.State.Status');
    if (status !== 'running' || Date.now() > deadline) {
      throw new Error(`${name} not ready (${status}):\n${tail(await logs())}`);
    }
    await sleep(200);
  }
  return { name, url, grpcTarget: `127.0.0.1:${grpcPort}`, logs, state };
}

async function postJson(
  url: string,
  body: unknown,
): Promise<{ status: number; body: { outputs?: { name: string; shape: number[]; data: number[] }[] } }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as never };
}

/** grpc.health.v1 Check through grpc-health-check's own service definition: the status, or the error's code. */
function grpcHealth(target: string, service: string): Promise<string> {
  const Health = makeClientConstructor(healthService as never, 'grpc.health.v1.Health');
  const client = new Health(target, credentials.createInsecure()) as unknown as {
    check(
      request: { service: string },
      metadata: Metadata,
      options: { deadline: number },
      done: (error: { code: number } | null, answer?: { status: string }) => void,
    ): void;
    close(): void;
  };
  return new Promise((resolve) => {
    client.check({ service }, new Metadata(), { deadline: Date.now() + 10_000 }, (error, answer) => {
      client.close();
      resolve(error === null ? (answer?.status ?? '') : `code ${error.code}`);
    });
  });
}

describe('the container image (Dockerfile)', () => {
  beforeAll(async () => {
    if (unavailable !== undefined) return;
    // Each change to the sources leaves the last build's stages behind (about 0.8 GB): remove those untagged and over
    // 30 minutes old (a build in progress, another run's, is younger: builds time out at 25). The current build's
    // stages are tagged below, so they stay as the next run's cache however long it waits.
    await run(
      'docker',
      ['image', 'prune', '--force', '--filter', 'label=org.batched-fn.stage', '--filter', 'until=30m'],
      MINUTE,
    );
    let base = process.env.BATCHED_FN_CONTAINER_BASE;
    const baseStart = Date.now();
    // Built once per machine (a minute or more: debootstrap, updates, Node from npm), then reused.
    base ??= await must('bash', ['scripts/docker-base.sh'], 25 * MINUTE);
    const baseMs = Date.now() - baseStart;
    const buildStart = Date.now();
    const build = (target: string[], tag: string): Promise<string> =>
      must(
        'docker',
        ['build', '--force-rm', '--network', 'host', '--build-arg', `BASE=${base}`, ...target, '--tag', tag, '.'],
        25 * MINUTE,
      );
    await build([], IMAGE);
    // Instant now (every step cached): names the two build stages' images, so the prune above keeps them.
    for (const stage of ['pack', 'install']) await build(['--target', stage], `batched-fn-build-cache:${stage}`);
    const size = await must('docker', ['image', 'inspect', '--format', '{{.Size}}', IMAGE], MINUTE);
    console.log(
      `container test: base ${base} ready in ${seconds(baseMs)}; image built in ${seconds(Date.now() - buildStart)}, ` +
        `${(Number(size) / 1e6).toFixed(0)} MB`,
    );
  }, 50 * MINUTE);

  afterAll(async () => {
    for (const name of containers) await run('docker', ['rm', '--force', name], MINUTE).catch(() => undefined);
    // The image goes; the build stages stay as the next run's cache (the prune above bounds them).
    if (unavailable === undefined) await run('docker', ['image', 'rm', IMAGE], MINUTE).catch(() => undefined);
  }, 2 * MINUTE);

  test(
    'serves the default model out of the box: ready, infers, healthy, gRPC health SERVING, exit 0 on SIGTERM',
    async (ctx) => {
      if (unavailable !== undefined) ctx.skip(unavailable);
      // The image's own health command, run every second instead of every 10 s so the test need not wait.
      const server = await startContainer(['--health-interval', '1s'], ['--threads', '1']);
      expect(await (await fetch(`${server.url}/v2`)).json()).toMatchObject({ name: 'batched-fn' });
      const answer = await postJson(`${server.url}/v2/models/mlp/infer`, {
        inputs: [{ name: 'input', shape: [1, 256], datatype: 'FP32', data: Array(256).fill(0.5) }],
      });
      expect(answer.status).toBe(200);
      expect(answer.body.outputs?.map((o) => [o.name, o.shape, o.data.length])).toEqual([
        ['probabilities', [1, 16], 16],
      ]);
      expect(await grpcHealth(server.grpcTarget, '')).toBe('SERVING');
      expect(await grpcHealth(server.grpcTarget, 'mlp')).toBe('SERVING');
      await until(
        async () => (await server.state('.State.Health.Status')) === 'healthy',
        MINUTE,
        async () => `health: ${await server.state('json .State.Health')}`,
      );
      // The user is the image's, not root.
      expect(await must('docker', ['exec', server.name, 'id', '-u'], MINUTE)).toBe('10001');

      await must('docker', ['kill', '--signal', 'SIGTERM', server.name], MINUTE);
      expect(await must('docker', ['wait', server.name], 2 * MINUTE)).toBe('0');
      expect(await server.logs()).toContain('SIGTERM: draining...');
    },
    5 * MINUTE,
  );

  test(
    'serves a mounted --model-repository /models, and on SIGTERM answers the requests in flight, then exits 0',
    async (ctx) => {
      if (unavailable !== undefined) ctx.skip(unavailable);
      const repository = mkdtempSync(join(tmpdir(), 'bfn-container-models-'));
      try {
        // A JS model whose batches take 3 s, so the signal meets a running batch; it answers y = 2x.
        // maxBatchSize 4 and a long window: the batch starts when the 4th request has arrived, so once one runs,
        // all four were accepted.
        mkdirSync(join(repository, 'slow'));
        writeFileSync(
          join(repository, 'slow', 'model.mjs'),
          `export const inputs = [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }];
export const outputs = [{ name: 'y', datatype: 'FP32', shape: [-1, 1] }];
export async function handler(requests) {
  await new Promise((resolve) => setTimeout(resolve, 3000));
  return requests.map((r) => ({ y: { data: Array.from(r.inputs.x.data, (v) => v * 2) } }));
}
`,
        );
        writeFileSync(join(repository, 'slow', 'config.json'), JSON.stringify({ maxBatchSize: 4, maxDelay: 60_000 }));
        // The server runs as UID 10001: the mounted folder must be readable by others (mkdtemp makes it 0700).
        chmodSync(repository, 0o755);
        chmodSync(join(repository, 'slow'), 0o755);
        const server = await startContainer(
          ['--volume', `${repository}:/models:ro`],
          ['--model-repository', '/models'],
        );
        expect((await fetch(`${server.url}/v2/models/slow/ready`)).status).toBe(200);

        const answeredAt: number[] = [];
        // Each settles to [status, y], or to the network error that cut it (a server that did not drain).
        const sent = [1, 2, 3, 4].map(async (x, i) => {
          try {
            const answer = await postJson(`${server.url}/v2/models/slow/infer`, {
              inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [x] }],
            });
            return [answer.status, answer.body.outputs?.[0]?.data];
          } catch (error) {
            return ['failed', String((error as { cause?: unknown }).cause ?? error)];
          } finally {
            answeredAt[i] = Date.now();
          }
        });
        await until(
          async () =>
            /^batched_fn_inflight_batches\{model="slow"\} 1$/m.test(
              await (await fetch(`${server.url}/metrics`)).text(),
            ),
          MINUTE,
          async () => `no batch running:\n${tail(await server.logs())}`,
        );
        const signalled = Date.now();
        await must('docker', ['kill', '--signal', 'SIGTERM', server.name], MINUTE);
        expect(await Promise.all(sent)).toEqual([
          [200, [2]],
          [200, [4]],
          [200, [6]],
          [200, [8]],
        ]);
        // Answered after the signal: they were in flight when it came, not done before it.
        expect(answeredAt.filter((at) => at < signalled)).toEqual([]);
        expect(await must('docker', ['wait', server.name], 2 * MINUTE)).toBe('0');
        expect(await server.logs()).toContain('SIGTERM: draining...');
      } finally {
        rmSync(repository, { recursive: true, force: true });
      }
    },
    5 * MINUTE,
  );
});
