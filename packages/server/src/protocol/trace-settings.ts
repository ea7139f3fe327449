import {
  TRACE_LEVELS,
  type TraceChange,
  type TraceLevel,
  type TraceSettingsView,
  type TraceSwitch,
} from './trace-switch.js';
import { invalidArgument, ProtocolError } from './errors.js';
import type { InferenceFront } from './infer-front.js';
import { clip } from './status.js';

/**
 * Triton's trace extension: `GET/POST /v2[/models/{m}]/trace/setting` and gRPC `TraceSetting` read
 * and change what `--otel` traces (trace-switch.ts). Values are strings (or a list of them
 * for `trace_level`), as Triton's are; a request is checked whole before anything changes; null
 * clears a setting (a model's follows the global one again, the global one returns to its start).
 * Without `--otel` there is nothing to drive: every call is refused (REST 400, gRPC
 * FAILED_PRECONDITION), and `trace` is not among the server's extensions.
 */

/** Tracing is off on this server: REST 400, gRPC FAILED_PRECONDITION (its status, failed-precondition). */
export class TracingOffError extends ProtocolError {
  override name = 'TracingOffError';
  readonly code = 'ERR_TRACING_OFF';

  constructor() {
    super(
      'failed-precondition',
      'Tracing is off on this server: start it with --otel to trace requests (OpenTelemetry over OTLP/HTTP); the trace settings drive that tracing',
    );
  }
}

const SETTINGS = ['trace_file', 'trace_level', 'trace_rate', 'trace_count', 'log_frequency', 'trace_mode'];
const MAX_RATE = 2 ** 32 - 1;
const MAX_COUNT = 2 ** 31 - 1;

const shown = (value: unknown): string => JSON.stringify(value)?.slice(0, 60) ?? String(value);

/** A decimal integer as Triton's settings carry it (a string; a JSON number is taken too), within [min, max]. */
function integerSetting(key: string, value: unknown, min: number, max: number): number {
  const text = typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^-?[0-9]{1,12}$/.test(text))
    throw invalidArgument(`Unable to parse '${key}', got: ${typeof value === 'string' ? clip(value) : shown(value)}`);
  const n = Number(text);
  if (n < min || n > max)
    throw invalidArgument(`Unable to parse '${key}', value is out of range [ ${min}, ${max} ], got: ${text}`);
  return n;
}

function levels(value: unknown): TraceLevel[] {
  if (!Array.isArray(value) || value.length === 0 || !value.every((v) => typeof v === 'string')) {
    throw invalidArgument(
      `expect a non-empty array of trace levels (${TRACE_LEVELS.map((l) => `'${l}'`).join(', ')}) for 'trace_level', got ${shown(value)}`,
    );
  }
  for (const level of value as string[])
    if (!(TRACE_LEVELS as readonly string[]).includes(level))
      throw invalidArgument(
        `Unknown trace level '${clip(level)}'; the levels are ${TRACE_LEVELS.map((l) => `'${l}'`).join(', ')}`,
      );
  if (value.includes('OFF') && value.length > 1)
    throw invalidArgument("Expect only one trace level 'OFF' is specified");
  return [...new Set(value as TraceLevel[])];
}

/** Checks a settings object (REST's body; gRPC's map, a list of strings per key, or null to clear). */
export function traceChange(request: unknown): TraceChange {
  if (request === undefined || request === null) return {};
  if (typeof request !== 'object' || Array.isArray(request))
    throw invalidArgument(`The trace settings must be a JSON object, got ${shown(request)}`);
  const change: TraceChange = {};
  for (const [key, value] of Object.entries(request)) {
    if (!SETTINGS.includes(key))
      throw invalidArgument(
        `Unknown trace setting '${clip(key)}'; the settings are ${SETTINGS.map((s) => `'${s}'`).join(', ')}`,
      );
    if (key === 'trace_file' && value !== null)
      throw invalidArgument('trace file location can not be updated through network protocol');
    if (value === null || value === undefined) {
      if (key === 'trace_level') change.level = null;
      else if (key === 'trace_rate') change.rate = null;
      else if (key === 'trace_count') change.count = null;
      continue;
    }
    if (key === 'log_frequency')
      throw invalidArgument(
        "'log_frequency' is not used here: traces go to the OpenTelemetry collector (trace_mode opentelemetry), not to files",
      );
    if (key === 'trace_mode')
      throw invalidArgument(
        "'trace_mode' can not be updated through network protocol: it is opentelemetry, with --otel",
      );
    if (key === 'trace_level') change.level = levels(value);
    else if (key === 'trace_rate') change.rate = integerSetting(key, value, 0, MAX_RATE);
    else change.count = integerSetting(key, value, -1, MAX_COUNT);
  }
  return change;
}

/**
 * The settings of `model` (or the global ones when it is undefined or empty), changed by
 * `request` first when one is given. A model must be one the server has READY, as Triton asks.
 */
export function traceSettings(
  front: InferenceFront,
  traceSwitch: TraceSwitch | undefined,
  model: string | undefined,
  request?: unknown,
): TraceSettingsView {
  if (traceSwitch === undefined) throw new TracingOffError();
  const name = model === '' ? undefined : model;
  // Triton's own text, which its clients and tests match.
  if (name !== undefined && front.registry.get(name)?.state !== 'READY')
    throw invalidArgument(`Request for unknown model : ${clip(name)}`);
  const change = traceChange(request);
  return Object.keys(change).length === 0 ? traceSwitch.view(name) : traceSwitch.update(name, change);
}
