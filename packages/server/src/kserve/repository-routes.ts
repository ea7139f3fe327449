import type { FastifyInstance } from 'fastify';
import type { ModelRegistry } from '../model/registry.js';
import { servedVersions } from '../model/versions.js';
import { HttpError } from './errors.js';
import { type LoadParameters, loadWithParameters, overrides, restLoadParameters } from './load-parameters.js';

/** A model name as a repository folder may have it: nothing a path or a label could be abused with. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

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
    if (control !== 'explicit') throw new HttpError(503, 'explicit model load / unload is not allowed if polling is enabled (model control is off: start the server with --model-control explicit to load and unload models)');
    if (!MODEL_NAME.test(name)) throw new HttpError(400, `Invalid model name \`${name.slice(0, 100)}\`: letters, digits, '_', '.', '-', at most 64`);
  };
  return {
    index: (readyOnly = false) => {
      // As Triton's (model_repository_manager.cc): a row per version with its state, and the name
      // alone for a folder never loaded (with --model-control explicit), sorted by name.
      const rows: IndexRow[] = [];
      for (const entry of registry.entries()) {
        if (readyOnly && entry.state !== 'READY') continue;
        const versions = entry.model !== undefined ? servedVersions(entry.model).map((m) => m.version) : (entry.versions ?? ['1']);
        if (versions.length === 0) rows.push({ name: entry.name, state: entry.state, reason: entry.reason });
        for (const version of versions) rows.push({ name: entry.name, version, state: entry.state, reason: entry.reason });
      }
      if (!readyOnly) for (const name of registry.loadable()) if (registry.get(name) === undefined) rows.push({ name });
      return rows.sort((a, b) => a.name.localeCompare(b.name) || Number(a.version ?? 0) - Number(b.version ?? 0));
    },
    load: async (name, parameters) => {
      controlled(name);
      if (!registry.canLoad) throw new HttpError(400, 'This server has no model repository to load from');
      if (overrides(parameters)) return loadWithParameters(registry, name, parameters);
      try {
        await registry.load(name);
      } catch (error) {
        // Cancelled by an unload: the request was fine, another one won (409); anything else is the
        // model's fault, a load timeout included (400), and the reason is also in the index.
        const status = (error as { code?: unknown } | null)?.code === 'ERR_LOAD_CANCELLED' ? 409 : 400;
        throw new HttpError(status, `Model \`${name}\` failed to load: ${(error as Error)?.message ?? String(error)}`);
      }
    },
    unload: async (name) => {
      controlled(name);
      if (registry.get(name) === undefined) throw new HttpError(404, `Unknown model \`${name}\``);
      await registry.unload(name);
    },
  };
}

/** The REST routes of the repository extension. */
export function registerRepositoryRoutes(app: FastifyInstance, actions: RepositoryActions): void {
  app.post('/v2/repository/index', async (request) => {
    // Triton's optional body `{"ready": true}` lists only ready models; bodies arrive as raw bytes.
    let ready = false;
    if (Buffer.isBuffer(request.body) && request.body.length > 0) {
      try {
        ready = (JSON.parse(request.body.toString('utf8')) as { ready?: unknown } | null)?.ready === true;
      } catch (error) {
        throw new HttpError(400, `Malformed JSON: ${(error as Error).message}`);
      }
    }
    return actions.index(ready);
  });
  app.post<{ Params: { name: string } }>('/v2/repository/models/:name/load', async (request) => {
    // Triton's optional body `{"parameters": {...}}`: a config override and the model's files.
    await actions.load(request.params.name, restLoadParameters(request.body));
    return {};
  });
  app.post<{ Params: { name: string } }>('/v2/repository/models/:name/unload', async (request) => {
    await actions.unload(request.params.name);
    return {};
  });
}
