import { type ChildProcess, spawn } from 'node:child_process';
import { withoutFlagVariables } from '../env-flags.js';
import { flagRows } from '../flags.js';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../cli-args.js';
import { MODEL_NAME } from '../../repository/repository.js';
import { ModelLoadError } from '../../model/errors.js';
import { type Candidate, modelConfig, serveFlags } from './space.js';

const BIN = fileURLToPath(new URL('../../../bin/batched-fn.js', import.meta.url));
const ORPHAN_GUARD = new URL('./orphan-guard.js', import.meta.url).href;
/** Longest a candidate server may take to load its model and listen. */
const START_TIMEOUT_MS = 120_000;
/** How long a candidate may drain after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 10_000;

/** What is tuned: one ONNX file, or one model of a repository (its config.json is what tune writes). */
export type TuneTarget = { model: string } | { repository: string; name: string };

export const targetName = (target: TuneTarget): string => ('model' in target ? 'tuned' : target.name);

export interface CandidateServer {
  url: string;
  stop(): Promise<void>;
}

/**
 * Checks the target before anything is created: the name by the server's own rule (a name is a
 * folder under the repository and, in the copy, under a temporary folder: `../x` would escape
 * both), the folder, and that the model file can be read. A candidate would find each of these
 * only after tune had made its temporary repository, and say it as a stack trace.
 */
