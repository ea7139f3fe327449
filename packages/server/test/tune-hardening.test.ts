import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, test } from 'vitest';
import { ensureMlpModel } from '@batched-fn/server';
import { TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';

// `batched-fn tune` starts a `serve` process per candidate and, for a repository model, a temporary
// repository (`bfn-tune-*`). Every way the tune process can end must take both with it.

const bin = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
const started: ChildProcess[] = [];
const strays: number[] = [];

afterEach(() => {
  for (const proc of started.splice(0)) proc.kill('SIGKILL');
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

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

/** Whether the process holds a socket: the candidate only opens one once its model is loaded and it listens. */
function listens(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:');
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A one-model repository around the tiny test model. */
function repository(): string {
  const repo = scratchDir('bfn-tune-hard-repo-');
  mkdirSync(join(repo, 'tiny'));
  symlinkSync(
    ensureMlpModel({ inputs: 256, hidden: [], classes: 16, seed: 1 }, TEST_CACHE),
    join(repo, 'tiny', 'model.onnx'),
  );
  return repo;
}

/** Runs `batched-fn tune` with its own TMPDIR, so whatever it leaves there is seen. */
function tune(args: string[]): {
  proc: ChildProcess;
  tmp: string;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
} {
  const tmp = scratchDir('bfn-tune-hard-tmp-');
  const proc = spawn(process.execPath, [bin, 'tune', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TMPDIR: tmp },
  });
  started.push(proc);
  let out = '';
  proc.stdout?.on('data', (chunk) => (out += chunk));
  proc.stderr?.on('data', (chunk) => (out += chunk));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { proc, tmp, output: () => out, exit };
}

/** A long sweep (30 s windows) on a repository model, stopped once its first candidate listens. */
async function runningSweep(): Promise<{
  proc: ChildProcess;
  tmp: string;
  candidate: number;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}> {
  const run = tune([
    '--model-repository',
    repository(),
    '--name',
    'tiny',
    '--concurrency',
    '2',
    '--duration',
    '30',
    '--max-candidates',
    '2',
    '--max-windows',
    '3',
    '--out',
    scratchDir('bfn-tune-hard-out-'),
  ]);
  let candidate = 0;
  await until(
    'the candidate server to listen',
    () => {
      candidate = childrenOf(run.proc.pid as number)[0] ?? 0;
      return candidate !== 0 && listens(candidate);
    },
    30_000,
  );
  strays.push(candidate);
  expect(readdirSync(run.tmp).filter((f) => f.startsWith('bfn-tune-'))).toHaveLength(1);
  // Into the first measurement window (load running), not just the start.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  return { ...run, candidate };
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  test(`tune ${signal}: the candidate server is stopped and its temporary repository removed before tune exits with ${code}`, async () => {
    const run = await runningSweep();
    const sent = Date.now();
    run.proc.kill(signal);
    const { code: exitCode } = await run.exit;
    const took = Date.now() - sent;
    // Stopped by tune, not orphaned: gone by the time tune has exited.
    expect(alive(run.candidate)).toBe(false);
    expect(readdirSync(run.tmp)).toEqual([]);
    expect(exitCode).toBe(code);
    expect(run.output()).toContain(`${signal}: stopping`);
    expect(took).toBeLessThan(15_000);
  }, 60_000);
}

test('tune SIGKILL: the orphaned candidate notices its parent is gone, stops, and removes its temporary repository', async () => {
  const run = await runningSweep();
  run.proc.kill('SIGKILL');
  await run.exit;
  await until('the orphaned candidate to exit', () => !alive(run.candidate), 15_000);
  await until('the temporary repository to go', () => readdirSync(run.tmp).length === 0, 5_000);
});

test('tune error (its candidate dies mid-measurement): no process and no temporary folder is left', async () => {
  const run = await runningSweep();
  process.kill(run.candidate, 'SIGKILL');
  const { code } = await run.exit;
  expect(code).not.toBe(0);
  expect(childrenOf(run.proc.pid as number)).toEqual([]);
  expect(readdirSync(run.tmp)).toEqual([]);
}, 60_000);

test("tune --name ../escape: refused by the server's model-name rule, exit 2, nothing created outside (or inside) TMPDIR", async () => {
  const repo = repository();
  const run = tune(['--model-repository', join(repo, 'tiny'), '--name', '../escape', '--max-candidates', '1']);
  const { code } = await run.exit;
  expect(code).toBe(2);
  expect(run.output().split('\n')[0]).toBe(
    "Invalid model name `../escape` for --name: letters, digits, '_', '.', '-', at most 64",
  );
  expect(readdirSync(run.tmp)).toEqual([]);
  expect(existsSync(join(repo, 'escape'))).toBe(false);
  expect(run.output()).not.toMatch(/\n\s+at /); // no stack trace
});

test('tune --name with no such folder in the repository: one line, exit 2, no temporary folder', async () => {
  const repo = repository();
  const run = tune(['--model-repository', repo, '--name', 'missing', '--max-candidates', '1']);
  const { code } = await run.exit;
  expect(code).toBe(2);
  expect(run.output().trim()).toBe(`Cannot tune: no folder ${join(repo, 'missing')} in the repository`);
  expect(readdirSync(run.tmp)).toEqual([]);
  // A file where the folder should be, and a missing repository, are refused the same way.
  writeFileSync(join(repo, 'file'), 'x');
  const file = tune(['--model-repository', repo, '--name', 'file', '--max-candidates', '1']);
  expect((await file.exit).code).toBe(2);
  expect(file.output().trim()).toBe(`Cannot tune: no folder ${join(repo, 'file')} in the repository`);
  const gone = tune(['--model-repository', join(repo, 'nope'), '--name', 'tiny', '--max-candidates', '1']);
  expect((await gone.exit).code).toBe(2);
  expect(gone.output().trim()).toBe(`Cannot tune: no folder ${join(repo, 'nope', 'tiny')} in the repository`);
});

test('tune --model that cannot be read (missing, a directory, no read permission): one line, exit 2, no candidate started', async () => {
  const dir = scratchDir('bfn-tune-hard-model-');
  const cases: [string, string][] = [
    [join(dir, 'missing.onnx'), 'no such file'],
    [dir, 'it is a directory'],
  ];
  // Root reads any file whatever its mode, so the permission case only means something for other users.
  if (process.getuid?.() !== 0) {
    writeFileSync(join(dir, 'secret.onnx'), 'x');
    chmodSync(join(dir, 'secret.onnx'), 0o000);
    cases.push([join(dir, 'secret.onnx'), 'permission denied']);
  }
  for (const [model, why] of cases) {
    const run = tune(['--model', model, '--max-candidates', '1']);
    const { code } = await run.exit;
    expect(code).toBe(2);
    expect(run.output().trim()).toBe(`Cannot read model ${model}: ${why}`);
    expect(readdirSync(run.tmp)).toEqual([]);
  }
});
