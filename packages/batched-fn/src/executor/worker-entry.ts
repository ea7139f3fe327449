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
import { BatchSizeMismatchError } from '../errors.js';
import { DONE, HAS_VALUE, newSlot, readSlot } from '../stream/step-output.js';
import type { BatchCodec, PackedBatch } from '../options.js';
import { transferListFor } from '../transfer.js';
import type { FromWorker, ToWorker, WorkerBootData } from './wire.js';

interface WorkerModule {
  handler?: (batch: unknown[], context: unknown) => ArrayLike<unknown> | Promise<ArrayLike<unknown>>;
  step?: (states: unknown[], context: unknown) => unknown;
  start?: (inputs: unknown[], context: unknown) => unknown;
  /** `false` for code that blocks in native code (ONNX Runtime): such a thread is retired, never terminated mid-request. */
  interruptible?: boolean;
  context?: (data: unknown, connection: { port: MessagePort | undefined }) => unknown;
  dispose?: (context: unknown) => unknown;
  /** The batcher's `codec` option, the same object: batches arrive and leave packed. */
  codec?: BatchCodec<unknown, unknown>;
  /** Takes a packed batch as it is and answers it packed (instead of decodeInputs, handler, encodeOutputs). */
  packedHandler?: (packed: unknown, context: unknown) => PackedBatch | Promise<PackedBatch>;
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
    answer(id, await (module.handler as NonNullable<WorkerModule['handler']>)(inputs, context), undefined);
  } catch (error) {
    send({ type: 'error', id, error: serializeError(error) });
  }
}

/** A batch the batcher's `codec` packed: unpacked here, and its outputs packed back when they all are outputs. */
async function runPacked(id: number, packed: unknown): Promise<void> {
  try {
    const { module, context } = loaded ?? (await load());
    if (typeof module.packedHandler === 'function') {
      // The module reads the batch as it crossed: no object per call on this side at all.
      const answered = await module.packedHandler(packed, context);
      if (typeof answered !== 'object' || answered === null || !('value' in answered))
        throw new TypeError(`Worker module ${boot.moduleUrl}: packedHandler must answer { value, transfer? }`);
      send({ type: 'packed-result', id, packed: answered.value }, answered.transfer);
      return;
    }
    const codec = module.codec;
    if (typeof codec?.decodeInputs !== 'function' || typeof codec.encodeOutputs !== 'function')
      throw new TypeError(
        `Worker module ${boot.moduleUrl} got a packed batch (the batcher's \`codec\` option) but exports ` +
          'no `codec` with `decodeInputs` and `encodeOutputs`, nor a `packedHandler`: export the same codec object',
      );
    const inputs = codec.decodeInputs(packed);
    answer(id, await (module.handler as NonNullable<WorkerModule['handler']>)(inputs, context), {
      codec,
      count: inputs.length,
    });
  } catch (error) {
    send({ type: 'error', id, error: serializeError(error) });
  }
}

const isError = (value: unknown): boolean => value instanceof Error;

/**
 * Sends a batch's outputs: packed by the codec when given, with one output per input and none an
 * Error; else one by one (the main thread reports a count mismatch with the batch's real size).
 */
