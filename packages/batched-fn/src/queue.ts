export type Resolve<O> = (value: O | PromiseLike<O>) => void;

/**
 * What `takeBatch` fills in: the calls taken are appended to its two arrays,
 * each cancellable call's handle is handed over with its index, and the
 * totals of what was taken are reported once, through `took`.
 */
export interface BatchBuilder<I, O, H> {
  readonly inputs: I[];
  readonly resolvers: (Resolve<O> | undefined)[];
  /**
   * Only while the batch is empty: these arrays become its `inputs` and `resolvers`, as they are.
   * The queue hands over a whole chunk of plain calls this way instead of copying it call by call.
   */
  adopt(inputs: I[], resolvers: Resolve<O>[]): void;
  /** Rows already in the batch (from earlier queues of the same lane). */
  readonly rows: number;
  addHandle(handle: H, index: number): void;
  /**
   * Calls were added: the batch's rows now (summed here, so fractional sizes add up exactly as
   * they are checked against the limit), and the longest and summed queue waits of the calls just
   * added, in ms (Triton's cumulative queue time).
   */
  took(rows: number, maxWait: number, totalWait: number): void;
}

/** Where each call's queue wait goes as it leaves the queue: a run of equal waits is recorded at once. */
export interface WaitSink {
  record(value: number): void;
  recordMany(value: number, count: number): void;
}

/** A chunk never holds more calls than this, however large `maxBatchSize` is. */
const MAX_CHUNK = 4096;
/**
 * Nor fewer: a chunk's own objects (itself, its run arrays, four array headers) are shared by its
 * calls. In chunks of 16, a backlog of 1 M calls cost 217 bytes per call (bench/memory.js), against
 * 189 in the ring buffer this queue replaced; in chunks of 64, 185.
 */
const MIN_CHUNK = 64;

/**
 * Slots a new chunk's arrays start with. A chunk for a large batch grows past it as calls come:
 * every `batchKey` lane and priority has chunks of its own, and a key is often the client's to
 * choose (a request's shape), so one waiting call must not reserve a whole batch of slots.
 */
const FIRST_SLOTS = 64;

/** The last index from `lo` to `hi` whose key (ascending in the index) is at most `key`; `lo` when none is. */
function lastAtMost(lo: number, hi: number, key: number, keyAt: (index: number) => number): number {
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (keyAt(mid) <= key) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** How many calls a new chunk holds: one batch's worth, so that a full batch is one whole chunk. */
function chunkCapacity(maxBatchSize: number): number {
  return Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, Math.ceil(maxBatchSize)));
}

/**
 * Consecutive calls, in arrays of their own: slot `i` holds call `start + i`. Rows and handles are
 * kept only once a call here has them (most calls have 1 row and no handle).
 */
class Chunk<I, O, H> {
  readonly start: number;
  readonly capacity: number;
  /** The first `length` slots are used. Made with FIRST_SLOTS slots, so that most chunks never regrow them. */
  readonly inputs: (I | undefined)[];
  /** An empty slot is a call that left (removed, or taken into a batch). */
  readonly resolvers: (Resolve<O> | undefined)[];
  /** Calls pushed here so far, whatever became of them. */
  length = 0;
  /**
   * Arrival times in runs: run `k` starts at slot `runStarts[k]` and its calls arrived at
   * `arrivals[k]`. Calls made in one tick share a clock reading, so a chunk holds few runs, and a
   * batch records its waits a run at a time.
   */
  readonly arrivals: number[];
  readonly runStarts: number[];
  /** Each call's rows, once a call here has other than 1 (then written for every later call too). */
  rows: number[] | undefined = undefined;
  /** Each call's handle, once a call here has one (then written for every later call too, so it has no gaps). */
  handles: (H | undefined)[] | undefined = undefined;
  /** Slots emptied by `remove`: tombstones the pump skips. */
  removed = 0;

