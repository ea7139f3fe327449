import type { ArrivalRate, CostModel } from './cost-model.js';

/**
 * Callers that come back: a closed loop, as the queue sees it.
 *
 * A client that sends its next call when its last one is answered (a load generator, a pipeline
 * stage, a fixed pool of workers) makes arrivals follow completions: a batch of n rows settles, and
 * about n calls arrive one round trip r later. Under such a loop the arrival rate that `'auto'`
 * measures is the rate its own batches allow, so the smallest batch that keeps up confirms itself,
 * and the clients split into cohorts that take turns, each paying the handler's fixed cost a. Two
 * cohorts taking turns cost 2a + b·n per n rows, one cohort a + b·n + r: waiting for the cohort on
 * its way back pays while r < a.
 *
 * Each settled batch opens a cohort of its rows; arrivals pay back the oldest open cohort first. A
 * cohort is measured when it is back (paid, but for the rows cohorts usually never return), or when
 * a has passed since it settled (later callers are not worth a wait). What it was paid beyond
 * chance (the rows that came back, less the λ·t that arrivals at the rate measured when it settled
 * bring in the time t it was open) feeds a moving share of the rows settled. Independent (Poisson)
 * arrivals bring λ·t on average, the time to gather n of them averaging n/λ: their share stays near
 * 0. A loop's cohort comes back within r: while cohorts take turns on a handler that is never idle,
 * λ = n / c(n) and the share is 1 − r / c(n); once merged, the handler idles for r and the share is
 * 1 − r / (c(n) + r). So a loop is seen while its round trip is under a and under about 0.6 c(n)
 * (turns) or 1.5 c(n) (merged): for the models this is for, whose fixed cost is most of c(n), most
 * loops where waiting pays.
 *
 * A measured cohort stays open for its last rows until it is paid in full, the next batch settles,
 * or a has passed (at once, when a later batch has settled already: the later callers would pay its
 * rows). Only then is it closed, and what it still owes counts as rows that never return. Counted
 * when it was back, they confirmed themselves: the next cohorts counted as back as many rows short,
 * and the loop's last callers were left for the next batch for good.
 *
 * With batch keys or affinity the engine has a lane per key, each with its own callers, and these
 * counts (one per engine) would make one lane wait for another's: the engine then does not ask.
 */
export class Cohorts {
  /**
   * The share above which the callers form a closed loop. Poisson arrivals' share is 0 on average
   * and stayed at 0.25 or less in simulation at every load and cost shape tried (test/cohorts.test.ts);
   * a loop whose round trip is 0.6 c(n) has 0.4.
   */
  static readonly CLOSED_LOOP_SHARE = 0.4;
  /** Weight the moving sums keep per closed cohort: a memory of about 1 / (1 - MEMORY) = 10 batches. */
  static readonly MEMORY = 0.9;
  /**
   * The share starts as if this many rows had settled and not come back: a cohort or two of a few
   * rows cannot claim a loop by chance (one 1-row cohort paid at once would otherwise read 1.0).
   */
  static readonly PRIOR_ROWS = 16;
  /**
   * A cohort counts as back with at most this share of its rows owed for good: enough for a client
   * or two gone from a loop, while a cohort that lacks more than that is measured as it is. The
   * count is fixed when the cohort settles, so under Poisson arrivals the time to reach it keeps
   * its average at n/λ and the share unbiased.
   */
  static readonly MAX_GONE_SHARE = 0.1;
  /**
   * Most cohorts kept open. Only batches settling faster than a apart keep several open (a busy
   * engine with concurrency > 1, or tiny batches); past this the oldest is closed early, so memory
   * stays bounded whatever the traffic.
   */
  static readonly MAX_OPEN = 64;
  /**
   * A wait for a cohort lasts up to this many times the time its last row usually takes to come
   * back: room for the spread of one round trip to the next, never past a.
   */
  static readonly RETURN_SLACK = 1.5;

  readonly #cost: CostModel;
  readonly #rate: ArrivalRate;
  /**
   * Open cohorts, oldest first from #head: when each settled, the arrival rate then, its rows, the
   * rows still owed, and the rows it may still owe and count as back (those usually never paid).
   */
  readonly #settledAt: number[] = [];
  readonly #rateAtSettle: number[] = [];
  readonly #rows: number[] = [];
  readonly #owed: number[] = [];
  readonly #backAt: number[] = [];
  /** Whether the cohort has been measured (it was back, or a passed): it only takes its last rows now. */
  readonly #measured: boolean[] = [];
  #head = 0;
  /**
   * Rows that came back beyond chance, and rows settled, over recent closed cohorts (moving sums):
   * their ratio is the share. Weighed by rows, so that a cohort of one row, which a busy loop's λ·t
   * outweighs, counts as one row beside a cohort of 63.
   */
  #beyondChance = 0;
  #closedRows = 0;
  /**
   * How long after settling a fully paid cohort's last row arrived (ms): a moving sum and its weight,
   * whose ratio is the average without the bias of a zero start.
   */
  #returnSum = 0;
  #returnWeight = 0;
  /**
   * Rows a cohort usually still owed when it closed (a moving average; 0 while every cohort comes
   * back whole). A client that left the loop never pays its row: a cohort that owes no more than
   * that counts as back, so it is measured by its round trip, not by the whole window, and no batch
   * waits for the row.
   */
  #usualShortfall = 0;

  constructor(cost: CostModel, rate: ArrivalRate) {
    this.#cost = cost;
    this.#rate = rate;
  }

