import type { FastifyInstance } from 'fastify';
import type { IndexRow } from '../protocol/repository-actions.js';

/** One model as `GET /v2/models` lists it. */
export interface ModelListing {
  name: string;
  versions: string[];
  state: string;
  reason?: string;
}

/**
 * The repository's index (one row per version, Triton's shape) as one entry per model: its
 * versions and state. A folder never loaded (`--model-control explicit`) is UNAVAILABLE, and says so.
 */
export function modelListing(rows: readonly IndexRow[]): ModelListing[] {
  const models = new Map<string, ModelListing>();
  for (const row of rows) {
    let model = models.get(row.name);
    if (model === undefined) {
      model =
        row.state === undefined
          ? { name: row.name, versions: [], state: 'UNAVAILABLE', reason: 'not loaded' }
          : { name: row.name, versions: [], state: row.state, ...(row.reason ? { reason: row.reason } : {}) };
      models.set(row.name, model);
    }
    if (row.version !== undefined) model.versions.push(row.version);
  }
  return [...models.values()];
}

/** `GET /v2/models`: the models this server has, their versions and states. */
export function registerModelList(app: FastifyInstance, index: () => IndexRow[]): void {
  app.get('/v2/models', async () => ({ models: modelListing(index()) }));
}

export interface ServerIndex {
  version: string;
  /** Where the docs are (the package's homepage). */
  homepage: string;
  models: () => string[];
  /** Paths of this server's other pages (`/dashboard`, `/metrics`), when it serves them. */
  links: Record<string, string>;
}

/** `GET /`: what this server is, its models, and where to go next, for a user who opens its address. */
export function registerServerIndex(app: FastifyInstance, index: ServerIndex): void {
  app.get('/', async () => ({
    name: 'batched-fn',
    version: index.version,
    models: index.models(),
    links: {
      ...index.links,
      server: '/v2',
      models: '/v2/models',
      health: '/v2/health/ready',
      ...(index.homepage === '' ? {} : { docs: index.homepage }),
    },
  }));
}