  /** Opened for its first call, which arrived at `arrival`. */
  constructor(start: number, capacity: number, arrival: number) {
    this.start = start;
    this.capacity = capacity;
    const slots = Math.min(capacity, FIRST_SLOTS);
    this.inputs = new Array<I | undefined>(slots);
    this.resolvers = new Array<Resolve<O> | undefined>(slots);
    this.arrivals = [arrival];
    this.runStarts = [0];
  }

  /** Hands the used slots over to `batch` as its arrays: the chunk is done with them. */
  handOver(batch: BatchBuilder<I, O, H>): void {
    this.inputs.length = this.length;
    this.resolvers.length = this.length;
    batch.adopt(this.inputs as I[], this.resolvers as Resolve<O>[]);
  }

  /** Every call here is live, has 1 row and no handle: the chunk can be handed over whole. */
  get plain(): boolean {
    return this.removed === 0 && this.rows === undefined && this.handles === undefined;
  }

  /** A call that arrived at `arrival` takes the next slot; returns its index. */
  add(input: I, resolve: Resolve<O>, arrival: number): number {
    const index = this.length++;
    this.inputs[index] = input;
    this.resolvers[index] = resolve;
    const arrivals = this.arrivals;
    if (arrivals[arrivals.length - 1] !== arrival) {
      arrivals.push(arrival);
      this.runStarts.push(index);
    }
    return index;
  }

  /** The run holding slot `index`. */
  runOf(index: number): number {
    const starts = this.runStarts;
    return lastAtMost(0, starts.length - 1, index, (run) => starts[run] as number);
  }

  /** Where the run after `run` starts: the chunk's length for its last run. */
  runEnd(run: number): number {
    return run + 1 < this.runStarts.length ? (this.runStarts[run + 1] as number) : this.length;
  }

  rowsAt(index: number): number {
    return this.rows === undefined ? 1 : (this.rows[index] as number);
  }

  setRows(index: number, rows: number): void {
    this.rows ??= new Array<number>(index).fill(1);
    this.rows[index] = rows;
  }

  setHandle(index: number, handle: H | undefined): void {
    this.handles ??= new Array<H | undefined>(index);
    this.handles[index] = handle;
  }

  clear(index: number): void {
    this.inputs[index] = undefined;
    this.resolvers[index] = undefined;
    if (this.handles !== undefined) this.handles[index] = undefined;
  }
}

/**
 * The queue of waiting calls, kept in chunks of about one batch each rather
 * than one object per call. A queued call costs its promise, its resolve
 * function and two array slots (its input and its resolver), plus its share of
 * its chunk.
 *
 * Why chunks: a batch of plain calls that fills a whole chunk takes the
 * chunk's arrays as its own, with no copy. And since chunks are short-lived,
 * storing a new call's resolver into one does not cross from V8's old
 * generation into its young one, which a long-lived ring buffer made every
 * call pay for (a write barrier and a remembered-set entry).
 *
 * Positions are absolute sequence numbers (`seq`), so a call can be found
 * again (to abort it) without searching its chunk. A removed call leaves a
 * tombstone, an empty resolver slot, which the pump skips; removal is
 * O(log chunks).
 */
export class CallQueue<I, O, H = unknown> {
  readonly #limits: { readonly maxBatchSize: number };
  /** Chunks in order; those before `#first` are used up. Only the last one takes new calls. */
  #chunks: (Chunk<I, O, H> | undefined)[] = [];
  #first = 0;
  #last: Chunk<I, O, H> | undefined = undefined;
  #head = 0;
  #tail = 0;

  /** `limits` is the live settings: a new chunk holds one batch of calls as `maxBatchSize` is then. */
  constructor(limits: { readonly maxBatchSize: number }) {
    this.#limits = limits;
  }

  /** Calls queued or removed between the head and the tail (tombstones included). */
  get span(): number {
    return this.#tail - this.#head;
  }

  get head(): number {
    return this.#head;
  }

