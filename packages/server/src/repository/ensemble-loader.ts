import type { BatchInfo, BatchTracing } from 'batched-fn';
import { createEnsembleModel } from '../formats/ensemble.js';
import { ModelLoadError } from '../model/errors.js';
import type { ModelCalls } from '../model/model-calls.js';
import { type ServedModel, servedWith } from '../model/served-model.js';
import type { ModelConfig } from './config-file.js';
import { ensemblePlan } from './ensemble-config.js';
import type { TritonModelConfig, VersionPolicy } from './triton-config.js';

/**
 * Builds an ensemble from its config, in either layout: Triton's (`config.pbtxt` with
 * `platform: "ensemble"` and an empty version folder, as Triton requires one) or ours (`config.json`
 * in Triton's field names, no model file, served as version 1). Its steps are other models, called
 * through the server (`calls`); whether they are READY is the registry's to follow (its
 * `dependencies`), so the ensemble loads whatever state they are in.
 */
export interface EnsembleLoadOptions {
  name: string;
  /** The config's file (or "the config of `x`" for a load override), for messages. */
  where: string;
  config: TritonModelConfig;
  /**
   * Triton's layout: the version folders present, and those of them a version policy serves
   * (triton-repository.ts `versionsToServe`); ours: undefined (version 1).
   */
  folders?: { present: readonly number[]; serve: (policy: VersionPolicy) => number[] };
  /** The server's settings: an ensemble takes only its `channelCap`. */
  defaults: ModelConfig;
  onBatch: (info: BatchInfo, version?: string) => void;
  tracing?: BatchTracing | undefined;
  calls?: ModelCalls | undefined;
}

export function loadEnsemble(options: EnsembleLoadOptions): ServedModel {
  const { name, where, calls } = options;
  const plan = ensemblePlan(options.config, name, where);
  if (calls === undefined)
    throw new ModelLoadError(
      `${where}: \`${name}\` is an ensemble, whose steps call the server's other models; this loader was given no \`calls\` (serve it with startServer or the CLI)`,
    );
  let versions = [1];
  const folders = options.folders;
  if (folders !== undefined) {
    versions = folders.serve(plan.versionPolicy);
    // Triton's words (model_lifecycle.cc), then what the folder has.
    if (versions.length === 0) {
      const has =
        folders.present.length === 0
          ? 'it has no version folders: an ensemble needs an empty one, such as 1/'
          : `version folders ${folders.present.join(', ')}`;
      throw new ModelLoadError(
        `at least one version must be available under the version policy of model '${name}' (${has})`,
      );
    }
  }
  const served = versions.map((version) => {
    const v = String(version);
    const model = createEnsembleModel({
      name,
      maxBatchSize: plan.maxBatchSize,
      signature: { inputs: plan.inputs, outputs: plan.outputs },
      steps: plan.steps,
      calls,
      ...(options.defaults.channelCap === undefined ? {} : { channelCap: options.defaults.channelCap }),
      config: {
        versionPolicy: plan.versionPolicy,
        ...(plan.parameters === undefined ? {} : { parameters: plan.parameters }),
      },
      onBatch: (info) => options.onBatch(info, v),
      ...(options.tracing === undefined ? {} : { tracing: options.tracing }),
    });
    return servedWith(model, { version: v });
  });
  const highest = served.at(-1) as ServedModel;
  return served.length === 1 ? highest : servedWith(highest, { versions: served });
}
