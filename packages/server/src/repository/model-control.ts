import type { ModelConfig } from './config-file.js';

/**
 * Which repository models load at start: with `--model-control none`, all of them; with
 * `explicit`, those `--load-model` names (`'*'`: all), as Triton's `--model-control-mode=explicit`
 * and `--load-model`. `loadModel` left out means all for library callers; the CLI passes none
 * (an empty list) for explicit mode without `--load-model`, so it starts with no model, as Triton.
 */
export function modelsToLoad(
  names: readonly string[],
  control: 'none' | 'explicit',
  loadModel: string | readonly string[] | undefined,
  dir: string,
): string[] {
  const asked = loadModel === undefined ? undefined : [loadModel].flat();
  if (control !== 'explicit') {
    if (asked !== undefined && asked.length > 0)
      throw new RangeError('--load-model needs --model-control explicit (with `none`, every model loads at start)');
    return [...names];
  }
  if (asked === undefined || asked.includes('*')) return [...names];
  for (const name of asked) {
    if (typeof name !== 'string' || !names.includes(name))
      throw new RangeError(
        `--load-model names \`${String(name).slice(0, 100)}\`, which is not a model folder of ${dir}`,
      );
  }
  return [...new Set(asked)];
}

/**
 * The flags given explicitly, by their config key: a Triton-layout model takes these where its
 * config.pbtxt is silent, and Triton's defaults otherwise (triton-repository.ts).
 */
export function givenSettings(options: {
  maxBatchSize?: number | undefined;
  maxDelay?: number | 'auto' | undefined;
  preferredBatchSizes?: number[] | undefined;
  workers?: number | undefined;
}): Partial<ModelConfig> {
  const given: Partial<ModelConfig> = {};
  if (options.maxBatchSize !== undefined) given.maxBatchSize = options.maxBatchSize;
  if (options.maxDelay !== undefined) given.maxDelay = options.maxDelay;
  if (options.preferredBatchSizes !== undefined) given.preferredBatchSizes = options.preferredBatchSizes;
  if (options.workers !== undefined) given.workers = options.workers;
  return given;
}
