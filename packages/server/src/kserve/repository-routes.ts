import type { FastifyInstance } from 'fastify';
import type { ModelRegistry } from '../model/registry.js';
import { HttpError } from './errors.js';

/** A model name as a repository folder may have it: nothing a path or a label could be abused with. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export interface RepositoryActions {
  index(readyOnly?: boolean): { name: string; version: string; state: string; reason: string }[];
  load(name: string): Promise<void>;
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
    index: (readyOnly = false) =>
      registry
        .entries()
        .filter((entry) => !readyOnly || entry.state === 'READY')
        .map((entry) => ({ name: entry.name, version: entry.model?.version ?? '1', state: entry.state, reason: entry.reason })),
    load: async (name) => {
      controlled(name);
      if (!registry.canLoad) throw new HttpError(400, 'This server has no model repository to load from');
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
    await actions.load(request.params.name);
    return {};
  });
  app.post<{ Params: { name: string } }>('/v2/repository/models/:name/unload', async (request) => {
    await actions.unload(request.params.name);
    return {};
  });
}