  push(input: I, resolve: Resolve<O>, arrival: number, rows: number, handle: H | undefined): number {
    let chunk = this.#last;
    if (chunk === undefined || chunk.length === chunk.capacity) chunk = this.#open(arrival);
    const index = chunk.add(input, resolve, arrival);
    if (rows !== 1 || chunk.rows !== undefined) chunk.setRows(index, rows);
    if (handle !== undefined || chunk.handles !== undefined) chunk.setHandle(index, handle);
    return this.#tail++;
  }

  #open(arrival: number): Chunk<I, O, H> {
    const chunk = new Chunk<I, O, H>(this.#tail, chunkCapacity(this.#limits.maxBatchSize), arrival);
    this.#chunks.push(chunk);
    this.#last = chunk;
    return chunk;
  }

  /** The chunk holding `seq`, while it is between the head and the tail. */
  #chunkOf(seq: number): Chunk<I, O, H> | undefined {
    if (!(seq >= this.#head && seq < this.#tail)) return undefined;
    const last = this.#last;
    if (last !== undefined && seq >= last.start) return last;
    const chunks = this.#chunks;
    return chunks[lastAtMost(this.#first, chunks.length - 1, seq, (i) => (chunks[i] as Chunk<I, O, H>).start)];
  }

  /** True while `seq` is queued and not removed. */
  isLive(seq: number): boolean {
    const chunk = this.#chunkOf(seq);
    return chunk !== undefined && chunk.resolvers[seq - chunk.start] !== undefined;
  }

  /** Drops tombstones at the head; returns false when nothing live remains. */
  skipRemoved(): boolean {
    while (this.#head < this.#tail) {
      const chunk = this.#headChunk();
      const index = this.#head - chunk.start;
      if (chunk.resolvers[index] !== undefined) return true;
      chunk.clear(index);
      this.#advance(chunk, 1);
    }
    return false;
  }

  /** The head moved `count` calls on, to the end of `chunk` at most: a used-up chunk goes, and an empty queue drops them all. */
  #advance(chunk: Chunk<I, O, H>, count: number): void {
    this.#head += count;
    if (this.#head === this.#tail) {
      // Nothing is queued: every chunk goes, and the next call starts a fresh one (a whole batch again).
      this.#chunks.length = 0;
      this.#first = 0;
      this.#last = undefined;
      return;
    }
    if (this.#head < chunk.start + chunk.length) return;
    // Only the last chunk can be short of its capacity, and calls remain after this one.
    this.#chunks[this.#first++] = undefined;
    if (this.#first >= 64 && this.#first * 2 >= this.#chunks.length) {
      this.#chunks.splice(0, this.#first);
      this.#first = 0;
    }
  }

  #headChunk(): Chunk<I, O, H> {
    return this.#chunks[this.#first] as Chunk<I, O, H>;
  }

  /** Arrival of the head call; call `skipRemoved()` first. */
  headArrival(): number {
    const chunk = this.#headChunk();
    return chunk.arrivals[chunk.runOf(this.#head - chunk.start)] as number;
  }

  headRows(): number {
    const chunk = this.#headChunk();
    return chunk.rowsAt(this.#head - chunk.start);
  }

  headInput(): I {
    const chunk = this.#headChunk();
    return chunk.inputs[this.#head - chunk.start] as I;
  }

  headResolver(): Resolve<O> {
    const chunk = this.#headChunk();
    return chunk.resolvers[this.#head - chunk.start] as Resolve<O>;
  }

  headHandle(): H | undefined {
    const chunk = this.#headChunk();
    return chunk.handles?.[this.#head - chunk.start];
  }

  /**
   * Moves live calls from the head into a batch, FIFO, while their rows fit
   * in `maxRows` (counting the rows the batch already holds). Records each
   * call's queue wait. An empty batch that can take a whole chunk of plain
   * calls adopts its arrays; otherwise calls are copied in one tight loop.
   * Returns true when it stopped at a call that does not fit, false when this
   * queue ran out.
   */
  takeBatch(maxRows: number, started: number, batch: BatchBuilder<I, O, H>, waits: WaitSink): boolean {
    let rows = batch.rows;
    let maxWait = 0;
    let totalWait = 0;
    let blocked = false;
    let full = false;
    while (this.#head < this.#tail && !blocked && !full) {
      const chunk = this.#headChunk();
      const arrivals = chunk.arrivals;
      const from = this.#head - chunk.start;
      const end = chunk.length;
      if (from === 0 && chunk.plain && batch.inputs.length === 0 && rows + end <= maxRows) {
        chunk.handOver(batch);
        const runStarts = chunk.runStarts;
        for (let run = 0; run < runStarts.length; run++) {
          const count = chunk.runEnd(run) - (runStarts[run] as number);
          const wait = started - (arrivals[run] as number);
          waits.recordMany(wait, count);
          if (wait > maxWait) maxWait = wait;
          totalWait += wait * count;
        }
        rows += end;
        // The arrays are the batch's now. Had this chunk been the last, the queue is empty and
        // #advance drops it: the next call opens a new one.
        this.#advance(chunk, end);
        full = rows === maxRows;
        continue;
      }
      // Fields are read once into locals: this loop runs once per call.
      const resolvers = chunk.resolvers;
      const inputs = chunk.inputs;
      const handles = chunk.handles;
      const rowCounts = chunk.rows;
      const outInputs = batch.inputs;
      const outResolvers = batch.resolvers;
      let run = chunk.runOf(from);
      let runEnd = chunk.runEnd(run);
      let wait = started - (arrivals[run] as number);
      let runCount = 0;
      let index = from;
      for (; index < end; index++) {
        if (index === runEnd) {
          if (runCount > 0) waits.recordMany(wait, runCount);
          run++;
          runEnd = chunk.runEnd(run);
          wait = started - (arrivals[run] as number);
          runCount = 0;
        }
        const resolve = resolvers[index];
        if (resolve === undefined) {
          chunk.clear(index);
          continue;
        }
        const itemRows = rowCounts === undefined ? 1 : (rowCounts[index] as number);
        if (rows + itemRows > maxRows) {
          blocked = true;
          break;
        }
        if (handles !== undefined) {
          const handle = handles[index];
          if (handle !== undefined) {
            batch.addHandle(handle, outInputs.length);
            handles[index] = undefined;
          }
        }
        outInputs.push(inputs[index] as I);
        outResolvers.push(resolve);
        inputs[index] = undefined;
        resolvers[index] = undefined;
        runCount++;
        if (wait > maxWait) maxWait = wait;
        totalWait += wait;
        rows += itemRows;
        if (rows === maxRows) {
          index++;
          full = true;
          break;
        }
      }
      if (runCount > 0) waits.recordMany(wait, runCount);
      this.#advance(chunk, index - from);
    }
    batch.took(rows, maxWait, totalWait);
    // A full batch stopped at the next live call, if one is left: removed ones behind it do not count.
    return blocked || (full && this.skipRemoved());
  }

  /** Removes the head call (live or not). */
  shift(): void {
    const chunk = this.#headChunk();
    chunk.clear(this.#head - chunk.start);
    this.#advance(chunk, 1);
  }

  /** Leaves a tombstone; returns the removed call's resolver. */
  remove(seq: number): Resolve<O> | undefined {
    const chunk = this.#chunkOf(seq);
    if (chunk === undefined) return undefined;
    const index = seq - chunk.start;
    const resolve = chunk.resolvers[index];
    if (resolve === undefined) return undefined;
    chunk.clear(index);
    chunk.removed++;
    return resolve;
  }

  /** Rows of the call at `seq`; 0 once it is no longer between the head and the tail. */
  rowsAt(seq: number): number {
    const chunk = this.#chunkOf(seq);
    return chunk === undefined ? 0 : chunk.rowsAt(seq - chunk.start);
  }
}
