import { type LogFormat, type LogSettings, type ServerLog, serverLog } from '../log.js';
import { invalidArgument } from './errors.js';

/**
 * Triton's logging extension: `GET/POST /v2/logging` and gRPC `LogSettings` read and change what
 * the running server logs (log.ts). A request is checked whole before anything changes, so a bad
 * field changes nothing (Triton applies the fields before the bad one); settings sent as null are
 * left as they are. Error texts are Triton's where its clients and tests match them.
 */

const FLAGS = ['log_info', 'log_warning', 'log_error'] as const;
const SETTINGS = ['log_file', ...FLAGS, 'log_verbose_level', 'log_format'];
const FORMATS: readonly LogFormat[] = ['default', 'ISO8601'];
/** Triton keeps the level in an int32. */
const MAX_VERBOSE_LEVEL = 2 ** 31 - 1;

const shown = (value: unknown): string => JSON.stringify(value)?.slice(0, 40) ?? String(value);

/** Checks a settings object (REST's JSON body, gRPC's map as plain values) and applies it; answers the settings now in force. */
export function updateLogSettings(request: unknown, log: ServerLog = serverLog): LogSettings {
  if (request === undefined || request === null) return log.settings;
  if (typeof request !== 'object' || Array.isArray(request))
    throw invalidArgument(`The log settings must be a JSON object, got ${shown(request)}`);
  const changes: Partial<Omit<LogSettings, 'log_file'>> = {};
  for (const [key, value] of Object.entries(request)) {
    if (!SETTINGS.includes(key))
      throw invalidArgument(
        `Unknown log setting '${key.slice(0, 100)}'; the settings are ${SETTINGS.map((s) => `'${s}'`).join(', ')}`,
      );
    if (value === null || value === undefined) continue;
    if (key === 'log_file') throw invalidArgument('log file location can not be updated through network protocol');
    if ((FLAGS as readonly string[]).includes(key)) {
      if (typeof value !== 'boolean') throw invalidArgument(`expect boolean for '${key}', got ${shown(value)}`);
      changes[key as (typeof FLAGS)[number]] = value;
    } else if (key === 'log_verbose_level') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_VERBOSE_LEVEL) {
        throw invalidArgument(
          `expect an integer from 0 to ${MAX_VERBOSE_LEVEL} for 'log_verbose_level', got ${shown(value)}`,
        );
      }
      changes.log_verbose_level = value;
    } else {
      if (typeof value !== 'string') throw invalidArgument(`expect string for 'log_format', got ${shown(value)}`);
      if (!(FORMATS as readonly string[]).includes(value))
        throw invalidArgument(`invalid argument for log_format, got: ${value.slice(0, 100)}`);
      changes.log_format = value as LogFormat;
    }
  }
  return log.update(changes);
}
