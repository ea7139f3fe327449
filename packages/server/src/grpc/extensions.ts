import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { invalidArgument } from '../protocol/errors.js';
import type { InferenceFront } from '../protocol/infer-front.js';
import { updateLogSettings } from '../protocol/log-settings.js';
import { modelConfig } from '../protocol/model-config.js';
import { traceSettings } from '../protocol/trace-settings.js';
import type { TraceSwitch } from '../protocol/trace-switch.js';
import { RefusedRequest } from './guards.js';
import { toServiceError } from './status.js';

/**
 * gRPC's side of the model configuration, logging and trace extensions (`ModelConfig`,
 * `LogSettings`, `TraceSetting`), over the same functions as their REST routes, so both
 * protocols check, answer and fail alike. Their messages are Triton's (proto/grpc_service.proto,
 * proto/model_config.proto).
 */

/** A unary RPC: what it throws is its status (tracing being off is FAILED_PRECONDITION, REST's 400). */
function rpc<Req, Res>(handler: (request: Req) => Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => {
        // A message the guard refused while deserializing (guards.ts): answered INVALID_ARGUMENT.
        const request: unknown = call.request;
        if (request instanceof RefusedRequest) throw request.error;
        return handler(call.request);
      })
      .then(
        (response) => callback(null, response),
        (error: unknown) => callback(toServiceError(error)),
      );
  };
}

/** LogSettingsRequest.SettingValue, as the server reads it (`oneofs: true` names the chosen field). */
interface LogValue {
  parameter_choice?: 'bool_param' | 'uint32_param' | 'string_param';
  bool_param?: boolean;
  uint32_param?: number;
  string_param?: string;
}

/** The settings map as plain values: a value with no field chosen leaves the setting as it is (REST's null). */
function logRequest(settings: Record<string, LogValue> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(settings ?? {}))
    out[key] = value?.parameter_choice === undefined ? null : value[value.parameter_choice];
  return out;
}

function logResponse(settings: Record<string, unknown>): { settings: Record<string, LogValue> } {
  const out: Record<string, LogValue> = {};
  for (const [key, value] of Object.entries(settings)) {
    out[key] =
      typeof value === 'boolean'
        ? { bool_param: value }
        : typeof value === 'number'
          ? { uint32_param: value }
          : { string_param: String(value) };
  }
  return { settings: out };
}

/** TraceSettingRequest's map: a list of strings per setting; an empty one clears it (REST's null). */
function traceRequest(settings: Record<string, { value?: string[] }> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, { value = [] } = {}] of Object.entries(settings ?? {})) {
    if (value.length === 0) out[key] = null;
    else if (key === 'trace_level') out[key] = value;
    else if (value.length > 1)
      throw invalidArgument(`expect a single value for '${key.slice(0, 100)}', got ${value.length}`);
    else out[key] = value[0];
  }
  return out;
}

function traceResponse(settings: Record<string, string | string[]>): { settings: Record<string, { value: string[] }> } {
  const out: Record<string, { value: string[] }> = {};
  for (const [key, value] of Object.entries(settings)) out[key] = { value: Array.isArray(value) ? value : [value] };
  return { settings: out };
}

/** The three RPCs, to spread into the service's handlers; each adds nothing to the extensions REST has not (the same set). */
export function extensionHandlers(
  front: InferenceFront,
  traceSwitch: TraceSwitch | undefined,
): UntypedServiceImplementation {
  return {
    ModelConfig: rpc((request: { name?: string; version?: string }) => ({
      config: modelConfig(front.serving(request.name ?? '', request.version)),
    })),
    LogSettings: rpc((request: { settings?: Record<string, LogValue> }) =>
      logResponse({ ...updateLogSettings(logRequest(request.settings)) }),
    ),
    TraceSetting: rpc((request: { settings?: Record<string, { value?: string[] }>; model_name?: string }) =>
      traceResponse({ ...traceSettings(front, traceSwitch, request.model_name, traceRequest(request.settings)) }),
    ),
  };
}
