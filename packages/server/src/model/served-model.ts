import type { BatchedFn } from 'batched-fn';
import type { EnsembleScheduling } from './ensemble-step.js';
import type { ServedGenerator } from './generator.js';
import type { ModelSignature } from './signature.js';
import type { InferItem, InferResult } from './tensor.js';

/**
 * The served-model contract: what every format (formats/) builds and every protocol (protocol/)
 * serves. A format returns a ServedModel; the repository keeps them by name; the protocols read
 * nothing else of a model.
 */

/**
 * What the protocol reads per model, from its config.json: Triton's priority levels (the
 * schedule-policy extension, protocol/schedule-policy.ts) and class labels (the classification
 * extension).
 */
export interface ModelProtocolOptions {
  /** Priority levels 1 (highest) to N; without it, levels are unbounded and requests without a priority run last. */
  priorityLevels?: number;
  /** The level of requests without a priority (1 to `priorityLevels`). @default priorityLevels (the lowest) */
  defaultPriorityLevel?: number;
  /** Class labels per output name, index by index (`"value:index:label"` in classification answers). */
  labels?: Record<string, string[]>;
  /** The file in the model's folder each output's labels came from (Triton's `label_filename`). */
  labelFiles?: Record<string, string>;
  /** config.json's `parameters`, for the model itself (shown by the model configuration extension). */
  parameters?: Record<string, unknown>;
  /** Triton's `version_policy` of a Triton-layout model (repository/triton-repository.ts); absent: `latest 1`. */
  versionPolicy?: object;
  /**
   * False when a request's own `timeout` is ignored (Triton's `allow_timeout_override`, read from a
   * config.pbtxt); absent: a request's timeout may shorten the model's.
   */
  allowTimeoutOverride?: boolean;
  /** False for a config.pbtxt without `dynamic_batching` (requests are not held to form batches). */
  dynamicBatching?: boolean;
}

/**
 * How a model is served, as its options (config.json over the server's flags) said: read by the
 * model configuration extension and the protocol's per-model rules. Live batcher settings
 * (maxBatchSize, maxDelay, channelCap, workers) are the batcher's own `settings`.
 */
export interface ServedModelConfig extends ModelProtocolOptions {
  preferredBatchSizes?: number[];
  latencyTarget?: number;
  pad?: boolean;
  batchTimeout?: number;
  /** ONNX Runtime intra-op threads per worker. */
  threads?: number;
  /** An ensemble's steps (formats/ensemble.ts) as its config wrote them, for the model configuration extension. */
  ensembleScheduling?: EnsembleScheduling;
}

/** A model the HTTP layer can serve: its signature, and a batched way to run it. */
export interface ServedModel {
  readonly name: string;
  readonly version: string;
  readonly platform: string;
  readonly signature: ModelSignature;
  /**
   * Most rows one batch (and so one request) may hold; checked before a request's tensors are
   * allocated. 0: the model has no batch dimension (Triton's `max_batch_size: 0`): a request's shapes
   * are the model's own, it runs alone, and it counts as one row. For the models this server builds
   * it is the batcher's live setting (a getter), so `batcher.configure({ maxBatchSize })` changes
   * what every reader sees: derive a model with `servedWith`, never by spreading it.
   */
  readonly maxBatchSize?: number;
  /** This model's default per-request deadline in ms (a request's own may only shorten it). */
  readonly timeout?: number;
  /** How it is served (absent for models built elsewhere, such as remote ones: the protocol's defaults apply). */
  readonly config?: ServedModelConfig;
  /**
   * Every version served under this name, ascending, this one (the highest, which answers requests
   * that name no version) included; absent for a model of one version (repository/triton-repository.ts).
   */
  readonly versions?: readonly ServedModel[];
  readonly batcher: BatchedFn<InferItem, InferResult>;
  /**
   * The models it calls (an ensemble's steps, the names a JS model declares in its `calls` export).
   * It is READY only while they are (repository/registry.ts), and a cycle among them is refused at load.
   */
  readonly dependencies?: readonly string[];
  /**
   * A generator (model/generator.ts): it answers a prompt with a stream of values, through the
   * generation front (protocol/generation.ts); its `batcher` then only carries the stream's
   * lifecycle and stats, and `infer` refuses (a decoupled model, in Triton's terms).
   */
  readonly generator?: ServedGenerator;
  /**
   * A stateful model's sequences (formats/sequence-table.ts): how many it holds state for now, an
   * expired one until a request or a sweep frees it (its state is still held in its worker).
   */
  readonly sequences?: { readonly size: number };
  /**
   * True when `infer` may be given input tensors that are views into a buffer shared with other
   * requests (a small request's, in Node's Buffer pool: protocol/tensor-data.ts), because it copies
   * them before they leave the main thread, never writes through them and never hands their `.buffer`
   * on. The models built on `servedBatcher` say so; any other model gets inputs in buffers of their own.
   */
  readonly takesSharedViews?: boolean;
  /** Runs one request; its rows count against the batch limit. */
  infer(
    item: InferItem,
    options: {
      signal?: AbortSignal;
      timeout?: number;
      /** The batcher's priority (higher first), as schedule-policy.ts maps the request's level. */
      priority?: number;
      /** The priority level the request asked for (1 highest), for a model that passes it on (an ensemble's steps). */
      level?: number;
      trace?: unknown;
    },
  ): Promise<InferResult>;
}

/** A model's priority levels, from its config (`priorityLevels`, `defaultPriorityLevel`). */
export interface PriorityLevels {
  readonly priorityLevels?: number | undefined;
  readonly defaultPriorityLevel?: number | undefined;
}

/** Checks a model's levels at load: the rules and messages of config.json keys. */
export function checkPriorityLevels(levels: PriorityLevels): void {
  const { priorityLevels, defaultPriorityLevel } = levels;
  if (priorityLevels !== undefined && (!Number.isSafeInteger(priorityLevels) || priorityLevels < 1)) {
    throw new RangeError(`Expected \`priorityLevels\` to be an integer from 1 and up, got \`${priorityLevels}\``);
  }
  if (defaultPriorityLevel === undefined) return;
  if (priorityLevels === undefined)
    throw new RangeError(
      '`defaultPriorityLevel` needs `priorityLevels`: without levels, requests that set no priority run at the lowest level',
    );
  if (
    !Number.isSafeInteger(defaultPriorityLevel) ||
    defaultPriorityLevel < 1 ||
    defaultPriorityLevel > priorityLevels
  ) {
    throw new RangeError(
      `Expected \`defaultPriorityLevel\` to be an integer from 1 to \`priorityLevels\` (${priorityLevels}), got \`${defaultPriorityLevel}\``,
    );
  }
}

/**
 * `model` with `changes`, for a repository that adds what it knows (a version, a timeout, a wrapped
 * batcher). Not a spread: a spread copies a getter's value once, and `maxBatchSize` is a getter of
 * the batcher's live setting (formats/served-batcher.ts), which configure() changes.
 */
export function servedWith<T extends ServedModel>(model: T, changes: Partial<ServedModel>): T {
  return Object.defineProperties(
    {},
    { ...Object.getOwnPropertyDescriptors(model), ...Object.getOwnPropertyDescriptors(changes) },
  ) as T;
}
