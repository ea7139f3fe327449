import { readConfigJson } from '../repository/config-json.js';
import { type OverrideFile, overridePath } from '../repository/load-override.js';
import type { ModelRegistry } from '../repository/registry.js';
import type { TritonModelConfig } from '../repository/triton-config.js';
import { ProtocolError, type ProtocolStatus } from './errors.js';

/**
 * The parameters of the repository extension's `load`, as either protocol carries them (Triton's
 * http_server.cc and grpc_server.cc): `config`, Triton's ModelConfig as JSON text, and
 * `file:<version>/<name>` parameters, the model's files (base64 text over REST, `bytes_param` over
 * gRPC). Anything else is refused in Triton's words. Checked here, before any load begins, so a bad
 * one is a 400 and the model's current instance serves on. Each transport reads them from its own
 * message (rest/repository-routes.ts, grpc/load-parameters.ts) into this one form.
 *
 * Their size is the request's: the REST body (inflated) and the gRPC message are held to
 * `--body-limit`, and a file decodes to less than its base64 text, so the files together never
 * exceed it; their count is held to `--max-objects` (the REST body scan counts object members,
 * the gRPC scan a map's entries) before anything is decoded.
 */
export interface LoadParameters {
  /** Triton's JSON ModelConfig, as the client sent it (read by repository/config-json.ts). */
  config?: string;
  /** The `file:` contents: each parameter's name (`file:<version>/<name>`, checked at load) and its bytes. */
  files: { parameter: string; bytes: Uint8Array }[];
}

/** A parameter's name as a refusal quotes it: cut, so a 1 MB name is not sent back whole. */
export const quoteParameter = (name: string): string => name.slice(0, 300);

/** Whether a load was given anything to override (else it is a plain load of the repository's folder). */
export const overrides = (parameters: LoadParameters | undefined): parameters is LoadParameters =>
  parameters !== undefined && (parameters.config !== undefined || parameters.files.length > 0);

/**
 * A load with overrides. Its refusals begin as Triton's core words them (`failed to load '<name>', `,
 * which its clients and qa tests match), then say why: where Triton answers only "failed to poll
 * from model repository" and logs the reason, the client reads it here. A bad config or a model
 * that fails to build with it is a 400, and the instance already serving (if any) serves on.
 */
export async function loadWithParameters(
  registry: ModelRegistry,
  name: string,
  parameters: LoadParameters,
): Promise<void> {
  const failed = (status: ProtocolStatus, reason: string): ProtocolError =>
    new ProtocolError(status, `failed to load '${name}', ${reason}`);
  // As Triton: the files are a model folder of their own, so they need the config that describes it.
  if (parameters.config === undefined)
    throw failed('invalid-argument', "Load parameter 'config' must be specified for model file override");
  // Where each file goes, checked before anything is read or written (repository/load-override.ts).
  let files: OverrideFile[];
  try {
    files = parameters.files.map(({ parameter, bytes }) => ({ path: overridePath(parameter), bytes }));
  } catch (error) {
    throw failed('invalid-argument', (error as Error).message);
  }
  let config: TritonModelConfig;
  try {
    config = readConfigJson(parameters.config);
  } catch (error) {
    throw failed('invalid-argument', `Invalid config override: ${(error as Error).message}`);
  }
  try {
    await registry.load(name, files.length > 0 ? { config, files } : { config });
  } catch (error) {
    // Cancelled by an unload: the request was fine, another one won (409), as for a plain load.
    throw failed(
      (error as { code?: unknown } | null)?.code === 'ERR_LOAD_CANCELLED' ? 'conflict' : 'invalid-argument',
      (error as Error)?.message ?? String(error),
    );
  }
}
