import type { ServedModel } from './served-model.js';

/**
 * The versions a served model answers for, ascending: those of a Triton-layout model that serves
 * several (repository/triton-repository.ts), else the model itself (its one version).
 */
export function servedVersions(model: ServedModel): readonly ServedModel[] {
  return model.versions ?? [model];
}

/** The versions `name` serves now (READY), ascending; undefined when it serves none. */
export function versionsServed(
  registry: { get(name: string): { model: ServedModel | undefined } | undefined },
  name: string,
): string[] | undefined {
  const model = registry.get(name)?.model;
  return model === undefined ? undefined : servedVersions(model).map((m) => m.version);
}
