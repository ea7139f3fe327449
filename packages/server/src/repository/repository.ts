import { existsSync, lstatSync, readdirSync, type Stats, statSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchInfo, BatchTracing, StepInfo } from 'batched-fn';
import { createJsModel } from '../formats/js-model.js';
import { createOnnxModel } from '../formats/onnx-model.js';
import { LoadTimeoutError, ModelLoadError } from '../model/errors.js';
import type { ModelCalls } from '../model/model-calls.js';
import { type ServedModel, servedWith } from '../model/served-model.js';
import { SETTING_DEFAULTS } from '../settings/settings.js';
import { untilAborted } from './abort.js';
import { type ModelConfig, readLabels, readModelConfig } from './config-file.js';
import { readEnsembleConfigJson } from './ensemble-config.js';
import { loadEnsemble } from './ensemble-loader.js';
import { MODEL_NAME } from './model-name.js';
import { type LoadOverride, loadWithOverride } from './load-override.js';
import type { ModelLoader } from './registry.js';
import { isTritonLayout, loadTritonModel, type TritonDefaults } from './triton-repository.js';

/**
 * A model repository, as Triton lays it out: `DIR/<name>/` holds `model.onnx` or a JS model
 * (`model.js`, `model.mjs`) and optionally `config.json` (config-file.ts). Triton's own layout
 * (`config.pbtxt`, version folders) is served beside it: triton-repository.ts.
 */

// The rule of a model name (model-name.ts), here for those who import it from the repository.
export { MODEL_NAME } from './model-name.js';

const lstat = (path: string): Stats | undefined => lstatSync(path, { throwIfNoEntry: false });
const stat = (path: string): Stats | undefined => statSync(path, { throwIfNoEntry: false });

/**
 * The model entries of a repository, by name: its folders, and its symbolic links, which are listed
 * only so that they show as UNAVAILABLE with the reason (see `repositoryLoader`) rather than vanish.
 * Other entries (files, odd names) are skipped.
 */
export function listRepository(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((entry) => (entry.isDirectory() || entry.isSymbolicLink()) && MODEL_NAME.test(entry.name))
    .map((entry) => entry.name)
    .sort();
}

/** What a repository's models are built with, beside the folder. */
export interface RepositoryLoaderOptions {
  /** The server-wide settings, defaults under each model's config.json. */
  defaults: ModelConfig;
  /** Told of every batch of every model, with its version. */
  onBatch: (info: BatchInfo, version?: string) => void;
  tracing?: BatchTracing | undefined;
  /** Which settings the operator gave (Triton's layout reads its defaults apart from them). @default { given: {} } */
  triton?: TritonDefaults;
  /** Told of every step of the repository's generators (formats/generator.ts). */
  onStep?: ((info: StepInfo) => void) | undefined;
  /** How its models call the server's other models (a JS model's `models`, an ensemble's steps). */
  calls?: ModelCalls | undefined;
}

/**
 * Builds a repository's model by name, with the server-wide settings as defaults under its config.json.
 *
 * One rule for symbolic links, at start and on `/load` alike: a model folder must be a real
 * directory of the repository, and a link in its place is refused with that reason. Followed, a link
 * would give one folder two names (two batchers, two metric labels), or serve a name from a tree
 * outside the one the operator reviews. Files inside a model folder (`model.onnx` linked to a shared
 * cache) are followed as before: they are that model's business.
 *
 * The load as a whole (reading the module's exports, building the workers, every `context()`) must
 * finish within `loadTimeout`; past it, or once `signal` aborts (an unload), the workers are stopped
 * and the load fails with the reason.
 */
