/**
 * Runs inside a batchedStream worker thread: loads the user's module, builds
 * its context here, and keeps every sequence's state here by id. Only new
 * inputs come in and only each step's outputs go out: states never cross.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { type SerializedError, serializeError } from '../error-codec.js';
import { transferListFor } from '../transfer.js';
import { newSlot, readSlot } from './step-output.js';
import type { FromStreamWorker, ToStreamWorker } from './stream-wire.js';

interface StreamModule {
  step: (states: unknown[], context: unknown) => unknown;
  start?: (inputs: unknown[], context: unknown) => unknown;
  context?: (data: unknown) => unknown;
  dispose?: (context: unknown) => unknown;
  /** `false` for a step that blocks in native code (ONNX Runtime): such a thread is retired, never terminated. */
  interruptible?: boolean;
}

if (isMainThread || parentPort === null) throw new Error('batched-fn stream worker entry must run in a worker thread');
const port = parentPort;
const boot = workerData as { moduleUrl: string; data: unknown };
const states = new Map<number, unknown>();
const slot = newSlot();
let loaded: Promise<{ module: StreamModule; context: unknown }> | undefined;

function send(message: FromStreamWorker, transfer?: ArrayBuffer[]): void {
  port.postMessage(message, transfer);
}

function load(): Promise<{ module: StreamModule; context: unknown }> {
  loaded ??= (async () => {
    const module = (await import(boot.moduleUrl)) as StreamModule;
    if (typeof module.step !== 'function') throw new TypeError(`Worker module ${boot.moduleUrl} must export a \`step(states, context)\` function`);
    // Before the context, which may be where a native session is made: a step timing out from
    // here on must find the thread's answer to "may I terminate you?" already there.
    send({ type: 'loaded', interruptible: module.interruptible !== false });
    const context = typeof module.context === 'function' ? await module.context(boot.data) : undefined;
    return { module, context };
  })();
  // A failed load is forgotten, so the next message tries again.
  loaded.catch(() => {
    loaded = undefined;
  });
  return loaded;
}

function forget(ids: readonly number[]): void {
  for (const id of ids) states.delete(id);
}

async function handle(message: ToStreamWorker): Promise<void> {
  if (message.type === 'close') {
    try {
      // A module never loaded has nothing to dispose; loading it now only to dispose would be waste.
      const ready = loaded === undefined ? undefined : await loaded.catch(() => undefined);
      if (ready !== undefined && typeof ready.module.dispose === 'function') await ready.module.dispose(ready.context);
    } finally {
      port.close();
    }
    return;
  }
  if (message.type === 'drop') {
    forget(message.ids);
    send({ type: 'done', req: message.req, outputs: null, errors: [], held: states.size });
    return;
  }
  try {
    const { module, context } = await load();
    if (message.type === 'start') {
      const made = typeof module.start === 'function' ? await module.start(message.inputs, context) : message.inputs;
      if (!Array.isArray(made) || made.length !== message.ids.length) throw new TypeError(`start must return one state per input (${message.ids.length})`);
      message.ids.forEach((id, i) => states.set(id, made[i]));
      send({ type: 'done', req: message.req, outputs: null, errors: [], held: states.size });
      return;
    }
    forget(message.drop);
    let outputs: unknown;
    try {
      outputs = await module.step(message.ids.map((id) => states.get(id)), context);
    } catch (error) {
      // The main thread ends every stream of a failed step: their states go now.
      forget(message.ids);
      throw error;
    }
    if (!Array.isArray(outputs) || outputs.length !== message.ids.length) {
      forget(message.ids);
      send({ type: 'done', req: message.req, outputs: null, errors: [], held: states.size });
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
        states.delete(message.ids[i] as number);
        continue;
      }
      values[i] = slot.hasValue ? { value: slot.value, done: slot.done } : { done: slot.done };
      if (slot.done) states.delete(message.ids[i] as number);
    }
    const transfer = (): ArrayBuffer[] | undefined => transferListFor(values.map((o) => (o as { value?: unknown } | undefined)?.value));
    try {
      send({ type: 'done', req: message.req, outputs: values, errors, held: states.size }, transfer());
    } catch (cause) {
      // One value that cannot be cloned (a function, a symbol) must not sink its neighbours: it
      // ends its own stream. Nothing was transferred, since cloning failed first.
      isolateUncloneable(message.ids, values, errors, cause);
      send({ type: 'done', req: message.req, outputs: values, errors, held: states.size }, transfer());
    }
  } catch (error) {
    send({ type: 'failed', req: message.req, error: serializeError(error), held: states.size });
  }
}

function isolateUncloneable(ids: number[], values: unknown[], errors: [number, SerializedError][], cause: unknown): void {
  for (let i = 0; i < values.length; i++) {
    if (values[i] === undefined) continue;
    try {
      structuredClone(values[i]);
    } catch {
      errors.push([i, serializeError(new TypeError(`Output ${i} of the step cannot be sent back from the worker thread: ${(cause as Error)?.message}`))]);
      values[i] = undefined;
      states.delete(ids[i] as number);
    }
  }
}

// Messages are handled one at a time, in order: a step never overtakes the start it depends on,
// and a close waits for the step before it (a retired thread exits once its step returns).
let chain = Promise.resolve();
port.on('message', (message: ToStreamWorker) => {
  chain = chain.then(() => handle(message)).catch(() => {});
});
