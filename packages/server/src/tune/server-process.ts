import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Candidate, modelConfig, serveFlags } from './space.js';

const BIN = fileURLToPath(new URL('../../bin/batched-fn.js', import.meta.url));
/** Longest a candidate server may take to load its model and listen. */
const START_TIMEOUT_MS = 120_000;

/** What is tuned: one ONNX file, or one model of a repository (its config.json is what tune writes). */
export type TuneTarget = { model: string } | { repository: string; name: string };

export const targetName = (target: TuneTarget): string => ('model' in target ? 'tuned' : target.name);

export interface CandidateServer {
  url: string;
  stop(): Promise<void>;
}

/**
 * A repository model under a candidate's settings: a temporary repository with the model's
 * files linked and its config.json replaced by the candidate's settings over the model's own
 * (which keep whatever else they say, like a JS model's `parameters`).
 */
export function candidateRepository(target: { repository: string; name: string }, candidate: Candidate): string {
  const source = join(target.repository, target.name);
  const dir = mkdtempSync(join(tmpdir(), 'bfn-tune-'));
  mkdirSync(join(dir, target.name));
  for (const file of readdirSync(source)) if (file !== 'config.json') symlinkSync(join(source, file), join(dir, target.name, file));
  const own = existsSync(join(source, 'config.json')) ? (JSON.parse(readFileSync(join(source, 'config.json'), 'utf8')) as Record<string, unknown>) : {};
  writeFileSync(join(dir, target.name, 'config.json'), JSON.stringify({ ...own, ...modelConfig(candidate) }));
  return dir;
}

/** Starts `batched-fn serve` with the candidate's settings in its own process; resolves once it listens. */
export async function startCandidate(target: TuneTarget, candidate: Candidate, cacheDir?: string): Promise<CandidateServer> {
  const repository = 'repository' in target ? candidateRepository(target, candidate) : undefined;
  const args = [BIN, 'serve', '--port', '0', '--no-grpc', '--dashboard', 'off', ...(cacheDir === undefined ? [] : ['--cache-dir', cacheDir])];
  if (repository !== undefined) args.push('--model-repository', repository);
  else args.push('--model', (target as { model: string }).model, '--name', 'tuned', ...serveFlags(candidate));
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('error', reject);
    const timer = setTimeout(() => reject(new Error(`Candidate server did not start within ${START_TIMEOUT_MS / 1000} s:\n${out}`)), START_TIMEOUT_MS);
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
      reject(new Error(`Candidate server exited with ${code}:\n${out.trim()}`));
    });
  }).catch((error: unknown) => {
    child.kill('SIGKILL');
    if (repository !== undefined) rmSync(repository, { recursive: true, force: true });
    throw error;
  });
  return {
    url,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
      if (repository !== undefined) rmSync(repository, { recursive: true, force: true });
    },
  };
}
