/**
 * A stream worker's doorbell: the step request crosses in shared memory, and the thread waits for
 * it blocked in `Atomics.wait` for a moment after each answer, instead of going back to its event
 * loop to receive a message. A step is the hot path of worker-mode streaming (one round trip per
 * generated token), and waking a thread's event loop for a port message cost about twice as much
 * as a futex wake on our 2-core machines (message 25-56 µs, bell 19-23 µs per round trip, in one
 * run). Answers still come back as messages: their values must be cloned anyway.
 *
 * Only the main thread writes a request, and only the thread reads it: a request in the bell is
 * answered (by message) before the next is written. Anything else (start, drop, close, a step too
 * big for the bell) goes as a message, after which the main thread knocks so that a lingering
 * thread goes back to its event loop at once.
 */

/** The Int32 header: what the bell holds, and the counts of the request in it. */
const BELL = 0;
const IDS = 1;
const DROPS = 2;
const HEADER_BYTES = 16;
/**
 * Ids one step request may carry (ids plus drops); a bigger step goes as a message. Ids are
 * stored as float64, exact to 2^53 like the counter that makes them (int32 would wrap after 2^31
 * sequences, weeks of serving). Cell 0 is the request's id. 32 KiB per stream thread.
 */
export const BELL_CAPACITY = 4095;

export const IDLE = 0;
/** A step request is in the bell. */
export const STEP = 1;
/** A message was posted: a lingering thread goes back to its event loop to receive it. */
export const KNOCK = 2;

/** The main thread's side: writes step requests and knocks. */
export class StepBell {
  readonly buffer: SharedArrayBuffer;
  readonly #header: Int32Array;
  readonly #numbers: Float64Array;

  constructor() {
    this.buffer = new SharedArrayBuffer(HEADER_BYTES + (1 + BELL_CAPACITY) * Float64Array.BYTES_PER_ELEMENT);
    this.#header = new Int32Array(this.buffer, 0, HEADER_BYTES >> 2);
    this.#numbers = new Float64Array(this.buffer, HEADER_BYTES);
  }

  /** Writes step `id` of `ids` (after freeing `drop`) and wakes the thread; false (nothing written) when too big. */
  ring(id: number, ids: readonly number[], drop: readonly number[]): boolean {
    if (ids.length + drop.length > BELL_CAPACITY) return false;
    const header = this.#header;
    const numbers = this.#numbers;
    numbers[0] = id;
    header[IDS] = ids.length;
    header[DROPS] = drop.length;
    let at = 1;
    for (const value of ids) numbers[at++] = value;
    for (const value of drop) numbers[at++] = value;
    // The atomic store publishes the cells written above; the thread reads them after it sees STEP.
    Atomics.store(header, BELL, STEP);
    Atomics.notify(header, BELL);
    return true;
  }

  /** A message was posted: wake a lingering thread, unless a step is already waiting in the bell. */
  knock(): void {
    Atomics.compareExchange(this.#header, BELL, IDLE, KNOCK);
    Atomics.notify(this.#header, BELL);
  }
}

type WaitAsync = (
  cells: Int32Array,
  index: number,
  value: number,
) => { async: false; value: string } | { async: true; value: Promise<string> };

/** The thread's side: waits on the bell, and reads what it holds. */
export class BellReader {
  readonly #header: Int32Array;
  readonly #numbers: Float64Array;
  #armed = false;

  /** `buffer` came in the boot data, made by StepBell; user code in the thread could still scribble on it. */
  constructor(buffer: SharedArrayBuffer) {
    this.#header = new Int32Array(buffer, 0, HEADER_BYTES >> 2);
    this.#numbers = new Float64Array(buffer, HEADER_BYTES);
  }

  /** Blocks up to `ms` for the bell to ring; returns what it held (and empties it): IDLE when nothing came. */
  wait(ms: number): number {
    Atomics.wait(this.#header, BELL, IDLE, ms);
    return Atomics.exchange(this.#header, BELL, IDLE);
  }

  /**
   * Back in the event loop: `ring` hears the bell's next ring with the code it held, without
   * blocking the thread. One wait is armed at a time.
   */
  arm(ring: (code: number) => void): void {
    if (this.#armed) return;
    this.#armed = true;
    const waited = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync(this.#header, BELL, IDLE);
    const heard = (): void => {
      this.#armed = false;
      ring(Atomics.exchange(this.#header, BELL, IDLE));
    };
    if (waited.async) void waited.value.then(heard);
    else queueMicrotask(heard);
  }

  /** The step request in the bell; `ids` is undefined when its counts are out of range. */
  read(): { id: number; ids: number[]; drop: number[] } | { id: number; ids: undefined; drop: undefined } {
    const numbers = this.#numbers;
    const id = numbers[0] as number;
    const count = this.#header[IDS] as number;
    const drops = this.#header[DROPS] as number;
    if (!(count >= 0 && drops >= 0 && 1 + count + drops <= numbers.length))
      return { id, ids: undefined, drop: undefined };
    const ids = new Array<number>(count);
    const drop = new Array<number>(drops);
    let at = 1;
    for (let i = 0; i < count; i++) ids[i] = numbers[at++] as number;
    for (let i = 0; i < drops; i++) drop[i] = numbers[at++] as number;
    return { id, ids, drop };
  }
}
