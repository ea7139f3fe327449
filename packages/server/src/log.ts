/**
 * The server's log: what it says about itself on stderr, under the settings Triton's logging
 * extension changes at run time (`GET/POST /v2/logging`, gRPC `LogSettings`, protocol/log-settings.ts).
 *
 * - INFO: models loaded, reloaded and unloaded.
 * - WARNING: a reload that failed while the old instance keeps serving.
 * - ERROR: a load that failed (the model is UNAVAILABLE), and every REST answer the server failed (a 500).
 * - VERBOSE 1: one line per REST request (method, path, status, time).
 *
 * Lines are Triton's, so its log tooling reads them: `default` is
 * `I1202 19:01:12.123456 4242 registry:0] "message"`, `ISO8601` is
 * `2026-12-02T19:01:12Z I 4242 registry:0] "message"`: level letter, time, pid, the component
 * that spoke (with line 0: there is no C++ source line to name), and the message JSON-escaped, as
 * Triton escapes its own. Verbose lines are INFO lines, shown by the verbose level alone.
 *
 * One log per process, as Triton's: settings changed through one server hold for every server
 * the process runs.
 */

export type LogFormat = 'default' | 'ISO8601';

/** Triton's log settings, under their wire names. `log_file` is always '' (stderr): it cannot be changed over the network. */
export interface LogSettings {
  log_file: string;
  log_info: boolean;
  log_warning: boolean;
  log_error: boolean;
  log_verbose_level: number;
  log_format: LogFormat;
}

/** As Triton starts: INFO, WARNING and ERROR on, verbose off, the default format. */
export const DEFAULT_LOG_SETTINGS: Readonly<LogSettings> = Object.freeze({
  log_file: '',
  log_info: true,
  log_warning: true,
  log_error: true,
  log_verbose_level: 0,
  log_format: 'default',
});

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** One line in Triton's format; `at` in epoch ms with sub-ms precision. */
export function formatLine(
  format: LogFormat,
  level: 'I' | 'W' | 'E',
  component: string,
  message: string,
  at: number,
  pid = process.pid,
): string {
  const date = new Date(Math.floor(at));
  const text = JSON.stringify(message);
  if (format === 'ISO8601') return `${date.toISOString().slice(0, 19)}Z ${level} ${pid} ${component}:0] ${text}\n`;
  const micros = Math.floor((at % 1000) * 1000);
  // UTC, as Triton's (gmtime) is.
  const time = `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())}.${pad(micros, 6)}`;
  return `${level}${pad(date.getUTCMonth() + 1)}${pad(date.getUTCDate())} ${time} ${pid} ${component}:0] ${text}\n`;
}

export class ServerLog {
  #settings: LogSettings = { ...DEFAULT_LOG_SETTINGS };
  /** Where lines go: stderr, or a test's collector. */
  write: (line: string) => void;

  constructor(write: (line: string) => void = (line) => void process.stderr.write(line)) {
    this.write = write;
  }

  get settings(): LogSettings {
    return { ...this.#settings };
  }

  /** Applies already-checked settings (log-settings.ts checks them, all before any applies). */
  update(changes: Partial<Omit<LogSettings, 'log_file'>>): LogSettings {
    Object.assign(this.#settings, changes);
    return this.settings;
  }

  /** Back to DEFAULT_LOG_SETTINGS. */
  reset(): void {
    this.#settings = { ...DEFAULT_LOG_SETTINGS };
  }

  info(component: string, message: string): void {
    if (this.#settings.log_info) this.#line('I', component, message);
  }

  warning(component: string, message: string): void {
    if (this.#settings.log_warning) this.#line('W', component, message);
  }

  error(component: string, message: string): void {
    if (this.#settings.log_error) this.#line('E', component, message);
  }

  /** Whether verbose messages of `level` are on: test it before building an expensive message. */
  verboseOn(level: number): boolean {
    return level >= 1 && this.#settings.log_verbose_level >= level;
  }

  verbose(level: number, component: string, message: string): void {
    if (this.verboseOn(level)) this.#line('I', component, message);
  }

  #line(level: 'I' | 'W' | 'E', component: string, message: string): void {
    try {
      this.write(
        formatLine(this.#settings.log_format, level, component, message, performance.timeOrigin + performance.now()),
      );
    } catch {
      // A log that cannot be written (stderr closed) must never fail the request that logged.
    }
  }
}

/** The process's log. */
export const serverLog = new ServerLog();