export function repositoryLoader(dir: string, options: RepositoryLoaderOptions): ModelLoader {
  const { defaults, onBatch, tracing, triton = { given: {} }, onStep, calls } = options;
  const has = (name: string): boolean => {
    if (!MODEL_NAME.test(name)) return false;
    const entry = lstat(join(dir, name));
    return entry !== undefined && (entry.isDirectory() || entry.isSymbolicLink());
  };
  const load = async (
    name: string,
    signal?: AbortSignal,
    override?: LoadOverride,
    loadDependencies?: (names: readonly string[]) => Promise<void>,
  ): Promise<ServedModel> => {
    // Triton's load overrides: the model's files alone (no repository folder), or its folder with another config (load-override.ts).
    const overridden = (folder: string | undefined) =>
      loadWithOverride(override as LoadOverride, {
        folder,
        tritonLayout: folder !== undefined && isTritonLayout(folder),
        name,
        defaults,
        triton,
        onBatch,
        tracing,
        signal,
        calls,
        loadDependencies,
      });
    if (override?.files !== undefined) return overridden(undefined);
    const folder = join(dir, name);
    const entry = MODEL_NAME.test(name) ? lstat(folder) : undefined;
    if (entry?.isSymbolicLink() === true)
      throw new ModelLoadError(
        `${folder} is a symbolic link: a model folder must be a real directory of the repository (links are not followed)`,
      );
    if (entry?.isDirectory() !== true) throw new ModelLoadError(`No folder ${folder} in the repository`);
    if (override !== undefined) return overridden(folder);
    // Triton's layout (config.pbtxt, version folders): triton-repository.ts.
    if (isTritonLayout(folder))
      return loadTritonModel({ folder, name, defaults, triton, onBatch, tracing, signal, calls, loadDependencies });
    // An ensemble's config.json (`platform: "ensemble"`, in Triton's field names): ensemble-loader.ts.
    const ensemble = readEnsembleConfigJson(join(folder, 'config.json'));
    if (ensemble !== undefined) {
      const where = join(folder, 'config.json');
      const file = ['model.onnx', 'model.js', 'model.mjs'].find((f) => existsSync(join(folder, f)));
      if (file !== undefined)
        throw new ModelLoadError(
          `${where} says \`platform: "ensemble"\`, but ${folder} holds ${file}: an ensemble has no model file`,
        );
      return loadEnsemble({ name, where, config: ensemble, defaults, onBatch, tracing, calls });
    }
    const config = readModelConfig(join(folder, 'config.json'));
    // The server's maxBatchSize is a default for models that can batch; a model without a batch dimension gets 0 (formats/batch-dimension.ts).
    const { maxBatchSize: defaultMaxBatchSize, ...otherDefaults } = defaults;
    const {
      timeout,
      loadTimeout = SETTING_DEFAULTS.loadTimeout,
      parameters,
      labels: labelSources,
      ...settings
    } = { ...otherDefaults, ...config, ...(defaultMaxBatchSize === undefined ? {} : { defaultMaxBatchSize }) };
    const labels = labelSources === undefined ? {} : readLabels(folder, labelSources);
    const path = ['model.onnx', 'model.js', 'model.mjs'].map((f) => join(folder, f)).find((f) => existsSync(f));
    if (path === undefined) throw new ModelLoadError(`${folder} holds no model.onnx, model.js or model.mjs`);
    // A FIFO (or a device) would block the thread that reads it for as long as it likes.
    if (stat(path)?.isFile() !== true) throw new ModelLoadError(`${path} is not a regular file`);
    const onnx = path.endsWith('.onnx');
    if (onnx && config.sequence_batching !== undefined)
      throw new ModelLoadError(`${folder}: \`sequence_batching\` is for stateful JS models (model.mjs) for now`);

    const deadline = new AbortController();
    let phase = onnx ? 'it was built' : `its exports were read from ${path}`;
    const timer = setTimeout(
      () =>
        deadline.abort(
          new LoadTimeoutError(
            `${name} did not load within ${loadTimeout} ms (\`loadTimeout\`) while ${phase}; its threads were stopped`,
          ),
        ),
      loadTimeout,
    );
    // The threads being waited for keep the process alive; the deadline alone must not.
    timer.unref();
    const cancel = (): void => deadline.abort(signal?.reason);
    if (signal?.aborted === true) cancel();
    signal?.addEventListener('abort', cancel, { once: true });
    try {
      const common = {
        ...settings,
        ...labels,
        name,
        onBatch,
        ...(onStep === undefined ? {} : { onStep }),
        ...(parameters === undefined ? {} : { parameters }),
        ...(tracing === undefined ? {} : { tracing }),
        ...(calls === undefined ? {} : { calls }),
      };
      const model = onnx
        ? createOnnxModel({ ...common, path })
        : await createJsModel({ ...common, path, config: config as Record<string, unknown>, signal: deadline.signal });
      try {
        // The models it calls first: its context() may call them.
        if (model.dependencies !== undefined && loadDependencies !== undefined) {
          phase = 'the models it calls loaded';
          await untilAborted(loadDependencies(model.dependencies), deadline.signal);
        }
        phase = onnx ? 'its workers built their ONNX Runtime sessions' : 'its workers ran context()';
        await untilAborted(model.batcher.ready(), deadline.signal);
      } catch (error) {
        // Interruptible (JS) workers are terminated; ONNX ones, which may sit in native code, are
        // retired and exit once it returns: terminating them there would abort the process.
        model.batcher.destroy(error);
        throw error;
      }
      return timeout === undefined ? model : servedWith(model, { timeout });
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', cancel);
    }
  };
  return Object.assign(load, { has, list: () => listRepository(dir) });
}
