import type { GrpcParameter } from '../grpc/proto.js';
import { readConfigJson } from '../model/config-json.js';
import { type OverrideFile, overridePath } from '../model/load-override.js';
import type { ModelRegistry } from '../model/registry.js';
import type { TritonModelConfig } from '../model/triton-config.js';
import { HttpError } from './errors.js';

/**
 * The parameters of the repository extension's `load`, as either protocol carries them (Triton's
 * http_server.cc and grpc_server.cc): `config`, Triton's ModelConfig as JSON text, and
 * `file:<version>/<name>` parameters, the model's files (base64 text over REST, `bytes_param` over
 * gRPC). Anything else is refused in Triton's words. Checked here, before any load begins, so a bad
 * one is a 400 and the model's current instance serves on.
 *
 * Their size is the request's: the REST body (inflated) and the gRPC message are held to
 * `--body-limit`, and a file decodes to less than its base64 text, so the files together never
 * exceed it; their count is held to `--max-objects` (the REST body scan counts object members,
 * the gRPC scan a map's entries) before anything is decoded.
 */
export interface LoadParameters {
  /** Triton's JSON ModelConfig, as the client sent it (read by model/config-json.ts). */
  config?: string;
  /** The `file:` contents: each parameter's name (`file:<version>/<name>`, checked at load) and its bytes. */
  files: { parameter: string; bytes: Uint8Array }[];
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/;
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const quote = (name: string): string => name.slice(0, 300);

/** The body of `POST /v2/repository/models/{name}/load`: empty, or `{"parameters": {...}}` of strings. */
export function restLoadParameters(body: unknown): LoadParameters {
  const out: LoadParameters = { files: [] };
  if (!Buffer.isBuffer(body) || body.length === 0) return out;
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new HttpError(400, `Malformed JSON: ${(error as Error).message}`);
  }
  if (!isObject(json)) throw new HttpError(400, 'The load request must be a JSON object, with an optional `parameters` object');
  if (json.parameters === undefined) return out;
  if (!isObject(json.parameters)) throw new HttpError(400, 'The load request\'s `parameters` must be a JSON object');
  for (const [name, value] of Object.entries(json.parameters)) {
    if (name !== 'config' && !name.startsWith('file:')) throw new HttpError(400, `unrecognized load parameter '${quote(name)}'.`);
    // Triton's REST reads every load parameter as a string: the config's JSON text, a file's base64.
    if (typeof value !== 'string') throw new HttpError(400, `invalid value type for load parameter '${quote(name)}', expected a string (${name === 'config' ? 'the JSON config' : "the file's contents in base64"})`);
    if (name === 'config') {
      out.config = value;
      continue;
    }
    if (!BASE64.test(value)) throw new HttpError(400, `'${quote(name)}' is not valid base64`);
    out.files.push({ parameter: name, bytes: Buffer.from(value, 'base64') });
  }
  return out;
}

/** A RepositoryModelLoadRequest's `parameters` map: `config` a string_param, `file:` parameters bytes_param. */
export function grpcLoadParameters(map: Record<string, GrpcParameter> | undefined): LoadParameters {
  const out: LoadParameters = { files: [] };
  for (const [name, parameter] of Object.entries(map ?? {})) {
    const choice = parameter?.parameter_choice;
    if (name === 'config') {
      if (choice !== 'string_param') throw new HttpError(400, "invalid value type for load parameter 'config', expected string_param.");
      out.config = parameter.string_param ?? '';
    } else if (name.startsWith('file:')) {
      if (choice !== 'bytes_param') throw new HttpError(400, `invalid value type for load parameter '${quote(name)}', expected bytes_param.`);
      out.files.push({ parameter: name, bytes: parameter.bytes_param ?? Buffer.alloc(0) });
    } else {
      throw new HttpError(400, `unrecognized load parameter '${quote(name)}'.`);
    }
  }
  return out;
}

/** Whether a load was given anything to override (else it is a plain load of the repository's folder). */
export const overrides = (parameters: LoadParameters | undefined): parameters is LoadParameters => parameters !== undefined && (parameters.config !== undefined || parameters.files.length > 0);

/**
 * A load with overrides. Its refusals begin as Triton's core words them (`failed to load '<name>', `,
 * which its clients and qa tests match), then say why: where Triton answers only "failed to poll
 * from model repository" and logs the reason, the client reads it here. A bad config or a model
 * that fails to build with it is a 400, and the instance already serving (if any) serves on.
 */
export async function loadWithParameters(registry: ModelRegistry, name: string, parameters: LoadParameters): Promise<void> {
  const failed = (status: number, reason: string): HttpError => new HttpError(status, `failed to load '${name}', ${reason}`);
  // As Triton: the files are a model folder of their own, so they need the config that describes it.
  if (parameters.config === undefined) throw failed(400, "Load parameter 'config' must be specified for model file override");
  // Where each file goes, checked before anything is read or written (model/load-override.ts).
  let files: OverrideFile[];
  try {
    files = parameters.files.map(({ parameter, bytes }) => ({ path: overridePath(parameter), bytes }));
  } catch (error) {
    throw failed(400, (error as Error).message);
  }
  let config: TritonModelConfig;
  try {
    config = readConfigJson(parameters.config);
  } catch (error) {
    throw failed(400, `Invalid config override: ${(error as Error).message}`);
  }
  try {
    await registry.load(name, files.length > 0 ? { config, files } : { config });
  } catch (error) {
    // Cancelled by an unload: the request was fine, another one won (409), as for a plain load.
    throw failed((error as { code?: unknown } | null)?.code === 'ERR_LOAD_CANCELLED' ? 409 : 400, (error as Error)?.message ?? String(error));
  }
}
