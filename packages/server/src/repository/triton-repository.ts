import { type Dirent, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchInfo, BatchTracing } from 'batched-fn';
import { serverLog } from '../log.js';
import { createJsModel } from '../formats/js-model.js';
import { createOnnxModel } from '../formats/onnx-model.js';
import { LoadTimeoutError, ModelLoadError } from '../model/errors.js';
import type { ModelCalls } from '../model/model-calls.js';
import { type ServedModel, servedWith } from '../model/served-model.js';
import { maxOf, SETTING_DEFAULTS } from '../settings/settings.js';
import { untilAborted } from './abort.js';
import { type ModelConfig, readLabels } from './config-file.js';
import { loadEnsemble } from './ensemble-loader.js';
import {
  checkSignature,
  isEnsembleConfig,
  planFromConfig,
  readConfigPbtxt,
  type TritonModelConfig,
  type TritonPlan,
  type VersionPolicy,
} from './triton-config.js';

/**
 * Triton's repository layout, beside ours (repository.ts):
 *
 *     <repo>/<model>/config.pbtxt          optional: without it the config is completed from the file
 *     <repo>/<model>/<version>/model.onnx  or model.js / model.mjs, or `default_model_filename`
 *
 * A folder is Triton's when it has a config.pbtxt, or numeric version folders and no model file
 * of its own at the top (ours: `<model>/model.onnx` + `config.json`, served as version 1).
 *
 * Every version the policy picks is a model of its own (its own batcher and workers), served under
 * `/v2/models/{m}/versions/{v}`; the highest answers requests that name no version. A load builds
 * every version, and, as Triton does (model_lifecycle.cc), fails whole if any version fails: the
 * versions it built are stopped and the reason names the version.
 */

/** A version folder: a positive integer without leading zeros (Triton skips `01`, and anything not a number). */
const VERSION = /^[1-9][0-9]{0,15}$/;

/**
 * Triton's `default-max-batch-size` (its backends' default, 4): the max_batch_size an auto-completed
 * model that can batch is given, unless the server was started with `--max-batch-size`.
 */
export const TRITON_DEFAULT_MAX_BATCH_SIZE = 4;

const MODEL_FILES = ['model.onnx', 'model.js', 'model.mjs'];
const isFile = (path: string): boolean => statSync(path, { throwIfNoEntry: false })?.isFile() === true;

