import { envName, type FlagRow } from './flag-row.js';
import { UsageError } from './cli-args.js';

/**
 * Every flag can also be set as an environment variable, `BATCHED_FN_<FLAG>` (containers set
 * variables more easily than arguments). A variable becomes its flag in front of the command line,
 * so it is parsed and checked by the very code that checks the flag; a flag given on the command
 * line wins, and its variable is then not read at all. An error about a flag that came from a
 * variable names the variable (nameVariables).
 */
export interface EnvFlags {
  /** The command line with the variables' flags in front. */
  readonly argv: string[];
  /** The flags that came from a variable, and its name: `port` → `BATCHED_FN_PORT`. */
  readonly fromEnv: ReadonlyMap<string, string>;
}

const ON = new Set(['1', 'true', 'yes', 'on']);
const OFF = new Set(['0', 'false', 'no', 'off']);

export function withEnvFlags(
  rows: readonly FlagRow[],
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): EnvFlags {
  const front: string[] = [];
  const fromEnv = new Map<string, string>();
  // Only what comes before `--` is a flag.
  const end = argv.indexOf('--');
  const given = (end === -1 ? argv : argv.slice(0, end)).map((word) => word.split('=')[0]);
  for (const row of rows) {
    const variable = envName(row.flag);
    const value = env[variable];
    // An empty variable is an unset one (`-e BATCHED_FN_PORT=` in a compose file).
    if (row.deprecated === true || value === undefined || value === '' || given.includes(`--${row.flag}`)) continue;
    if (row.arg === '') {
      const word = value.trim().toLowerCase();
      if (!ON.has(word) && !OFF.has(word))
        throw new UsageError(`${variable} must be 1, true, yes, on, 0, false, no or off, got ${JSON.stringify(value)}`);
      if (ON.has(word)) front.push(`--${row.flag}`);
    } else {
      front.push(`--${row.flag}=${value}`);
    }
    fromEnv.set(row.flag, variable);
  }
  return { argv: [...front, ...argv], fromEnv };
}

/** A usage error's text with each flag that came from a variable named by its variable. */
export function nameVariables(message: string, fromEnv: ReadonlyMap<string, string>): string {
  let named = message;
  for (const [flag, variable] of fromEnv)
    named = named.replace(new RegExp(`--${flag}(?![a-z0-9-])`, 'g'), () => variable);
  return named;
}

/**
 * The environment without any `BATCHED_FN_<FLAG>` variable of `rows`: for the servers a tool
 * starts with flags of its own (tune's candidates, the demo's), which a user's variables must not
 * change behind its back.
 */
export function withoutFlagVariables(
  rows: readonly FlagRow[],
  env: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const names = new Set(rows.map((row) => envName(row.flag)));
  return Object.fromEntries(Object.entries(env).filter(([name]) => !names.has(name)));
}