function answer(
  id: number,
  outputs: ArrayLike<unknown>,
  packing: { codec: BatchCodec<unknown, unknown>; count: number } | undefined,
): void {
  if (!Array.isArray(outputs) && !ArrayBuffer.isView(outputs)) {
    // Let the main thread report the mismatch with the batch's real size.
    send({ type: 'result', id, outputs: null, errors: [] });
    return;
  }
  if (packing !== undefined && outputs.length === packing.count && !Array.prototype.some.call(outputs, isError)) {
    // The handler's own array when it is one: a codec may ask whether it was moved.
    const { value, transfer } = packing.codec.encodeOutputs(Array.isArray(outputs) ? outputs : Array.from(outputs));
    send({ type: 'packed-result', id, packed: value }, transfer);
    return;
  }
  // A copy: failed slots are blanked below, and the handler's array is its own.
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

// --- batchedStream: states kept here by id, stepped by the thread's own run --------------------

const states = new Map<number, unknown>();
const slot = newSlot();

/**
 * The group's run, while one is open. The thread steps its sequences on its own, one step after
 * another, instead of waiting for a request per step: waking a thread costs tens to hundreds of
 * microseconds on small machines, each way, and a step request per token paid it twice. The main
 * thread keeps it a few steps ahead of the steps it has handed out (credit), and sends starts,
 * drops and credit as it goes; they are read between steps, since a step ends in the event loop.
 */
interface Run {
  id: number;
  /** Steps taken, and the step it may take up to (credit). */
  steps: number;
  until: number;
  /** With `joins`: after a step in which a stream ended, it waits until the main thread has seen that step. */
  joins: boolean;
  holdUntilSeen: number;
  seen: number;
  /** The states stepped, in order of arrival: started ones join the end, finished and dropped ones leave. */
  active: number[];
}

let current: Run | undefined;
let stepScheduled = false;

function forget(ids: readonly number[]): void {
  for (const id of ids) states.delete(id);
}

/** A stream ended (done, or failed) in a step: its state goes now, and it leaves the run after the step. */
function leave(id: number, ended: Set<number> | undefined): Set<number> {
  states.delete(id);
  return (ended ?? new Set<number>()).add(id);
}

function without(ids: readonly number[], gone: ReadonlySet<number>): number[] {
  return ids.filter((id) => !gone.has(id));
}

async function serveStream(message: Extract<ToWorker, { type: 'start' | 'drop' }>): Promise<void> {
  const id = message.id;
  if (message.type === 'drop') {
    forget(message.ids);
    const gone = new Set(message.ids);
    if (current !== undefined) current.active = without(current.active, gone);
    send({ type: 'result', id, outputs: null, errors: [], held: states.size });
    return;
  }
  try {
    const { module, context } = loaded ?? (await load());
    const made = typeof module.start === 'function' ? await module.start(message.inputs, context) : message.inputs;
    // The error an inline group's start gives for the same mistake, so both modes answer alike.
    if (!Array.isArray(made) || made.length !== message.ids.length)
      throw new BatchSizeMismatchError(message.ids.length, Array.isArray(made) ? made.length : undefined);
    // A group opens its run before its first start, so a start with no run open is one whose run
    // failed or stopped while it waited: its states would have no one to step or free them.
    const run = current;
    if (run === undefined) throw new Error('batched-fn: the group this start joins has ended');
    message.ids.forEach((stateId, i) => {
      states.set(stateId, made[i]);
    });
    run.active.push(...message.ids);
    send({ type: 'result', id, outputs: null, errors: [], held: states.size });
  } catch (error) {
    send({ type: 'error', id, error: serializeError(error), held: states.size });
  }
}

/** A notice or a run's opening, handled in order with starts and drops. */
function serveRun(message: Extract<ToWorker, { type: 'steps' | 'credit' | 'stop' }>): undefined {
  switch (message.type) {
    case 'steps':
      // One run at a time: the pool leases a thread to one group, which stops its run before it lets go.
      if (current !== undefined) stopRun(current);
      current = {
        id: message.id,
        steps: 0,
        until: stepCount(message.until),
        joins: message.joins === true,
        holdUntilSeen: 0,
        seen: 0,
        active: [],
      };
      break;
    case 'credit':
      if (current !== undefined && current.id === message.run) {
        current.until = Math.max(current.until, stepCount(message.until));
        current.seen = Math.max(current.seen, stepCount(message.seen));
        current.joins = message.joins === true;
      }
      break;
    case 'stop':
      if (current !== undefined && current.id === message.run) stopRun(current);
      break;
  }
  return undefined;
}

/** Step counts come from the main thread; one that is not a count allows nothing. */
function stepCount(value: unknown): number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : 0;
}

/** Whether the run may take a step now: it has sequences, credit, and no boundary to wait for. */
function mayStep(run: Run | undefined): run is Run {
  return run !== undefined && run.active.length > 0 && run.steps < run.until && run.seen >= run.holdUntilSeen;
}

/** The run ends: what it still steps is freed (the group has ended those streams), and the run is answered. */
function stopRun(run: Run): void {
  forget(run.active);
  if (current === run) current = undefined;
  send({ type: 'result', id: run.id, outputs: null, errors: [], held: states.size });
}

/** A step goes into the queue once the event loop has turned, so what arrived meanwhile is read first. */
function scheduleStep(): void {
  if (stepScheduled || !mayStep(current)) return;
  stepScheduled = true;
  setImmediate(queueStep);
}

function queueStep(): void {
  stepScheduled = false;
  inOrder(stepOnce);
}

/**
 * One step of the run's sequences. Runs synchronously when the module's `step` does (the common
 * case); returns a promise only when the step itself is asynchronous.
 */
