import { CostModel } from './cost-model.js';

/**
 * Whether batches that run at once share one device or each have their own: what a second batch
 * slot (`concurrency` > 1) is worth, learned from the batches themselves.
 *
 * Two ONNX sessions on two cores each take a core; two on one GPU, or two CPU sessions whose
 * threads already fill the cores, take turns on one device. Only the second kind gains from
 * merging what would otherwise run at once (`'auto'` pays one fixed cost where two batches paid
 * one each); the first gains from running both. The batches' durations tell them apart without
 * knowing how the device shares. Each batch that ran beside another for t ms took d ms where it
 * would have taken c alone (from a cost curve learned only from batches that ran alone):
 *
 * - on independent slots, d − c is 0;
 * - on one device, two batches beside each other for t ms do t ms of work between them, so
 *   their d − c add up to t, whether the device runs them in turns (the one that waits is late
 *   by t, the other not at all) or in slices (each is late by t/2). Each of them counts t, so the
 *   lateness is half the time counted beside.
 *
 * Over recent batches, `efficiency` = 1 − 2 · Σ(d − c) / Σ t, clamped to [0, 1], is 1 on
 * independent slots and 0 on one shared device, and k slots do 1 + (k − 1)·efficiency batches'
 * worth of work at once.
 *
 * Until batches of sizes that also ran alone have run beside others for a fifth of their time, the
 * efficiency is 0: what `'auto'` assumed before it learned this (a second slot gains nothing), so
 * shared devices keep the policy they had. It falls back to 0 when the curve of batches alone is
 * stale, and when a batch fails beside others. The evidence comes from the batches that run beside each
 * other anyway, whenever a slot frees while another runs. (Starting at 1 instead, as `maxDelay` 0
 * treats slots, split the server's batches across two ONNX sessions sharing 2 cores before any
 * batch of those sizes had run alone to compare with: 0.57x → 0.38x of the model alone.)
 */
export class Overlap {
  /** Weight the sums keep per settled batch: a memory of about 1 / (1 − MEMORY) = 50 batches. */
  static readonly MEMORY = 0.98;
  /**
   * Batches must have run beside others for at least this share of their time before the
   * efficiency is read: below it, the lateness summed is the cost curve's error more than overlap.
   */
  static readonly MIN_BESIDE_SHARE = 0.2;
  /**
   * Settled batches since the last that ran alone, past which the curve of batches alone is stale
   * (a memory of batches): the efficiency falls back to 0 until one runs alone again. Batches that
   * run side by side on independent slots rarely run alone; a curve learned during a warm-up and
   * never refreshed would make a shared device's batches look on time, and keep it planned as independent.
   */
  static readonly STALE_AFTER = 50;

  /** The cost of a batch that ran with no other batch running at any point of it. */
  readonly #alone = new CostModel();
  /** Each running batch's reading of #besideClock when it began; its size is how many run. */
  readonly #marks = new Map<object, number>();
  /** When #besideClock last advanced. */
  #since = 0;
  /** ms during which two or more batches ran: a batch ran alone if it did not move while it ran. */
  #besideClock = 0;
  /** Decayed sums over settled batches of sizes compared: their ms, their ms beside others, and lateness d − c. */
  #ms = 0;
  #beside = 0;
  #late = 0;
  #efficiency = 0;
  #sinceAlone = 0;

  /** How much of a second batch's work runs beside the first, in [0, 1]. */
  get efficiency(): number {
    return this.#efficiency;
  }

  /** Whether a batch it was told of is still running. */
  get watching(): boolean {
    return this.#marks.size > 0;
  }

  /** `batch` started running at `at`. */
  began(batch: object, at: number): void {
    this.#advance(at);
    this.#marks.set(batch, this.#besideClock);
  }

  /**
   * `batch` stopped running at `at`, after `ms` ms; `rows` is what it was charged for, and `ok`
   * whether its duration is the handler's (a failed or timed-out batch's is not). A batch it was not
   * told of (run with one slot) is ignored.
   */
  ended(batch: object, at: number, rows: number, ms: number, ok: boolean): void {
    const mark = this.#marks.get(batch);
    if (mark === undefined) return;
    this.#advance(at);
    this.#marks.delete(batch);
    const beside = this.#besideClock - mark;
    if (!ok) {
      // Its own lateness is unknown, and the batches beside it would count their time beside it as
      // on time: a shared device where one of two batches fails fast reads as independent.
      if (beside > 0 || this.#marks.size > 0) this.#forgetEvidence();
      return;
    }
    const alone = this.#alone;
    if (beside === 0) {
      alone.observe(rows, ms);
      this.#sinceAlone = 0;
    } else if (++this.#sinceAlone > Overlap.STALE_AFTER) {
      this.#forgetEvidence();
      return;
    }
    if (!alone.confident) return;
    const m = Overlap.MEMORY;
    // Only a size the batches alone have reached is compared: beyond it the curve extrapolates, and a
    // cost that grows less than linearly (a model's per-row cost falls with the batch) would read as
    // batches finishing early.
    const compared = rows <= alone.largest;
    this.#ms = this.#ms * m + (compared ? ms : 0);
    this.#beside = this.#beside * m + (compared ? beside : 0);
    this.#late = this.#late * m + (compared && beside > 0 ? ms - alone.predict(rows) : 0);
    if (this.#beside > 0 && this.#beside >= Overlap.MIN_BESIDE_SHARE * this.#ms) {
      this.#efficiency = Math.min(1, Math.max(0, 1 - (2 * this.#late) / this.#beside));
    }
  }

  /** destroy(): the running batches are let go without ending. */
  clear(): void {
    this.#marks.clear();
  }

  /** Back to planning as if a second slot gained nothing, until new evidence is read. */
  #forgetEvidence(): void {
    this.#ms = this.#beside = this.#late = 0;
    this.#efficiency = 0;
  }

  #advance(at: number): void {
    const dt = at - this.#since;
    this.#since = at;
    if (dt > 0 && this.#marks.size > 1) this.#besideClock += dt;
  }
}
