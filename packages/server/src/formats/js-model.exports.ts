/**
 * Runs in a short-lived worker thread of its own: imports one `model.js` and reports its exports.
 * So the module's top level never runs on the main thread (a `while (true) {}` there would freeze the
 * server; here the load times out and the thread is terminated), and no thread ever imports a
 * model.js twice: every load reads it in a fresh thread, so Node's module cache can never answer with
 * an older version (or an old import error), and nothing accumulates in the main thread's cache.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';

export interface ModuleExports {
  /** The file's content hash when it was read: the serving workers refuse to run any other content. */
  sha256: string;
  inputs: unknown;
  outputs: unknown;
  hasHandler: boolean;
  /** A generator (formats/generator.ts) exports `step` and no `handler`. */
  hasStep: boolean;
  hasChatTemplate: boolean;
  /** A generator's sampling parameters, as exported (checked on the main thread). */
  parameters: unknown;
  /** The models it calls through `models` (its `calls` export), as exported (checked on the main thread). */
  calls: unknown;
}

/** Tagged: the module itself may post on the same port, and what it posts is not an answer. */
export type ExportsMessage =
  | { kind: 'bfn-exports'; ok: true; exports: ModuleExports }
  | { kind: 'bfn-exports'; ok: false; message: string };

export interface ExportsWorkerData {
  /** The model.js to read; a key of its own, since the serving workers import this file for `hashFile`. */
  readExportsOf: string;
}

/** The content hash the workers compare against (model.js alone, not the files it imports). */
export async function hashFile(url: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(fileURLToPath(url)))
    .digest('hex');
}

if (parentPort !== null && typeof (workerData as Partial<ExportsWorkerData> | null)?.readExportsOf === 'string') {
  const port = parentPort;
  const moduleUrl = (workerData as ExportsWorkerData).readExportsOf;
  try {
    // Hashed first: a write between the two shows up as a mismatch in the workers, never as a
    // signature that the workers' code does not match.
    const sha256 = await hashFile(moduleUrl);
    const module = (await import(moduleUrl)) as Record<string, unknown>;
    const answer: ExportsMessage = {
      kind: 'bfn-exports',
      ok: true,
      exports: {
        sha256,
        inputs: module.inputs,
        outputs: module.outputs,
        hasHandler: typeof module.handler === 'function',
        hasStep: typeof module.step === 'function',
        hasChatTemplate: typeof module.chatTemplate === 'function',
        parameters: module.parameters,
        calls: module.calls,
      },
    };
    try {
      port.postMessage(answer);
    } catch (error) {
      port.postMessage({
        kind: 'bfn-exports',
        ok: false,
        message: `its \`inputs\` and \`outputs\` must be plain data: ${(error as Error).message}`,
      } satisfies ExportsMessage);
    }
  } catch (error) {
    port.postMessage({
      kind: 'bfn-exports',
      ok: false,
      message: error instanceof Error ? error.message : String(error),
    } satisfies ExportsMessage);
  }
}
