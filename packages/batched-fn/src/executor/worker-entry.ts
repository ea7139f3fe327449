/**
 * Runs inside each pool thread, for both kinds of module: loads the user's
 * module, builds its context on this thread (so a native session never
 * crosses threads), and answers requests. A batch module (`handler`) gets
 * one batch at a time; a stream module (`step`, optionally `start`) keeps
 * every sequence's state here by id, so only new inputs come in and only
 * each step's outputs go out.
 */
import { isMainThread, parentPort, threadId, workerData } from 'node:worker_threads';
import { type SerializedError, serializeError } from '../error-codec.js';
import { newSlot, readSlot } from '../stream/step-output.js';
import { transferListFor } from '../transfer.js';
import type { FromWorker, ToWorker, WorkerBootData } from './wire.js';

interface WorkerModule {
  handler?: (batch: unknown[], context: unknown) => ArrayLike<unknown> | Promise<ArrayLike<unknown>>;
  step?: (states: unknown[], context: unknown) => unknown;
  start?: (inputs: unknown[], context: unknown) => unknown;
  /** `false` for code that blocks in native code (ONNX Runtime): such a thread is retired, never terminated mid-request. */
  interruptible?: boolean;
  context?: (data: unknown) => unknown;
  dispose?: (context: unknown) => unknown;
}

interface Loaded {
  module: WorkerModule;
  context: unknown;
}

if (isMainThread || parentPort === null) throw new Error('batched-fn worker entry must run in a worker thread');
const port = parentPort;
const boot = workerData as WorkerBootData;

function send(message: FromWorker, transfer?: ArrayBuffer[]): void {
  port.postMessage(message, transfer);
}

// --- The module and its context, built once --------------------------------------------------

let loaded: Loaded | undefined;
let loading: Promise<Loaded> | undefined;

async function initialize(): Promise<Loaded> {
  const module = (await import(boot.moduleUrl)) as WorkerModule;
  if (boot.kind === 'batch' && typeof module.handler !== 'function') {
    throw new TypeError(`Worker module ${boot.moduleUrl} must export a \`handler(batch, context)\` function`);
  }
  if (boot.kind === 'stream' && typeof module.step !== 'function') {
    throw new TypeError(`Worker module ${boot.moduleUrl} must export a \`step(states, context)\` function`);
  }
  // Before the context, which may be where a native session is made: a request timing out from
  // here on must find the thread's answer to "may I terminate you?" already there.
  send({ type: 'loaded', interruptible: module.interruptible !== false });
  const context = typeof module.context === 'function' ? await module.context(boot.data) : undefined;
  return { module, context };
}

/** Shared by concurrent requests; a failure is forgotten so the next request tries again. */
function load(): Promise<Loaded> {
  if (loaded !== undefined) return Promise.resolve(loaded);
  if (loading === undefined) {
    const attempt = initialize();
    loading = attempt;
    attempt.then(
      (value) => {
        loaded = value;
        loading = undefined;
      },
      () => {
        loading = undefined;
      },
    );
  }
  return loading;
}

// --- batchedFn: one batch for `handler` -------------------------------------------------------

async function run(id: number, inputs: unknown[]): Promise<void> {
  try {
    const { module, context } = loaded ?? (await load());
    const outputs = await (module.handler as NonNullable<WorkerModule['handler']>)(inputs, context);
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
      isolateUncloneable(values, errors, cause, 'batch', () => {});
      send({ type: 'result', id, outputs: values, errors }, transferListFor(values));
    }
  } catch (error) {
    send({ type: 'error', id, error: serializeError(error) });
  }
}

function isolateUncloneable(
  values: unknown[],
  errors: [number, SerializedError][],
  cause: unknown,
  what: 'batch' | 'step',
  dropped: (index: number) => void,
): void {
  for (let i = 0; i < values.length; i++) {
    if (values[i] === undefined) continue;
    try {
      structuredClone(values[i]);
    } catch {
      errors.push([
        i,
        serializeError(
          new TypeError(
            `Output ${i} of the ${what} cannot be sent back from the worker thread: ${(cause as Error)?.message}`,
          ),
        ),
      ]);
      values[i] = undefined;
      dropped(i);
    }
  }
}

// --- batchedStream: states kept here by id ----------------------------------------------------

const states = new Map<number, unknown>();
const slot = newSlot();

