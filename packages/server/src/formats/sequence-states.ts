import type { SequenceMark } from '../model/tensor.js';
import { SequenceError } from './sequence-errors.js';

/** What a stateful model's handler gets per request: its sequence, with the state it keeps. */
export interface SequenceView {
  id: string;
  start: boolean;
  end: boolean;
  state: Record<string, unknown>;
}

/**
 * The states of the sequences one worker thread holds (a JS model with `sequence_batching`), by
 * id, each with the incarnation that made it. They never leave this thread: the main thread's
 * table (sequence-table.ts) sends every request of a sequence here (the batcher's `affinity`),
 * one at a time (its `sequenceKey`). A thread that restarted after a crash holds none: a request
 * that is not a start then fails alone, with ERR_SEQUENCE_LOST.
 */
export class SequenceStates {
  readonly #states = new Map<string, { incarnation: number; state: Record<string, unknown> }>();

  get size(): number {
    return this.#states.size;
  }

  /**
   * Before a batch runs: frees the states its requests say to drop, makes a fresh `{}` for each
   * start (a second start replaces the state), and finds the others' states. Per request, its view
   * (undefined without a sequence) or the Error it fails with.
   */
  open(marks: readonly (SequenceMark | undefined)[]): (SequenceView | Error | undefined)[] {
    for (const mark of marks)
      for (const [id, incarnation] of mark?.drop ?? [])
        if (this.#states.get(id)?.incarnation === incarnation) this.#states.delete(id);
    return marks.map((mark) => {
      if (mark === undefined) return undefined;
      if (mark.start) this.#states.set(mark.id, { incarnation: mark.incarnation, state: {} });
      const held = this.#states.get(mark.id);
      if (held === undefined || held.incarnation !== mark.incarnation)
        return new SequenceError(
          'ERR_SEQUENCE_LOST',
          `Sequence ${mark.id} lost its state: the worker thread holding it exited; start it again with \`sequence_start\``,
        );
      return { id: mark.id, start: mark.start, end: mark.end, state: held.state };
    });
  }

  /**
   * After the batch (answered or failed): a state the model replaced (`sequence.state = {...}`) is
   * kept as it left it, and ended sequences are freed.
   */
  close(marks: readonly (SequenceMark | undefined)[], views: readonly (SequenceView | Error | undefined)[]): void {
    marks.forEach((mark, i) => {
      const view = views[i];
      if (mark === undefined || view === undefined || view instanceof Error) return;
      const held = this.#states.get(mark.id);
      if (held === undefined || held.incarnation !== mark.incarnation) return;
      if (mark.end) this.#states.delete(mark.id);
      else if (typeof view.state === 'object' && view.state !== null) held.state = view.state;
    });
  }
}
