import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const bin = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
let child: ChildProcess | undefined;

/** Kills the last process `run` started, for afterEach. */
export function killRunning(): void {
  child?.kill('SIGKILL');
  child = undefined;
}

/** Runs the CLI; `url` resolves with the REST address from its banner, `grpc` with the gRPC one. */
export function run(
  args: string[],
  env: Record<string, string> = {},
): {
  child: ChildProcess;
  output: () => string;
  url: Promise<string>;
  grpc: Promise<string>;
  exit: Promise<number | null>;
} {
  const proc = spawn(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  let out = '';
  proc.stdout?.on('data', (chunk) => (out += chunk));
  proc.stderr?.on('data', (chunk) => (out += chunk));
  const url = new Promise<string>((resolve, reject) => {
    proc.stdout?.on('data', () => {
      const match = / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (match) resolve(match[1] as string);
    });
    proc.once('exit', () => reject(new Error(`exited before listening:\n${out}`)));
  });
  url.catch(() => {}); // a run meant to fail never listens; its tests read `exit` instead
  const grpc = new Promise<string>((resolve, reject) => {
    proc.stdout?.on('data', () => {
      const match = /gRPC: (grpc:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (match) resolve(match[1] as string);
    });
    proc.once('exit', () => reject(new Error(`exited before serving gRPC:\n${out}`)));
  });
  grpc.catch(() => {});
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  child = proc;
  return { child: proc, output: () => out, url, grpc, exit };
}