  /** Whether recent cohorts came back, beyond chance, within the fixed cost a. */
  get closedLoop(): boolean {
    return this.share >= Cohorts.CLOSED_LOOP_SHARE;
  }

  /** The moving share of settled rows that came back within the fixed cost a beyond chance, in [-1, 1). */
  get share(): number {
    return this.#beyondChance / (this.#closedRows + Cohorts.PRIOR_ROWS);
  }

  /** A batch of `rows` rows settled at `at`: its callers may come back. */
  settled(rows: number, at: number): void {
    if (!(rows > 0)) return;
    this.#expire(at);
    // The cohorts that are back had their last rows' time while this batch ran: what they owe is not coming.
    while (this.#head < this.#owed.length && this.#measured[this.#head] === true) this.#closeOldest(at);
    if (this.#settledAt.length - this.#head >= Cohorts.MAX_OPEN) this.#closeOldest(at);
    this.#settledAt.push(at);
    // The rate before this cohort's own callers come back: what independent arrivals would bring.
    this.#rateAtSettle.push(this.#rate.at(at));
    this.#rows.push(rows);
    this.#owed.push(rows);
    this.#backAt.push(Math.min(this.#usualShortfall + 0.5, Cohorts.MAX_GONE_SHARE * rows));
    this.#measured.push(false);
  }

  /** `rows` rows arrived at `at`: they pay back the oldest open cohorts. */
  arrived(rows: number, at: number): void {
    this.#expire(at);
    let left = rows;
    while (left > 0 && this.#head < this.#owed.length) {
      const i = this.#head;
      const paid = Math.min(left, this.#owed[i] as number);
      this.#owed[i] = (this.#owed[i] as number) - paid;
      left -= paid;
      if (this.#owed[i] === 0) this.#closeOldest(at);
      else if (!this.#measured[i] && (this.#owed[i] as number) <= (this.#backAt[i] as number)) {
        this.#measure(i, at);
        // A later batch has settled already (several run at once): its callers, coming now, would pay
        // this cohort's missing rows and leave the later cohort short. It takes no more rows.
        if (i < this.#owed.length - 1) this.#closeOldest(at);
      }
    }
  }

  /**
   * Under a closed loop, while the newest cohort is not back: the clock time by which it should be,
   * when a batch waiting for it stops waiting. Otherwise undefined. Reads only: arrivals pay the
   * oldest cohort first, so the newest one is open whenever any is.
   */
  dueBy(now: number): number | undefined {
    const newest = this.#owed.length - 1;
    if (newest < this.#head || this.#measured[newest] || !this.closedLoop || this.#returnWeight === 0) return undefined;
    const settledAt = this.#settledAt[newest] as number;
    const window = this.#cost.a;
    if (now - settledAt > window) return undefined;
    const usualReturn = this.#returnSum / this.#returnWeight;
    return settledAt + Math.min(window, Cohorts.RETURN_SLACK * usualReturn);
  }

  /**
   * Rows still awaited: what the cohorts settled within the last a owe, but for those already back
   * (whose last rows may still come, but hold no batch). Reads only.
   */
  owed(now: number): number {
    const window = this.#cost.a;
    let owed = 0;
    for (let i = this.#head; i < this.#owed.length; i++) {
      if (!this.#measured[i] && now - (this.#settledAt[i] as number) <= window) owed += this.#owed[i] as number;
    }
    return owed;
  }

  /** Closes the cohorts open for longer than the fixed cost a: callers later than that are not waited for. */
  #expire(now: number): void {
    const window = this.#cost.a;
    while (this.#head < this.#settledAt.length && now - (this.#settledAt[this.#head] as number) > window) {
      this.#closeOldest(now);
    }
  }

  /**
   * The cohort at `i` is back, or a has passed since it settled: what it says of the loop (the share,
   * its round trip) is taken now, when the wait for it ends.
   */
  #measure(i: number, now: number): void {
    const rows = this.#rows[i] as number;
    const owed = this.#owed[i] as number;
    const settledAt = this.#settledAt[i] as number;
    const open = Math.min(now - settledAt, this.#cost.a);
    const byChance = (this.#rateAtSettle[i] as number) * open;
    const beyondChance = Math.max(-rows, rows - owed - byChance);
    const m = Cohorts.MEMORY;
    this.#beyondChance = this.#beyondChance * m + beyondChance;
    this.#closedRows = this.#closedRows * m + rows;
    if (owed <= (this.#backAt[i] as number)) {
      this.#returnSum = this.#returnSum * m + (1 - m) * (now - settledAt);
      this.#returnWeight = this.#returnWeight * m + (1 - m);
    }
    this.#measured[i] = true;
  }

  /**
   * Closes the oldest open cohort at `now` (measured first, if it was not yet): paid in full, expired,
   * or back when the next batch settled. What it still owes counts as rows that never return.
   */
  #closeOldest(now: number): void {
    const i = this.#head;
    if (!this.#measured[i]) this.#measure(i, now);
    const m = Cohorts.MEMORY;
    this.#usualShortfall = this.#usualShortfall * m + (1 - m) * (this.#owed[i] as number);
    this.#head++;
    // Drop closed cohorts now and then, so the arrays stay about MAX_OPEN long.
    if (this.#head >= Cohorts.MAX_OPEN) {
      this.#settledAt.splice(0, this.#head);
      this.#rateAtSettle.splice(0, this.#head);
      this.#rows.splice(0, this.#head);
      this.#owed.splice(0, this.#head);
      this.#backAt.splice(0, this.#head);
      this.#measured.splice(0, this.#head);
      this.#head = 0;
    }
  }
}