function forget(ids: readonly number[]): void {
  for (const id of ids) states.delete(id);
}

async function serveStream(message: Extract<ToWorker, { type: 'start' | 'step' | 'drop' }>): Promise<void> {
  const id = message.id;
  if (message.type === 'drop') {
    forget(message.ids);
    send({ type: 'result', id, outputs: null, errors: [], held: states.size });
    return;
  }
  try {
    const { module, context } = loaded ?? (await load());
    if (message.type === 'start') {
      const made = typeof module.start === 'function' ? await module.start(message.inputs, context) : message.inputs;
      if (!Array.isArray(made) || made.length !== message.ids.length)
        throw new TypeError(`start must return one state per input (${message.ids.length})`);
      message.ids.forEach((stateId, i) => {
        states.set(stateId, made[i]);
      });
      send({ type: 'result', id, outputs: null, errors: [], held: states.size });
      return;
    }
    forget(message.drop);
    const ids = message.ids;
    let outputs: unknown;
    try {
      outputs = await (module.step as NonNullable<WorkerModule['step']>)(
        ids.map((stateId) => states.get(stateId)),
        context,
      );
    } catch (error) {
      // The main thread ends every stream of a failed step: their states go now.
      forget(ids);
      throw error;
    }
    if (!Array.isArray(outputs) || outputs.length !== ids.length) {
      forget(ids);
      send({ type: 'result', id, outputs: null, errors: [], held: states.size });
      return;
    }
    // Errors go through the codec, slot by slot, apart from the values, so no value can pass
    // for an error. A malformed slot becomes its stream's error here, like an Error would; a
    // stream that ends (done, or an error) has its state freed now.
    const values: unknown[] = new Array(outputs.length).fill(undefined);
    const errors: [number, SerializedError][] = [];
    for (let i = 0; i < outputs.length; i++) {
      readSlot(outputs, i, slot);
      if (slot.failed) {
        errors.push([i, serializeError(slot.error)]);
        states.delete(ids[i] as number);
        continue;
      }
      values[i] = slot.hasValue ? { value: slot.value, done: slot.done } : { done: slot.done };
      if (slot.done) states.delete(ids[i] as number);
    }
    const transfer = (): ArrayBuffer[] | undefined =>
      transferListFor(values.map((o) => (o as { value?: unknown } | undefined)?.value));
    try {
      send({ type: 'result', id, outputs: values, errors, held: states.size }, transfer());
    } catch (cause) {
      // One value that cannot be cloned (a function, a symbol) must not sink its neighbours: it
      // ends its own stream. Nothing was transferred, since cloning failed first.
      isolateUncloneable(values, errors, cause, 'step', (i) => states.delete(ids[i] as number));
      send({ type: 'result', id, outputs: values, errors, held: states.size }, transfer());
    }
  } catch (error) {
    send({ type: 'error', id, error: serializeError(error), held: states.size });
  }
}

// --- Shutdown ----------------------------------------------------------------------------------

async function close(): Promise<void> {
  try {
    // A module never loaded has nothing to dispose; loading it now only to dispose would be waste.
    const ready = loaded ?? (loading === undefined ? undefined : await loading.catch(() => undefined));
    if (ready !== undefined && typeof ready.module.dispose === 'function') await ready.module.dispose(ready.context);
  } finally {
    send({ type: 'closed' });
    port.close();
  }
}

// A message this thread cannot deserialize (a buffer detached on the way) is lost: say so, so the
// pool fails what it was waiting for instead of waiting forever.
port.on('messageerror', (error) => send({ type: 'lost', error: serializeError(error) }));

// Stream requests are handled one at a time, in order: a step never overtakes the start it depends
// on, and a close waits for the request before it (a retired thread exits once its step returns).
// A batch `run` is not queued behind them: the pool sends one batch at a time anyway.
let chain = Promise.resolve();
const inOrder = (work: () => Promise<void>): void => {
  chain = chain.then(work).catch(() => {});
};

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'run':
      void run(message.id, message.inputs);
      break;
    case 'start':
    case 'step':
    case 'drop':
      inOrder(() => serveStream(message));
      break;
    case 'init':
      load().then(
        () => send({ type: 'ready' }),
        (error: unknown) => send({ type: 'init-error', error: serializeError(error) }),
      );
      break;
    case 'close':
      inOrder(close);
      break;
  }
});

export const workerThreadId = threadId;
