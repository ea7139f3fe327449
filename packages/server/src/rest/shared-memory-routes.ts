import type { FastifyInstance } from 'fastify';
import { invalidArgument, ProtocolError } from '../protocol/errors.js';
import { cudaError, disabledError, type SharedMemoryRegistry } from '../protocol/shared-memory.js';

/** A register request's JSON body (bodies arrive as raw bytes; an empty one is `{}`). */
function registerBody(body: unknown): Record<string, unknown> {
  if (!Buffer.isBuffer(body) || body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw invalidArgument(`Malformed JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw invalidArgument('Shared memory register request must be a JSON object');
  return parsed as Record<string, unknown>;
}

/**
 * The REST routes of Triton's shared-memory extensions (its http_server.cc paths):
 * system shared memory for real; CUDA shared memory lists no region, unregisters none, and
 * refuses a registration with a 400 that says this server has no CUDA.
 */
export function registerSharedMemoryRoutes(app: FastifyInstance, registry: SharedMemoryRegistry): void {
  type Named = { Params: { name: string } };
  app.get('/v2/systemsharedmemory/status', async () => registry.status());
  app.get<Named>('/v2/systemsharedmemory/region/:name/status', async (request) => registry.status(request.params.name));
  app.post<Named>('/v2/systemsharedmemory/region/:name/register', async (request) => {
    if (!registry.enabled) throw disabledError();
    const body = registerBody(request.body);
    registry.register(request.params.name, body.key, body.offset, body.byte_size);
    return {};
  });
  app.post('/v2/systemsharedmemory/unregister', async () => {
    registry.unregister();
    return {};
  });
  app.post<Named>('/v2/systemsharedmemory/region/:name/unregister', async (request) => {
    registry.unregister(request.params.name);
    return {};
  });

  // CUDA: nothing is ever registered, so status is empty and unregistering is a no-op (Triton's
  // examples unregister every CUDA region before they start, on CPU-only servers too).
  app.get('/v2/cudasharedmemory/status', async () => []);
  app.get<Named>('/v2/cudasharedmemory/region/:name/status', async (request) => {
    throw new ProtocolError(
      'not-found',
      `Unable to find cuda shared memory region: '${request.params.name.slice(0, 100)}'`,
    );
  });
  app.post('/v2/cudasharedmemory/region/:name/register', async () => {
    throw registry.enabled ? cudaError() : disabledError();
  });
  const cudaUnregister = async (): Promise<object> => {
    if (!registry.enabled) throw disabledError();
    return {};
  };
  app.post('/v2/cudasharedmemory/unregister', cudaUnregister);
  app.post('/v2/cudasharedmemory/region/:name/unregister', cudaUnregister);
}