/** The version folders of a model folder, ascending. */
export function versionFolders(folder: string): number[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(folder, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries
    .filter(
      (entry) =>
        VERSION.test(entry.name) &&
        statSync(join(folder, entry.name), { throwIfNoEntry: false })?.isDirectory() === true,
    )
    .map((entry) => Number(entry.name))
    .sort((a, b) => a - b);
}

/** Whether `folder` is laid out as Triton's (see the top of this file). */
export function isTritonLayout(folder: string): boolean {
  if (existsSync(join(folder, 'config.pbtxt'))) return true;
  if (MODEL_FILES.some((file) => existsSync(join(folder, file)))) return false;
  return versionFolders(folder).length > 0;
}

/** The versions `policy` serves out of those present, ascending (Triton's VersionsToLoad). */
export function versionsToServe(present: readonly number[], policy: VersionPolicy): number[] {
  if ('all' in policy) return [...present];
  if ('specific' in policy) return policy.specific.versions.filter((v) => present.includes(v));
  return present.slice(-policy.latest.num_versions);
}

/** The settings a Triton-layout model gets where its config is silent: only the flags the server was given, then Triton's defaults. */
export interface TritonDefaults {
  /** Server flags given explicitly (not their defaults): they stand in for Triton's defaults. */
  given: Partial<ModelConfig>;
}

export interface TritonLoadOptions {
  folder: string;
  name: string;
  /** The server's settings (flags, or their defaults): for what Triton's config has no field for (threads, pad...). */
  defaults: ModelConfig;
  triton: TritonDefaults;
  /** Every batch of every version, with the version (the statistics extension counts per version). */
  onBatch: (info: BatchInfo, version?: string) => void;
  tracing?: BatchTracing | undefined;
  signal?: AbortSignal | undefined;
  /** A config to load with instead of the folder's config.pbtxt (the JSON form, as Triton's load takes it). */
  config?: TritonModelConfig;
  /** How its models call the server's other models (a JS model's `models`, an ensemble's steps). */
  calls?: ModelCalls | undefined;
  /** Loads the models a model calls before its workers start (its context() may call them): the registry's. */
  loadDependencies?: ((names: readonly string[]) => Promise<void>) | undefined;
}

/** Why a Triton folder cannot be read as one, before anything loads. */
function layoutProblem(folder: string): string | undefined {
  const pbtxt = existsSync(join(folder, 'config.pbtxt'));
  if (pbtxt && existsSync(join(folder, 'config.json')))
    return `${folder} has both config.pbtxt and config.json: keep one (config.pbtxt with version folders, or config.json with model.onnx at the top)`;
  if (!pbtxt && existsSync(join(folder, 'config.json')))
    return `${folder} has version folders and config.json: with version folders, write the model's settings in config.pbtxt`;
  const top = MODEL_FILES.find((file) => existsSync(join(folder, file)));
  if (top !== undefined)
    return `${folder} has config.pbtxt and ${top} at its top: with config.pbtxt, the model files go in version folders (${folder}/1/${top})`;
  return undefined;
}

/** The model file of one version, and the runner it needs. */
function versionFile(
  folder: string,
  version: number,
  plan: TritonPlan,
): { path: string; backend: 'onnxruntime' | 'js' } {
  const dir = join(folder, String(version));
  const candidates =
    plan.filename !== undefined
      ? [plan.filename]
      : plan.backend === 'onnxruntime'
        ? ['model.onnx']
        : plan.backend === 'js'
          ? ['model.js', 'model.mjs']
          : MODEL_FILES;
  const file = candidates.find((name) => existsSync(join(dir, name)));
  if (file === undefined) throw new ModelLoadError(`version ${version}: ${dir} holds no ${candidates.join(' or ')}`);
  const path = join(dir, file);
  // A FIFO (or a device) would block the thread that reads it for as long as it likes.
  if (!isFile(path)) throw new ModelLoadError(`version ${version}: ${path} is not a regular file`);
  // As Triton's auto-complete picks the backend from the file found; a named file from its extension.
  const backend = plan.backend ?? (/\.m?js$/.test(file) ? 'js' : 'onnxruntime');
  return { path, backend };
}

/**
 * Loads every served version of a Triton-layout model folder (or with `config`, an override).
 * Settings where the config is silent: the flags given, then Triton's defaults (max_batch_size 4
 * for an auto-completed model that can batch, `dynamic_batching` delay 0, 2 ONNX instances or 1 JS),
 * then the server's (threads, pad, latency target, batch timeout, channelCap). The whole load is
 * bounded by the default `loadTimeout` (settings/settings.ts); `signal` (an unload) cancels it.
 */
export async function loadTritonModel(options: TritonLoadOptions): Promise<ServedModel> {
  const { folder, name, defaults, triton } = options;
  if (options.config === undefined) {
    const problem = layoutProblem(folder);
    if (problem !== undefined) throw new ModelLoadError(problem);
  }
  const pbtxt = join(folder, 'config.pbtxt');
  const hasFile = existsSync(pbtxt);
  const where =
    options.config !== undefined
      ? `the config of \`${name}\``
      : hasFile
        ? pbtxt
        : `${folder} (no config.pbtxt: completed from the model file)`;
  const config = options.config ?? (hasFile ? readConfigPbtxt(pbtxt) : {});
  // An ensemble has no model file: its steps are the repository's other models (ensemble-loader.ts).
  if (isEnsembleConfig(config)) {
    const present = versionFolders(folder);
    const serve = (policy: VersionPolicy): number[] => versionsToServe(present, policy);
    return loadEnsemble({ ...options, where, config, folders: { present, serve } });
  }
  const plan = planFromConfig(config, name, where);

  const present = versionFolders(folder);
  const versions = versionsToServe(present, plan.versionPolicy);
  if ('specific' in plan.versionPolicy) {
    for (const v of plan.versionPolicy.specific.versions)
      if (!present.includes(v))
        serverLog.error(
          'registry',
          `version ${v} is specified for model '${name}', but the version directory is not present`,
        );
  }
  // Triton's words (model_lifecycle.cc), then what the folder has.
  if (versions.length === 0)
    throw new ModelLoadError(
      `at least one version must be available under the version policy of model '${name}' (${folder} has ${present.length === 0 ? 'no version folders' : `version folders ${present.join(', ')}`})`,
    );
  const files = versions.map((version) => ({ version, ...versionFile(folder, version, plan) }));
  const labels = plan.settings.labels === undefined ? {} : readLabels(folder, plan.settings.labels);

  const { settings } = plan;
  // max_batch_size: the config's; auto-completed, the model decides (formats/served-batcher.ts): the default if it can batch, else 0.
  const batch =
    plan.autoComplete && plan.maxBatchSize === 0
      ? { defaultMaxBatchSize: triton.given.maxBatchSize ?? TRITON_DEFAULT_MAX_BATCH_SIZE }
      : { maxBatchSize: plan.maxBatchSize };
  const common = {
    ...batch,
    name,
    // dynamic_batching's delay (default 0); without it, none (Triton batches no requests together),
    // unless the config is completed from the file, where Triton turns batching on and --max-delay may tune it.
    maxDelay: settings.maxDelay ?? (plan.autoComplete ? (triton.given.maxDelay ?? 0) : 0),
    channelCap: settings.channelCap ?? defaults.channelCap,
    threads: intraOpThreads(settings.parameters, where) ?? defaults.threads,
    ...defined('preferredBatchSizes', settings.preferredBatchSizes ?? triton.given.preferredBatchSizes),
    ...defined('latencyTarget', defaults.latencyTarget),
    ...defined('pad', defaults.pad),
    ...defined('batchTimeout', defaults.batchTimeout),
    ...defined('priorityLevels', settings.priorityLevels),
    ...defined('defaultPriorityLevel', settings.defaultPriorityLevel),
    ...defined('parameters', settings.parameters),
    ...defined('tracing', options.tracing),
    ...labels,
  };

  const deadline = new AbortController();
  const loadTimeout = SETTING_DEFAULTS.loadTimeout;
  const timer = setTimeout(
    () =>
      deadline.abort(new LoadTimeoutError(`${name} did not load within ${loadTimeout} ms; its threads were stopped`)),
    loadTimeout,
  );
  // The threads being waited for keep the process alive; the deadline alone must not.
  timer.unref();
  const signal = options.signal;
  const cancel = (): void => deadline.abort(signal?.reason);
  if (signal?.aborted === true) cancel();
  signal?.addEventListener('abort', cancel, { once: true });
  const built: ServedModel[] = [];
  try {
    const settled = await Promise.allSettled(
      files.map(async ({ version, path, backend }) => {
        const v = String(version);
        const own = {
          ...common,
          workers: plan.instances ?? triton.given.workers ?? (backend === 'onnxruntime' ? 2 : 1),
          onBatch: (info: BatchInfo) => options.onBatch(info, v),
        };
        if (backend === 'onnxruntime' && settings.sequence_batching !== undefined)
          throw new ModelLoadError(
            `${where}: \`sequence_batching\` is served for stateful JS models (model.mjs) only, for now`,
          );
        const model =
          backend === 'onnxruntime'
            ? createOnnxModel({ ...own, path })
            : await createJsModel({
                ...own,
                path,
                config: { ...settings },
                signal: deadline.signal,
                ...defined('calls', options.calls),
              });
        built.push(model);
        // Triton's decoupled models answer many responses per request: here, generators. A generator's config
        // may leave it out (configs written for this server before it was read); any other model may not say it.
        if (plan.decoupled && model.generator === undefined)
          throw new ModelLoadError(
            `${where}: \`model_transaction_policy { decoupled: true }\` is for a generator (a model.js exporting \`step\`); ${path} answers one response per request`,
          );
        const signature = checkSignature(model.signature, plan, model.maxBatchSize !== 0, where);
        // The models it calls first: its context() may call them.
        if (model.dependencies !== undefined && options.loadDependencies !== undefined)
          await untilAborted(options.loadDependencies(model.dependencies), deadline.signal);
        await untilAborted(model.batcher.ready(), deadline.signal);
        const config = {
          ...model.config,
          versionPolicy: plan.versionPolicy,
          allowTimeoutOverride: plan.allowTimeoutOverride,
          dynamicBatching: plan.dynamicBatching || (plan.autoComplete && (model.maxBatchSize ?? 0) > 1),
        };
        return servedWith(model, {
          version: v,
          signature,
          config,
          ...(settings.timeout === undefined ? {} : { timeout: settings.timeout }),
        });
      }),
    );
    // A timeout or an unload is the load's, not a version's: said as it is (an unload's is a 409).
    if (deadline.signal.aborted) throw deadline.signal.reason;
    const failed = settled.findIndex((result) => result.status === 'rejected');
    if (failed >= 0) {
      const reason = (settled[failed] as PromiseRejectedResult).reason as Error;
      throw new ModelLoadError(`version ${files[failed]?.version}: ${reason?.message ?? String(reason)}`);
    }
    const served = settled.map((result) => (result as PromiseFulfilledResult<ServedModel>).value);
    const highest = served.at(-1) as ServedModel;
    return served.length === 1 ? highest : servedWith(highest, { versions: served });
  } catch (error) {
    // Interruptible (JS) workers are terminated; ONNX ones, which may sit in native code, are
    // retired and exit once it returns: terminating them there would abort the process.
    for (const model of built) model.batcher.destroy(error);
    // The index lists each version it tried as UNAVAILABLE with the reason, as Triton's does.
    if (error instanceof ModelLoadError && !Object.hasOwn(error, 'versions'))
      Object.assign(error, { versions: files.map((f) => String(f.version)) });
    throw error;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', cancel);
  }
}

/**
 * Triton's onnxruntime backend reads a model's intra-op threads from its config's `parameters`
 * (`intra_op_thread_count`, a string as every parameter); 0 is ONNX Runtime's own choice, here the
 * server's default split of the cores.
 */
function intraOpThreads(parameters: Record<string, unknown> | undefined, where: string): number | undefined {
  const given = parameters?.intra_op_thread_count;
  if (given === undefined) return undefined;
  const most = maxOf('threads');
  const count = typeof given === 'string' && /^\d{1,4}$/.test(given) ? Number(given) : Number.NaN;
  if (!(count >= 0 && count <= most))
    throw new ModelLoadError(
      `${where}: parameters \`intra_op_thread_count\` must be an integer from 0 (the server's default) to ${most}, got ${JSON.stringify(given)?.slice(0, 40)}`,
    );
  return count === 0 ? undefined : count;
}

const defined = <K extends string, V>(key: K, value: V | undefined): Partial<Record<K, V>> =>
  value === undefined ? {} : ({ [key]: value } as Record<K, V>);
