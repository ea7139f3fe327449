import type { FastifyInstance } from 'fastify';
import type { ModelRegistry } from '../model/registry.js';
import { HttpError } from './errors.js';

/** A model name as a repository folder may have it: nothing a path or a label could be abused with. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/**
 * Triton's model repository extension: the index of models and their states,
 * and (with `--model-control explicit`) load and unload while serving.
 */
export function registerRepositoryRoutes(app: FastifyInstance, registry: ModelRegistry, control: 'none' | 'explicit'): void {
  app.post('/v2/repository/index', async () =>
    registry.entries().map((entry) => ({ name: entry.name, version: entry.model?.version ?? '1', state: entry.state, reason: entry.reason })),
  );
  const controlled = (name: string): void => {
    if (control !== 'explicit') throw new HttpError(403, 'Model control is off: start the server with --model-control explicit to load and unload models');
    if (!MODEL_NAME.test(name)) throw new HttpError(400, `Invalid model name \`${name.slice(0, 100)}\`: letters, digits, '_', '.', '-', at most 64`);
  };
  app.post<{ Params: { name: string } }>('/v2/repository/models/:name/load', async (request) => {
    const { name } = request.params;
    controlled(name);
    if (!registry.canLoad) throw new HttpError(400, 'This server has no model repository to load from');
    try {
      await registry.load(name);
    } catch (error) {
      throw new HttpError(400, `Model \`${name}\` failed to load: ${(error as Error)?.message ?? String(error)}`);
    }
    return {};
  });
  app.post<{ Params: { name: string } }>('/v2/repository/models/:name/unload', async (request) => {
    const { name } = request.params;
    controlled(name);
    if (registry.get(name) === undefined) throw new HttpError(404, `Unknown model \`${name}\``);
    await registry.unload(name);
    return {};
  });
}