export function checkTarget(target: TuneTarget): void {
  if ('repository' in target) {
    if (!MODEL_NAME.test(target.name))
      throw new UsageError(
        `Invalid model name \`${target.name.slice(0, 100)}\` for --name: letters, digits, '_', '.', '-', at most 64`,
      );
    const folder = join(target.repository, target.name);
    let isFolder = false;
    try {
      isFolder = statSync(folder).isDirectory();
      readdirSync(folder);
    } catch (error) {
      if (isFolder)
        throw new ModelLoadError(
          `Cannot tune: cannot read ${folder}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
        );
    }
    if (!isFolder) throw new ModelLoadError(`Cannot tune: no folder ${folder} in the repository`);
    return;
  }
  // Opened and one byte read, as the candidate will: access(2) would say yes to root, and to a directory.
  let fd: number | undefined;
  try {
    fd = openSync(target.model, 'r');
    if (fstatSync(fd).isDirectory()) throw Object.assign(new Error('directory'), { code: 'EISDIR' });
    readSync(fd, Buffer.alloc(1), 0, 1, 0);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'it is a directory'
          : code === 'EACCES' || code === 'EPERM'
            ? 'permission denied'
            : (error as Error).message;
    throw new ModelLoadError(`Cannot read model ${target.model}: ${why}`);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * A repository model under a candidate's settings: a temporary repository with the model's
 * files linked and its config.json replaced by the candidate's settings over the model's own
 * (which keep whatever else they say, like a JS model's `parameters`). Made in `dir` (by default a
 * new temporary folder), which is removed again if it cannot be filled.
 */
export function candidateRepository(
  target: { repository: string; name: string },
  candidate: Candidate,
  dir?: string,
): string {
  if (!MODEL_NAME.test(target.name)) throw new UsageError(`Invalid model name \`${target.name.slice(0, 100)}\``);
  const source = join(target.repository, target.name);
  const repository = dir ?? mkdtempSync(join(tmpdir(), 'bfn-tune-'));
  try {
    mkdirSync(join(repository, target.name), { recursive: true });
    for (const file of readdirSync(source))
      if (file !== 'config.json') symlinkSync(join(source, file), join(repository, target.name, file));
    const own = existsSync(join(source, 'config.json'))
      ? (JSON.parse(readFileSync(join(source, 'config.json'), 'utf8')) as Record<string, unknown>)
      : {};
    writeFileSync(join(repository, target.name, 'config.json'), JSON.stringify({ ...own, ...modelConfig(candidate) }));
  } catch (error) {
    if (dir === undefined) rmSync(repository, { recursive: true, force: true });
    throw error;
  }
  return repository;
}

/** A candidate process and its scratch folder: what must go whenever tune stops, however it stops. */
interface Running {
  child: ChildProcess;
  scratch: string;
  exited: Promise<void>;
}

const running = new Set<Running>();
/** Set once tune is stopping for a signal: the sweep, failing under it, must not start another. */
let refusing = false;

/** SIGTERM (serve drains), SIGKILL after STOP_TIMEOUT_MS, then the scratch folder goes. */
async function stopOne(entry: Running): Promise<void> {
  if (entry.child.exitCode === null && entry.child.signalCode === null) {
    entry.child.kill('SIGTERM');
    const timer = setTimeout(() => entry.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await entry.exited;
    clearTimeout(timer);
  }
  rmSync(entry.scratch, { recursive: true, force: true });
  running.delete(entry);
}

/** Stops every candidate still running and removes its scratch folder: for a signal or an error. */
export async function stopCandidates(options: { refuseMore?: boolean } = {}): Promise<void> {
  if (options.refuseMore === true) refusing = true;
  await Promise.all([...running].map(stopOne));
}

/**
 * The last resort, for `process.on('exit')`, where nothing can be awaited: SIGKILL (the candidate
 * has nothing to drain for a tune that is gone) and the folders removed at once.
 */
export function killCandidatesNow(): void {
  for (const entry of running) {
    entry.child.kill('SIGKILL');
    rmSync(entry.scratch, { recursive: true, force: true });
  }
  running.clear();
}

/**
 * Starts `batched-fn serve` with the candidate's settings in its own process; resolves once it
 * listens. Each candidate has a scratch folder, `bfn-tune-*`: its repository copy (for a
 * repository model) and its TMPDIR (ONNX Runtime leaves files there), removed when it stops.
 * The child runs with the orphan guard: it stops by itself if this process dies without stopping it.
 */
export async function startCandidate(
  target: TuneTarget,
  candidate: Candidate,
  cacheDir?: string,
): Promise<CandidateServer> {
  if (refusing) throw new Error('tune is stopping: no new candidate');
  const scratch = mkdtempSync(join(tmpdir(), 'bfn-tune-'));
  let repository: string | undefined;
  try {
    mkdirSync(join(scratch, 'tmp'));
    if ('repository' in target) repository = candidateRepository(target, candidate, join(scratch, 'repository'));
  } catch (error) {
    rmSync(scratch, { recursive: true, force: true });
    throw error;
  }
  const args = [
    '--import',
    ORPHAN_GUARD,
    BIN,
    'serve',
    '--port',
    '0',
    '--no-grpc',
    '--dashboard',
    'off',
    ...(cacheDir === undefined ? [] : ['--cache-dir', cacheDir]),
  ];
  if (repository !== undefined) args.push('--model-repository', repository);
  else args.push('--model', (target as { model: string }).model, '--name', 'tuned', ...serveFlags(candidate));
  // stdin is a pipe that tune never writes to: its end tells the child that tune is gone.
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    // The candidate's settings are tune's flags: a user's BATCHED_FN_ variables must not change them.
    env: { ...withoutFlagVariables(flagRows('serve')), TMPDIR: join(scratch, 'tmp'), BFN_TUNE_SCRATCH: scratch },
  });
  const entry: Running = {
    child,
    scratch,
    exited: new Promise<void>((resolve) => child.once('exit', () => resolve())),
  };
  running.add(entry);
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    const timer = setTimeout(
      () => reject(new Error(`Candidate server did not start within ${START_TIMEOUT_MS / 1000} s:\n${out}`)),
      START_TIMEOUT_MS,
    );
    const check = (): void => {
      const match = / on (http:\/\/[^\s]+) /.exec(out);
      if (match !== null) {
        clearTimeout(timer);
        resolve(match[1] as string);
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      // serve exits 2 with one line for what it cannot load: that line, not a stack trace, is the news.
      reject(
        code === 2
          ? new ModelLoadError(`Cannot tune: the candidate server could not start: ${out.trim()}`)
          : new Error(`Candidate server exited with ${code}:\n${out.trim()}`),
      );
    });
  }).catch(async (error: unknown) => {
    await stopOne(entry);
    throw error;
  });
  return { url, stop: () => stopOne(entry) };
}
