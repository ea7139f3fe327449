/**
 * FIFO ring buffer. `Array.prototype.shift` is O(n) once V8 gives up on its
 * fast path for large arrays, and a batcher under load holds thousands of
 * items, so we keep our own head and tail indices into a power-of-two array.
 */
export class RingQueue<T> {
  #items: (T | undefined)[];
  #mask: number;
  #head = 0;
  #length = 0;
  readonly #initialCapacity: number;

  constructor(initialCapacity = 64) {
    let capacity = 1;
    while (capacity < initialCapacity) capacity <<= 1;
    this.#initialCapacity = capacity;
    this.#items = new Array<T | undefined>(capacity);
    this.#mask = capacity - 1;
  }

  get length(): number {
    return this.#length;
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) & this.#mask] = item;
    this.#length++;
  }

  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & this.#mask;
    this.#length--;
    // After a burst, give the large backing array back instead of keeping it forever.
    if (this.#length === 0 && this.#items.length > this.#initialCapacity * 64) this.clear();
    return item;
  }

  /** Removes every item, calling `fn` on each in FIFO order. */
  drain(fn: (item: T) => void): void {
    while (this.#length > 0) fn(this.shift() as T);
  }

  clear(): void {
    this.#items = new Array<T | undefined>(this.#initialCapacity);
    this.#mask = this.#initialCapacity - 1;
    this.#head = 0;
    this.#length = 0;
  }

  #grow(): void {
    const old = this.#items;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.#length; i++) next[i] = old[(this.#head + i) & this.#mask];
    this.#items = next;
    this.#mask = next.length - 1;
    this.#head = 0;
  }
}
