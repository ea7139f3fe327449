/**
 * Runs inside each pool thread, for both kinds of module: loads the user's
 * module, builds its context on this thread (so a native session never
 * crosses threads), and answers requests. A batch module (`handler`) gets
 * one batch at a time; a stream module (`step`, optionally `start`) keeps
 * every sequence's state here by id, so only new inputs come in and only
 * each step's outputs go out.
 */
import { isMainThread, type MessagePort, parentPort, threadId, workerData } from 'node:worker_threads';
import { type SerializedError, serializeError } from '../error-codec.js';
import { DONE, HAS_VALUE, newSlot, readSlot } from '../stream/step-output.js';
import { transferListFor } from '../transfer.js';
import { BellReader, STEP } from './step-bell.js';
import type { FromWorker, ToWorker, WorkerBootData } from './wire.js';

interface WorkerModule {
  handler?: (batch: unknown[], context: unknown) => ArrayLike<unknown> | Promise<ArrayLike<unknown>>;
  step?: (states: unknown[], context: unknown) => unknown;
  start?: (inputs: unknown[], context: unknown) => unknown;
  /** `false` for code that blocks in native code (ONNX Runtime): such a thread is retired, never terminated mid-request. */
  interruptible?: boolean;
  context?: (data: unknown, connection: { port: MessagePort | undefined }) => unknown;
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
  const context =
    typeof module.context === 'function' ? await module.context(boot.data, { port: boot.port }) : undefined;
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

/** A step request, from the doorbell or (when too big for it) a message. */
interface StepRequest {
  id: number;
  ids: number[];
  drop: number[];
}

/** After answering a start or a step, the next step is likely on its way: the thread waits for it on the doorbell. */
let streaming = false;

async function serveStream(message: Extract<ToWorker, { type: 'start' | 'drop' }>): Promise<void> {
  const id = message.id;
  if (message.type === 'drop') {
    forget(message.ids);
    send({ type: 'result', id, outputs: null, errors: [], held: states.size });
    return;
  }
  try {
    const { module, context } = loaded ?? (await load());
    const made = typeof module.start === 'function' ? await module.start(message.inputs, context) : message.inputs;
    if (!Array.isArray(made) || made.length !== message.ids.length)
      throw new TypeError(`start must return one state per input (${message.ids.length})`);
    message.ids.forEach((stateId, i) => {
      states.set(stateId, made[i]);
    });
    send({ type: 'result', id, outputs: null, errors: [], held: states.size });
    streaming = true;
  } catch (error) {
    send({ type: 'error', id, error: serializeError(error), held: states.size });
  }
}

/**
 * One step, answered. Runs synchronously when the module's `step` does (the common case, and what
 * lets a lingering thread serve the next step without going back to its event loop); returns a
 * promise only when loading or the step itself is asynchronous.
 */
function serveStep(request: StepRequest): Promise<void> | undefined {
  const { id, ids } = request;
  if (loaded === undefined)
    return load().then(
      () => serveStep(request),
      (error: unknown) => failStep(id, [], error),
    );
  forget(request.drop);
  const { module, context } = loaded;
  const stepStates = new Array<unknown>(ids.length);
  for (let i = 0; i < ids.length; i++) stepStates[i] = states.get(ids[i] as number);
  let outputs: unknown;
  try {
    outputs = (module.step as NonNullable<WorkerModule['step']>)(stepStates, context);
    // As `await` would: a thenable is adopted (reading its `then` may throw, which fails the step).
    if (isThenable(outputs))
      return Promise.resolve(outputs).then(
        (resolved) => answerStep(id, ids, resolved),
        (error: unknown) => failStep(id, ids, error),
      );
  } catch (error) {
    failStep(id, ids, error);
    return undefined;
  }
  answerStep(id, ids, outputs);
  return undefined;
}

function isThenable(value: unknown): boolean {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** The step threw: the main thread ends every stream of it, so their states go now. */
function failStep(id: number, ids: readonly number[], error: unknown): void {
  forget(ids);
  streaming = true;
  send({ type: 'error', id, error: serializeError(error), held: states.size });
}

function answerStep(id: number, ids: readonly number[], outputs: unknown): void {
  streaming = true;
  try {
    if (!Array.isArray(outputs) || outputs.length !== ids.length) {
      forget(ids);
      send({ type: 'stepped', id, values: null, flags: null, errors: [], held: states.size });
      return;
    }
    // Packed for the trip back: one array of values and one flag byte per slot, no object per
    // sequence. Errors go through the codec, slot by slot, apart from the values, so no value can
    // pass for an error. A malformed slot becomes its stream's error here, like an Error would; a
    // stream that ends (done, or an error) has its state freed now.
    const count = outputs.length;
    const values: unknown[] = [];
    const flags = new Uint8Array(count);
    const errors: [number, SerializedError][] = [];
    for (let i = 0; i < count; i++) {
      readSlot(outputs, i, slot);
      if (slot.failed) {
        errors.push([i, serializeError(slot.error)]);
        values.push(undefined);
        states.delete(ids[i] as number);
        continue;
      }
      values.push(slot.hasValue ? slot.value : undefined);
      flags[i] = (slot.hasValue ? HAS_VALUE : 0) | (slot.done ? DONE : 0);
      if (slot.done) states.delete(ids[i] as number);
    }
    try {
      send({ type: 'stepped', id, values, flags, errors, held: states.size }, transferListFor(values));
    } catch (cause) {
      // One value that cannot be cloned (a function, a symbol) must not sink its neighbours: it
      // ends its own stream. Nothing was transferred, since cloning failed first.
      isolateUncloneable(values, errors, cause, 'step', (i) => {
        flags[i] = 0;
        states.delete(ids[i] as number);
      });
      send({ type: 'stepped', id, values, flags, errors, held: states.size }, transferListFor(values));
    }
  } catch (error) {
    send({ type: 'error', id, error: serializeError(error), held: states.size });
  }
}

// --- In order, and the doorbell ------------------------------------------------------------------

/**
 * How long a stream thread waits on its doorbell after an answer, blocked, before it goes back to
 * its event loop. The main thread usually rings within tens of microseconds (it hands the values
 * out and sends the next step); blocking longer than that would only delay the thread's own
 * timers, and a step that comes later is still heard, a little slower, from the event loop.
 */
const LINGER_MS = 1;
const bell = boot.bell instanceof SharedArrayBuffer ? new BellReader(boot.bell) : undefined;

// Stream requests are handled one at a time, in order: a step never overtakes the start it depends
// on, and a close waits for the request before it (a retired thread exits once its step returns).
// A batch `run` is not queued behind them: the pool sends one batch at a time anyway.
type Job = () => Promise<void> | undefined;
const jobs: Job[] = [];
let running = false;

function inOrder(job: Job): void {
  jobs.push(job);
  if (!running) drain();
}

/** Runs queued jobs; a synchronous one (a step, mostly) costs no promise. Then listens on the doorbell. */
function drain(): void {
  running = true;
  for (let job = jobs.shift(); job !== undefined; job = jobs.shift()) {
    let pending: Promise<void> | undefined;
    try {
      pending = job();
    } catch {
      pending = undefined;
    }
    if (pending !== undefined) {
      void pending.then(drain, drain);
      return;
    }
  }
  running = false;
  if (bell !== undefined) listen(bell);
}

/** The step in the doorbell; one whose counts were scribbled over fails (the main thread waits for its answer). */
function bellStep(reader: BellReader): Promise<void> | undefined {
  const request = reader.read();
  if (request.ids === undefined) {
    send({
      type: 'error',
      id: request.id,
      error: serializeError(new TypeError('batched-fn: unreadable step request')),
    });
    return undefined;
  }
  return serveStep(request);
}

/** While streaming, waits blocked for the next step (answering steps as they come); then from the event loop. */
function listen(reader: BellReader): void {
  while (streaming) {
    streaming = false;
    // KNOCK: a message waits for the event loop; IDLE: nothing came in time.
    if (reader.wait(LINGER_MS) !== STEP) break;
    running = true;
    const pending = bellStep(reader);
    if (pending !== undefined) {
      void pending.then(drain, drain);
      return;
    }
    running = false;
  }
  reader.arm(heard);
}

function heard(code: number): void {
  if (code === STEP) inOrder(() => bellStep(bell as BellReader));
  else (bell as BellReader).arm(heard);
}

// From the start, a step rung before this thread ever answered is heard too.
bell?.arm(heard);

// --- Shutdown ----------------------------------------------------------------------------------

async function close(): Promise<void> {
  try {
    // A module never loaded has nothing to dispose; loading it now only to dispose would be waste.
    const ready = loaded ?? (loading === undefined ? undefined : await loading.catch(() => undefined));
    if (ready !== undefined && typeof ready.module.dispose === 'function') await ready.module.dispose(ready.context);
  } finally {
    send({ type: 'closed' });
    // The module's channel would keep this thread alive once its port has a listener.
    boot.port?.close();
    port.close();
  }
}

// A message this thread cannot deserialize (a buffer detached on the way) is lost: say so, so the
// pool fails what it was waiting for instead of waiting forever.
port.on('messageerror', (error) => send({ type: 'lost', error: serializeError(error) }));

port.on('message', (message: ToWorker) => {
  switch (message.type) {
    case 'run':
      void run(message.id, message.inputs);
      break;
    case 'start':
    case 'drop':
      inOrder(() => serveStream(message));
      break;
    case 'step':
      inOrder(() => serveStep(message));
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
