/**
 * Runs inside a batchedStream worker thread: loads the user's module, builds
 * its context here, and keeps every sequence's state here by id. Only new
 * inputs come in and only each step's outputs go out: states never cross.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { serializeError } from '../error-codec.js';
import { transferListFor } from '../transfer.js';

interface StreamModule {
  step: (states: unknown[], context: unknown) => unknown;
  start?: (inputs: unknown[], context: unknown) => unknown;
  context?: (data: unknown) => unknown;
  dispose?: (context: unknown) => unknown;
}

export type ToStreamWorker =
  | { type: 'start'; req: number; ids: number[]; inputs: unknown[] }
  | { type: 'step'; req: number; ids: number[]; drop: number[] }
  | { type: 'close' };

if (isMainThread || parentPort === null) throw new Error('batched-fn stream worker entry must run in a worker thread');
const port = parentPort;
const boot = workerData as { moduleUrl: string; data: unknown };
const states = new Map<number, unknown>();
let loaded: Promise<{ module: StreamModule; context: unknown }> | undefined;

function load(): Promise<{ module: StreamModule; context: unknown }> {
  loaded ??= (async () => {
    const module = (await import(boot.moduleUrl)) as StreamModule;
    if (typeof module.step !== 'function') throw new TypeError(`Worker module ${boot.moduleUrl} must export a \`step(states, context)\` function`);
    const context = typeof module.context === 'function' ? await module.context(boot.data) : undefined;
    return { module, context };
  })();
  // A failed load is forgotten, so the next message tries again.
  loaded.catch(() => {
    loaded = undefined;
  });
  return loaded;
}

async function handle(message: ToStreamWorker): Promise<void> {
  if (message.type === 'close') {
    try {
      const { module, context } = await load();
      if (typeof module.dispose === 'function') await module.dispose(context);
    } finally {
      port.close();
    }
    return;
  }
  try {
    const { module, context } = await load();
    if (message.type === 'start') {
      const made = typeof module.start === 'function' ? await module.start(message.inputs, context) : message.inputs;
      if (!Array.isArray(made) || made.length !== message.ids.length) throw new TypeError(`start must return one state per input (${message.ids.length})`);
      message.ids.forEach((id, i) => states.set(id, made[i]));
      port.postMessage({ type: 'done', req: message.req, outputs: [] });
      return;
    }
    for (const id of message.drop) states.delete(id);
    const outputs = await module.step(message.ids.map((id) => states.get(id)), context);
    if (!Array.isArray(outputs) || outputs.length !== message.ids.length) {
      port.postMessage({ type: 'done', req: message.req, outputs: null });
      return;
    }
    // Errors go through the codec, slot by slot; a finished sequence's state is freed here.
    const wire = outputs.map((output, i) => {
      if (output instanceof Error) {
        states.delete(message.ids[i] as number);
        return { error: serializeError(output) };
      }
      if ((output as { done?: boolean } | undefined)?.done === true) states.delete(message.ids[i] as number);
      return output;
    });
    port.postMessage({ type: 'done', req: message.req, outputs: wire }, transferListFor(wire.map((o) => (o as { value?: unknown })?.value)));
  } catch (error) {
    port.postMessage({ type: 'failed', req: message.type === 'start' || message.type === 'step' ? message.req : -1, error: serializeError(error) });
  }
}

// Messages are handled one at a time, in order: a step never overtakes the start it depends on.
let chain = Promise.resolve();
port.on('message', (message: ToStreamWorker) => {
  chain = chain.then(() => handle(message));
});
