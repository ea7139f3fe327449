import type { Handler } from '../options.js';
import type { Executor, Outputs } from './types.js';

/**
 * Runs the handler on the calling thread. Right for async handlers and remote
 * backends; wrong for blocking compute such as ONNX Runtime's `session.run`,
 * which freezes the event loop for the whole run (use worker mode for that).
 */
export class InlineExecutor<I, O, C> implements Executor<I, O> {
  readonly #handler: Handler<I, O, C>;
  readonly #factory: (() => C | Promise<C>) | undefined;
  #context: C | undefined;
  #built: boolean;
  #building: Promise<C> | undefined;

  constructor(handler: Handler<I, O, C>, factory: (() => C | Promise<C>) | undefined) {
    this.#handler = handler;
    this.#factory = factory;
    this.#built = factory === undefined;
  }

  run(inputs: I[]): Outputs<O> | Promise<Outputs<O>> {
    if (this.#built) return this.#handler(inputs, this.#context as C);
    return this.#build().then((context) => this.#handler(inputs, context));
  }

  hasCapacity(): boolean {
    return true;
  }

  onCapacity(): void {}

  async ready(): Promise<void> {
    if (!this.#built) await this.#build();
  }

  async close(): Promise<void> {}

  /** An inline handler cannot be stopped: the batcher frees its slot and drops the late result. */
  abandon(): void {}

  destroy(): void {}

  workerStats(): [] {
    return [];
  }

  /**
   * Concurrent batches share one build. A failed build is forgotten, so the
   * next batch (or `ready()`) tries again instead of failing forever.
   */
  #build(): Promise<C> {
    if (this.#building !== undefined) return this.#building;
    const building = (async () => {
      const context = await (this.#factory as () => C | Promise<C>)();
      this.#context = context;
      this.#built = true;
      return context;
    })();
    // Assigned before it can settle, so a factory that throws synchronously cannot leave a stale failure behind.
    this.#building = building;
    const forget = (): void => {
      this.#building = undefined;
    };
    building.then(forget, forget);
    return building;
  }
}
