/**
 * Runs inside each worker thread: loads the user's module, builds its context
 * on this thread (so a native session never crosses threads), and answers
 * batches one at a time.
 */
import { isMainThread, parentPort, threadId, workerData } from 'node:worker_threads';
import { transferListFor } from '../transfer.js';
import { type SerializedError, serializeError } from '../error-codec.js';
import type { FromWorker, ToWorker, WorkerBootData } from './wire.js';

interface WorkerModule {
  handler: (batch: unknown[], context: unknown) => ArrayLike<unknown> | Promise<ArrayLike<unknown>>;
  /** `false` for handlers that block in native code (ONNX Runtime): see the pool's `abandon`. */
  interruptible?: boolean;
  context?: (data: unknown) => unknown;
  dispose?: (context: unknown) => unknown;
}

if (isMainThread || parentPort === null) throw new Error('batched-fn worker entry must run in a worker thread');
const port = parentPort;
const boot = workerData as WorkerBootData;

let module: WorkerModule | undefined;
let context: unknown;
let initialized = false;
let initializing: Promise<void> | undefined;

async function initialize(): Promise<void> {
  const loaded = (await import(boot.moduleUrl)) as Partial<WorkerModule>;
  if (typeof loaded.handler !== 'function') {
    throw new TypeError(`Worker module ${boot.moduleUrl} must export a \`handler(batch, context)\` function`);
  }
  send({ type: 'loaded', interruptible: loaded.interruptible !== false });
  if (typeof loaded.context === 'function') context = await loaded.context(boot.data);
  module = loaded as WorkerModule;
  initialized = true;
}

/** Shared by concurrent messages; a failure is forgotten so the next batch tries again. */
function ensureInitialized(): Promise<void> | undefined {
  if (initialized) return undefined;
  if (initializing !== undefined) return initializing;
  const attempt = initialize();
  initializing = attempt;
  const forget = (): void => {
    initializing = undefined;
  };
  attempt.then(forget, forget);
  return attempt;
}

function send(message: FromWorker, transfer?: ArrayBuffer[]): void {
  port.postMessage(message, transfer);
}

async function run(id: number, inputs: unknown[]): Promise<void> {
  try {
    await ensureInitialized();
    const outputs = await (module as WorkerModule).handler(inputs, context);
    if (!Array.isArray(outputs) && !ArrayBuffer.isView(outputs)) {
      // Let the main thread report the mismatch with the batch's real size.
      send({ type: 'result', id, outputs: null, errors: [] });
      return;
    }
    const values = Array.from(outputs as ArrayLike<unknown>);
    const errors: [number, SerializedError][] = [];
    for (let i = 0; i < values.length; i++) {
      if (values[i] instanceof Error) {
        errors.push([i, serializeError(values[i])]);
        values[i] = undefined;
      }
    }
    try {
      send({ type: 'result', id, outputs: values, errors }, transferListFor(values));
    } catch (cause) {
      // One output that cannot be cloned (a function, a symbol) must not sink its neighbours:
      // it becomes that caller's error. Nothing was transferred, since cloning failed first.
      isolateUncloneable(values, errors, cause);
      send({ type: 'result', id, outputs: values, errors }, transferListFor(values));
    }
  } catch (error) {
    send({ type: 'error', id, error: serializeError(error) });
  }
}

function isolateUncloneable(values: unknown[], errors: [number, SerializedError][], cause: unknown): void {
  for (let i = 0; i < values.length; i++) {
    try {
      structuredClone(values[i]);
    } catch {
      errors.push([i, serializeError(new TypeError(`Output ${i} of the batch cannot be sent back from the worker thread: ${(cause as Error).message}`))]);
      values[i] = undefined;
    }
  }
}

// A message this thread cannot deserialize (a buffer detached on the way) is lost: say so, so the
// pool fails the batch it belonged to instead of waiting for it forever.
port.on('messageerror', (error) => send({ type: 'lost', error: serializeError(error) }));

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'run':
      void run(message.id, message.inputs);
      break;
    case 'init':
      void (async () => {
        try {
          await ensureInitialized();
          send({ type: 'ready' });
        } catch (error) {
          send({ type: 'init-error', error: serializeError(error) });
        }
      })();
      break;
    case 'close':
      void (async () => {
        try {
          if (initialized && typeof module?.dispose === 'function') await module.dispose(context);
        } finally {
          send({ type: 'closed' });
          port.close();
        }
      })();
      break;
  }
});

export const workerThreadId = threadId;
