/**
 * SIGTERM and SIGINT for a long-running command. The first signal starts a
 * graceful drain; a second is ignored while it runs (supervisors resend, and
 * Ctrl-C under npm can arrive twice), so accepted requests are still
 * answered; a third means the operator wants out now, and exits without
 * draining. Handlers stay installed (`process.on`, not `once`), because a
 * signal with no handler gets Node's default action: exit at once.
 */
/** How long the forced exit waits for `force` (stopping model threads) before exiting anyway. */
const FORCE_GRACE_MS = 2_000;

export function onShutdownSignals(
  drain: (signal: NodeJS.Signals) => Promise<void>,
  /** Stops what must not be cut mid-call (worker threads inside a native runtime) before the forced exit. */
  force: () => Promise<void> = async () => {},
  out: NodeJS.WritableStream = process.stdout,
): void {
  let received = 0;
  /** Set by the forced exit: the drain, cut short by it, must not then report success. */
  let forcedCode: number | undefined;
  const handle = (signal: NodeJS.Signals): void => {
    received++;
    if (received === 1) {
      out.write(`${signal}: draining...\n`);
      drain(signal).then(
        () => process.exit(forcedCode ?? 0),
        (error: unknown) => {
          process.stderr.write(`Shutdown failed: ${String(error)}\n`);
          process.exit(1);
        },
      );
    } else if (received === 2) {
      out.write(`${signal}: already draining; send it once more to exit without waiting\n`);
    } else {
      out.write(`${signal}: exiting now, without draining\n`);
      // Exiting while a worker thread is inside onnxruntime aborts the process (SIGABRT from its
      // native teardown): end the threads first, for at most FORCE_GRACE_MS.
      const code = signal === 'SIGINT' ? 130 : 143;
      forcedCode = code;
      const grace = new Promise((resolve) => setTimeout(resolve, FORCE_GRACE_MS).unref());
      void Promise.race([force().catch(() => {}), grace]).then(() => process.exit(code));
    }
  };
  process.on('SIGTERM', handle);
  process.on('SIGINT', handle);
}
