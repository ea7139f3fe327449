import { type RuntimeOptions, validateRuntimeOptions } from '../options.js';
import { AdaptivePolicy } from '../policy/adaptive.js';
import type { CostModel } from '../policy/cost-model.js';
import type { Overlap } from '../policy/overlap.js';
import type { Traffic } from '../policy/traffic.js';
import { FixedDelayPolicy } from '../policy/fixed-delay.js';
import type { BatchSlots, SchedulingPolicy } from '../policy/types.js';
import type { BatchedFnSettings } from '../stats.js';
import type { Rules } from './choice.js';

export interface SettingsInit {
  maxBatchSize: number;
  maxDelay: number | 'auto';
  channelCap: number;
  concurrency: number;
  /** Sorted ascending, without duplicates. */
  preferredBatchSizes?: readonly number[] | undefined;
  latencyTarget?: number | undefined;
}

/**
 * The tunables in force, held once. `configure()` changes them here, and
 * every reader reads them here as they are now: the intake (the size and cap
 * checks), the pump's rules, the policies (through each lane's `maxRows`),
 * shedding's prediction and pad's target. Nothing keeps a copy that could go
 * stale.
 */
export class LiveSettings implements Rules {
  #maxBatchSize: number;
  #maxDelay: number | 'auto';
  #channelCap: number;
  #concurrency: number;
  #policy: SchedulingPolicy;
  readonly #preferred: readonly number[] | undefined;
  readonly #cost: CostModel;
  readonly #traffic: Traffic;
  /** What `'auto'` plans for: the live concurrency, and what a second slot is worth (Overlap). */
  readonly #slots: BatchSlots;
  readonly #latencyTarget: number | undefined;

  /** `cost`, `traffic` and `overlap` are what `maxDelay: 'auto'` learns from. */
  constructor(init: SettingsInit, cost: CostModel, traffic: Traffic, overlap: Overlap) {
    this.#cost = cost;
    this.#traffic = traffic;
    const settings = this;
    this.#slots = {
      get concurrency() {
        return settings.#concurrency;
      },
      get efficiency() {
        return overlap.efficiency;
      },
    };
    this.#latencyTarget = init.latencyTarget;
    this.#maxBatchSize = init.maxBatchSize;
    this.#maxDelay = init.maxDelay;
    this.#channelCap = init.channelCap;
    this.#concurrency = init.concurrency;
    this.#preferred = init.preferredBatchSizes;
    this.#policy = this.#policyFor(init.maxDelay);
  }

  get maxBatchSize(): number {
    return this.#maxBatchSize;
  }

  get maxDelay(): number | 'auto' {
    return this.#maxDelay;
  }

  get channelCap(): number {
    return this.#channelCap;
  }

  get concurrency(): number {
    return this.#concurrency;
  }

  /** WHEN a batch that is not full goes: the fixed window, or the adaptive rule. */
  get policy(): SchedulingPolicy {
    return this.#policy;
  }

  get preferred(): readonly number[] | undefined {
    return this.#preferred;
  }

  /** Validates like the constructor's options (same schema rows, same messages), then changes what is given. */
  configure(options: RuntimeOptions): void {
    const valid = validateRuntimeOptions(options);
    const largestPreferred = this.#preferred?.at(-1);
    if (valid.maxBatchSize !== undefined && largestPreferred !== undefined && largestPreferred > valid.maxBatchSize) {
      throw new RangeError(
        `Expected \`maxBatchSize\` to be at least the largest preferredBatchSizes entry (${largestPreferred}), got ${valid.maxBatchSize}`,
      );
    }
    if (valid.maxBatchSize !== undefined) this.#maxBatchSize = valid.maxBatchSize;
    if (valid.maxDelay !== undefined) {
      this.#maxDelay = valid.maxDelay;
      this.#policy = this.#policyFor(valid.maxDelay);
    }
    if (valid.channelCap !== undefined) this.#channelCap = valid.channelCap;
    if (valid.concurrency !== undefined) this.#concurrency = valid.concurrency;
  }

  snapshot(): BatchedFnSettings {
    return {
      maxBatchSize: this.#maxBatchSize,
      maxDelay: this.#maxDelay,
      channelCap: this.#channelCap,
      concurrency: this.#concurrency,
    };
  }

  #policyFor(maxDelay: number | 'auto'): SchedulingPolicy {
    return maxDelay === 'auto'
      ? new AdaptivePolicy(this.#cost, this.#traffic, this.#latencyTarget, this.#slots)
      : new FixedDelayPolicy(maxDelay);
  }
}
