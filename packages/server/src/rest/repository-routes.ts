import type { FastifyInstance } from 'fastify';
import { invalidArgument } from '../protocol/errors.js';
import { type LoadParameters, quoteParameter as quote } from '../protocol/load-parameters.js';
import type { RepositoryActions } from '../protocol/repository-actions.js';

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/;
const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** The body of `POST /v2/repository/models/{name}/load`: empty, or `{"parameters": {...}}` of strings. */
export function restLoadParameters(body: unknown): LoadParameters {
  const out: LoadParameters = { files: [] };
  if (!Buffer.isBuffer(body) || body.length === 0) return out;
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw invalidArgument(`Malformed JSON: ${(error as Error).message}`);
  }
  if (!isObject(json))
    throw invalidArgument('The load request must be a JSON object, with an optional `parameters` object');
  if (json.parameters === undefined) return out;
  if (!isObject(json.parameters)) throw invalidArgument("The load request's `parameters` must be a JSON object");
  for (const [name, value] of Object.entries(json.parameters)) {
    if (name !== 'config' && !name.startsWith('file:'))
      throw invalidArgument(`unrecognized load parameter '${quote(name)}'.`);
    // Triton's REST reads every load parameter as a string: the config's JSON text, a file's base64.
    if (typeof value !== 'string')
      throw invalidArgument(
        `invalid value type for load parameter '${quote(name)}', expected a string (${name === 'config' ? 'the JSON config' : "the file's contents in base64"})`,
      );
    if (name === 'config') {
      out.config = value;
      continue;
    }
    if (!BASE64.test(value)) throw invalidArgument(`'${quote(name)}' is not valid base64`);
    out.files.push({ parameter: name, bytes: Buffer.from(value, 'base64') });
  }
  return out;
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
        throw invalidArgument(`Malformed JSON: ${(error as Error).message}`);
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