function stepOnce(): Promise<void> | undefined {
  const run = current;
  // The module is loaded: a run steps only sequences a start has made.
  if (!mayStep(run) || loaded === undefined) return undefined;
  run.steps++;
  const ids = run.active;
  const { module, context } = loaded;
  const stepStates = new Array<unknown>(ids.length);
  for (let i = 0; i < ids.length; i++) stepStates[i] = states.get(ids[i] as number);
  const started = performance.now();
  let outputs: unknown;
  try {
    outputs = (module.step as NonNullable<WorkerModule['step']>)(stepStates, context);
    // As `await` would: a thenable is adopted (reading its `then` may throw, which fails the step).
    if (isThenable(outputs))
      return Promise.resolve(outputs).then(
        (resolved) => answerStep(run, ids, resolved, started),
        (error: unknown) => failRun(run, error),
      );
  } catch (error) {
    failRun(run, error);
    return undefined;
  }
  answerStep(run, ids, outputs, started);
  return undefined;
}

function isThenable(value: unknown): boolean {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** The step failed as a whole: the main thread ends every stream of the run, so their states go now. */
function failRun(run: Run, error: unknown): void {
  forget(run.active);
  run.active = [];
  if (current === run) current = undefined;
  send({ type: 'error', id: run.id, error: serializeError(error), held: states.size });
}

function answerStep(run: Run, ids: number[], outputs: unknown, started: number): void {
  const ms = performance.now() - started;
  try {
    if (!Array.isArray(outputs) || outputs.length !== ids.length) {
      forget(run.active);
      run.active = [];
      const received = Array.isArray(outputs) ? outputs.length : undefined;
      send({
        type: 'stepped',
        id: run.id,
        ids,
        values: null,
        flags: null,
        errors: [],
        held: states.size,
        ms,
        received,
      });
      return;
    }
    // Packed for the trip back: one array of values and one flag byte per slot, no object per
    // sequence. Errors go through the codec, slot by slot, apart from the values, so no value can
    // pass for an error. A malformed slot becomes its stream's error here, like an Error would; a
    // stream that ends (done, or an error) has its state freed now and leaves the run.
    const count = outputs.length;
    const values: unknown[] = [];
    const flags = new Uint8Array(count);
    const errors: [number, SerializedError][] = [];
    let ended: Set<number> | undefined;
    for (let i = 0; i < count; i++) {
      readSlot(outputs, i, slot);
      if (slot.failed) {
        errors.push([i, serializeError(slot.error)]);
        values.push(undefined);
        ended = leave(ids[i] as number, ended);
        continue;
      }
      values.push(slot.hasValue ? slot.value : undefined);
      flags[i] = (slot.hasValue ? HAS_VALUE : 0) | (slot.done ? DONE : 0);
      if (slot.done) ended = leave(ids[i] as number, ended);
    }
    try {
      send({ type: 'stepped', id: run.id, ids, values, flags, errors, held: states.size, ms }, transferListFor(values));
    } catch (cause) {
      // One value that cannot be cloned (a function, a symbol) must not sink its neighbours: it
      // ends its own stream. Nothing was transferred, since cloning failed first.
      isolateUncloneable(values, errors, cause, 'step', (i) => {
        flags[i] = 0;
        ended = leave(ids[i] as number, ended);
      });
      send({ type: 'stepped', id: run.id, ids, values, flags, errors, held: states.size, ms }, transferListFor(values));
    }
    if (ended !== undefined) {
      // A drop read during an asynchronous step changed `active` since: filter what it is now.
      run.active = without(run.active, ended);
      if (run.joins) run.holdUntilSeen = run.steps;
    }
  } catch (error) {
    failRun(run, error);
  }
}

// --- In order ----------------------------------------------------------------------------------

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

/** Runs queued jobs; a synchronous one (a step, mostly) costs no promise. Then the run's next step. */
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
  scheduleStep();
}

// --- Shutdown ----------------------------------------------------------------------------------

async function close(): Promise<void> {
  // No step after this: a retired thread's run ends with it.
  current = undefined;
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
    case 'run-packed':
      void runPacked(message.id, message.packed);
      break;
    case 'start':
    case 'drop':
      inOrder(() => serveStream(message));
      break;
    case 'steps':
    case 'credit':
    case 'stop':
      inOrder(() => serveRun(message));
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
