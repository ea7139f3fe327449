/**
 * Preloaded (`node --import`) into every candidate `serve` process that `batched-fn tune` starts.
 *
 * Why stdin: the tune process holds the only write end of the candidate's stdin pipe. However tune
 * ends, SIGKILL and crashes included, the kernel closes that end and stdin ends here; nothing in tune
 * has to run for it. (An IPC channel would do the same, but would also make `process.send` exist in
 * `serve`, which might one day mean something; a pipe is invisible to it.) The candidate then stops
 * the way an operator stops it, with SIGTERM (serve's own drain, which ends the model threads before
 * exiting), and its scratch folder (its repository copy and its TMPDIR) is removed as it exits.
 */
import { rmSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

/** How long the drain may take before the orphan exits anyway; nobody is left to send it requests. */
const ORPHAN_EXIT_MS = 15_000;

/** Installs the guard; only in the main thread, since `--import` also runs in serve's model worker threads. */
function guard(): void {
  const scratch = process.env.BFN_TUNE_SCRATCH;
  delete process.env.BFN_TUNE_SCRATCH;
  const removeScratch = (): void => {
    if (scratch === undefined || scratch === '') return;
    try {
      rmSync(scratch, { recursive: true, force: true });
    } catch {
      // Nothing more to do from here; tune's own cleanup names the folder if it is still alive.
    }
  };
  process.on('exit', removeScratch);
  let orphaned = false;
  const stop = (): void => {
    if (orphaned) return;
    orphaned = true;
    // The folder goes first. serve installs its SIGTERM handler only once its models are loaded
    // and it listens; before that, SIGTERM's default action ends the process at once and no
    // 'exit' hook runs: a tune killed while a candidate was starting left the candidate's folder
    // (its repository copy and its TMPDIR) behind. Nothing in the folder is needed to drain.
    removeScratch();
    process.kill(process.pid, 'SIGTERM');
    setTimeout(() => process.exit(1), ORPHAN_EXIT_MS).unref();
  };
  process.stdin.on('data', () => {}); // tune never writes; anything that comes is ignored
  process.stdin.once('end', stop);
  process.stdin.once('error', stop);
  // Listening must not keep the process alive by itself: serve decides when it is done.
  (process.stdin as { unref?: () => void }).unref?.();
}

if (isMainThread) guard();
