export type Resolve<O> = (value: O | PromiseLike<O>) => void;

/**
 * What `takeBatch` fills in: the calls taken are appended to its two arrays,
 * each cancellable call's handle is handed over with its index, and the
 * totals of what was taken are reported once, through `took`.
 */
export interface BatchBuilder<I, O, H> {
  readonly inputs: I[];
  readonly resolvers: (Resolve<O> | undefined)[];
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

/**
 * The queue of waiting calls, stored as parallel ring buffers rather than one
 * object per call. A queued call costs its promise, its resolve function and
 * about 28 bytes of slots here; an object per call would add another 60-100
 * bytes, which matters at a million queued items.
 *
 * Positions are absolute sequence numbers (`seq`), so a call can be found
 * again (to abort it) without searching. A removed call leaves a tombstone, an
 * empty resolver slot, which the pump skips; removal is O(1).
 */
export class CallQueue<I, O, H = unknown> {
  #inputs!: (I | undefined)[];
  #resolvers!: (Resolve<O> | undefined)[];
  #handles!: (H | undefined)[];
  #arrivals!: Float64Array;
  #rows!: Float64Array;
  #mask!: number;
  #head = 0;
  #tail = 0;
  readonly #initialCapacity: number;

  constructor(initialCapacity = 256) {
    let capacity = 1;
    while (capacity < initialCapacity) capacity <<= 1;
    this.#initialCapacity = capacity;
    this.#allocate(capacity);
  }

  #allocate(capacity: number): void {
    this.#inputs = new Array(capacity);
    this.#resolvers = new Array(capacity);
    this.#handles = new Array(capacity);
    this.#arrivals = new Float64Array(capacity);
    this.#rows = new Float64Array(capacity);
    this.#mask = capacity - 1;
  }

  /** Slots in use, tombstones included. */
  get span(): number {
    return this.#tail - this.#head;
  }

  get head(): number {
    return this.#head;
  }

