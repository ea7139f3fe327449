import { servedVersions } from '../model/versions.js';
import type { ModelRegistry } from '../repository/registry.js';
import { MODEL_NAME } from '../repository/repository.js';
import { invalidArgument, ProtocolError } from './errors.js';
import { type LoadParameters, loadWithParameters, overrides } from './load-parameters.js';

/** A row of the repository index: a model version and its state; a folder never loaded has its name only, as in Triton. */
export interface IndexRow {
  name: string;
  version?: string;
  state?: string;
  reason?: string;
}

export interface RepositoryActions {
  index(readyOnly?: boolean): IndexRow[];
  /** `parameters`: Triton's load overrides (a config, the model's files), see load-parameters.ts. */
  load(name: string, parameters?: LoadParameters): Promise<void>;
  unload(name: string): Promise<void>;
}

/**
 * Triton's model repository extension, for both protocols: the index of models and their
 * states, and (with `--model-control explicit`) load and unload while serving.
 */
export function repositoryActions(registry: ModelRegistry, control: 'none' | 'explicit'): RepositoryActions {
  const controlled = (name: string): void => {
    // Triton's words and status (UNAVAILABLE in its model_repository_manager.cc: 503 here, gRPC UNAVAILABLE),
    // which its clients' tests match, then how to turn it on.
    if (control !== 'explicit')
      throw new ProtocolError(
        'unavailable',
        'explicit model load / unload is not allowed if polling is enabled (model control is off: start the server with --model-control explicit to load and unload models)',
      );
    if (!MODEL_NAME.test(name))
      throw invalidArgument(`Invalid model name \`${name.slice(0, 100)}\`: letters, digits, '_', '.', '-', at most 64`);
  };
  return {
    index: (readyOnly = false) => {
      // As Triton's (model_repository_manager.cc): a row per version with its state, and the name
      // alone for a folder never loaded (with --model-control explicit), sorted by name.
      const rows: IndexRow[] = [];
      for (const entry of registry.entries()) {
        if (readyOnly && entry.state !== 'READY') continue;
        const versions =
          entry.model !== undefined ? servedVersions(entry.model).map((m) => m.version) : (entry.versions ?? ['1']);
        if (versions.length === 0) rows.push({ name: entry.name, state: entry.state, reason: entry.reason });
        for (const version of versions)
          rows.push({ name: entry.name, version, state: entry.state, reason: entry.reason });
      }
      if (!readyOnly) for (const name of registry.loadable()) if (registry.get(name) === undefined) rows.push({ name });
      return rows.sort((a, b) => a.name.localeCompare(b.name) || Number(a.version ?? 0) - Number(b.version ?? 0));
    },
    load: async (name, parameters) => {
      controlled(name);
      if (!registry.canLoad) throw invalidArgument('This server has no model repository to load from');
      if (overrides(parameters)) return loadWithParameters(registry, name, parameters);
      try {
        await registry.load(name);
      } catch (error) {
        // Cancelled by an unload: the request was fine, another one won (409); anything else is the
        // model's fault, a load timeout included (400), and the reason is also in the index.
        const status =
          (error as { code?: unknown } | null)?.code === 'ERR_LOAD_CANCELLED' ? 'conflict' : 'invalid-argument';
        throw new ProtocolError(
          status,
          `Model \`${name}\` failed to load: ${(error as Error)?.message ?? String(error)}`,
        );
      }
    },
    unload: async (name) => {
      controlled(name);
      if (registry.get(name) === undefined) throw new ProtocolError('not-found', `Unknown model \`${name}\``);
      await registry.unload(name);
    },
  };
}