  push(input: I, resolve: Resolve<O>, arrival: number, rows: number, handle: H | undefined): number {
    if (this.#tail - this.#head === this.#resolvers.length) this.#grow();
    const seq = this.#tail++;
    const slot = seq & this.#mask;
    this.#inputs[slot] = input;
    this.#resolvers[slot] = resolve;
    this.#handles[slot] = handle;
    this.#arrivals[slot] = arrival;
    this.#rows[slot] = rows;
    return seq;
  }

  /** True while `seq` is queued and not removed. */
  isLive(seq: number): boolean {
    return seq >= this.#head && seq < this.#tail && this.#resolvers[seq & this.#mask] !== undefined;
  }

  /** Drops tombstones at the head; returns false when nothing live remains. */
  skipRemoved(): boolean {
    while (this.#head < this.#tail) {
      const slot = this.#head & this.#mask;
      if (this.#resolvers[slot] !== undefined) return true;
      this.#clear(slot);
      this.#head++;
    }
    this.#shrinkIfEmpty();
    return false;
  }

  /** Arrival of the head call; call `skipRemoved()` first. */
  headArrival(): number {
    return this.#arrivals[this.#head & this.#mask] as number;
  }

  headRows(): number {
    return this.#rows[this.#head & this.#mask] as number;
  }

  headInput(): I {
    return this.#inputs[this.#head & this.#mask] as I;
  }

  headResolver(): Resolve<O> {
    return this.#resolvers[this.#head & this.#mask] as Resolve<O>;
  }

  headHandle(): H | undefined {
    return this.#handles[this.#head & this.#mask];
  }

  /**
   * Moves live calls from the head into a batch, FIFO, while their rows fit
   * in `maxRows` (counting the rows the batch already holds). Records each
   * call's queue wait. One tight loop here instead of a call per accessor
   * keeps dispatch cheap for large batches. Returns true when it stopped at a
   * call that does not fit, false when this queue ran out.
   */
  takeBatch(maxRows: number, started: number, batch: BatchBuilder<I, O, H>, waits: WaitSink): boolean {
    // Fields are read once into locals: this loop runs once per call, and private-field
    // access pays a brand check each time.
    const resolvers = this.#resolvers;
    const inputs = this.#inputs;
    const handles = this.#handles;
    const arrivals = this.#arrivals;
    const rowCounts = this.#rows;
    const mask = this.#mask;
    const tail = this.#tail;
    const outInputs = batch.inputs;
    const outResolvers = batch.resolvers;
    let head = this.#head;
    let rows = batch.rows;
    let maxWait = 0;
    let totalWait = 0;
    let blocked = false;
    // Calls that arrived in one tick share a clock reading, so a batch's waits come in runs.
    let runWait = -1;
    let runCount = 0;
    while (head < tail) {
      const slot = head & mask;
      const resolve = resolvers[slot];
      if (resolve === undefined) {
        inputs[slot] = undefined;
        handles[slot] = undefined;
        head++;
        continue;
      }
      const itemRows = rowCounts[slot] as number;
      if (rows + itemRows > maxRows) {
        blocked = true;
        break;
      }
      const handle = handles[slot];
      if (handle !== undefined) {
        batch.addHandle(handle, outInputs.length);
        handles[slot] = undefined;
      }
      outInputs.push(inputs[slot] as I);
      outResolvers.push(resolve);
      inputs[slot] = undefined;
      resolvers[slot] = undefined;
      const wait = started - (arrivals[slot] as number);
      if (wait === runWait) runCount++;
      else {
        if (runCount > 0) waits.recordMany(runWait, runCount);
        runWait = wait;
        runCount = 1;
      }
      if (wait > maxWait) maxWait = wait;
      totalWait += wait;
      rows += itemRows;
      head++;
      if (rows === maxRows) {
        blocked = head < tail;
        break;
      }
    }
    if (runCount > 0) waits.recordMany(runWait, runCount);
    this.#head = head;
    batch.took(rows, maxWait, totalWait);
    if (head === tail) this.#shrinkIfEmpty();
    return blocked;
  }

  /** Removes the head call (live or not). */
  shift(): void {
    this.#clear(this.#head & this.#mask);
    this.#head++;
    if (this.#head === this.#tail) this.#shrinkIfEmpty();
  }

  /** Leaves a tombstone; returns the removed call's resolver and rows. */
  remove(seq: number): Resolve<O> | undefined {
    if (!this.isLive(seq)) return undefined;
    const slot = seq & this.#mask;
    const resolve = this.#resolvers[slot];
    this.#resolvers[slot] = undefined;
    this.#inputs[slot] = undefined;
    this.#handles[slot] = undefined;
    return resolve;
  }

  rowsAt(seq: number): number {
    return this.#rows[seq & this.#mask] as number;
  }

  #clear(slot: number): void {
    this.#inputs[slot] = undefined;
    this.#resolvers[slot] = undefined;
    this.#handles[slot] = undefined;
  }

  /** After a burst, give the large backing arrays back instead of keeping them forever. */
  #shrinkIfEmpty(): void {
    if (this.#head !== this.#tail || this.#resolvers.length <= this.#initialCapacity * 64) return;
    this.#allocate(this.#initialCapacity);
  }

  #grow(): void {
    const oldMask = this.#mask;
    const capacity = this.#resolvers.length * 2;
    const inputs = new Array<I | undefined>(capacity);
    const resolvers = new Array<Resolve<O> | undefined>(capacity);
    const handles = new Array<H | undefined>(capacity);
    const arrivals = new Float64Array(capacity);
    const rows = new Float64Array(capacity);
    const mask = capacity - 1;
    for (let seq = this.#head; seq < this.#tail; seq++) {
      const from = seq & oldMask;
      const to = seq & mask;
      inputs[to] = this.#inputs[from];
      resolvers[to] = this.#resolvers[from];
      handles[to] = this.#handles[from];
      arrivals[to] = this.#arrivals[from] as number;
      rows[to] = this.#rows[from] as number;
    }
    this.#inputs = inputs;
    this.#resolvers = resolvers;
    this.#handles = handles;
    this.#arrivals = arrivals;
    this.#rows = rows;
    this.#mask = mask;
  }
}
