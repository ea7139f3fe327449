import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SETTINGS, type SettingName, type SettingSpec, shownDefault } from '../settings/settings.js';
import { type OldName, warnDeprecated } from '../settings/deprecated.js';
import type { FlagRow } from './flag-row.js';
import { delayFlag, durationFlag, intFlag, listFlag, stringFlag, UsageError } from './cli-args.js';

/**
 * Every flag of `batched-fn serve` and `batched-fn worker`: which setting it sets (its name, default,
 * rule and README row are the setting's, settings/settings.ts), how its text is parsed and checked,
 * and for which command. The parser, the usage text and (by a test) the README's flag table come
 * from here.
 */
type Kind =
  | 'string'
  | 'strings'
  | 'control'
  | 'batching'
  | 'onoff'
  | 'int0'
  | 'int1'
  | 'duration'
  | 'positive-duration'
  | 'delay'
  | 'list'
  | 'boolean'
  | 'shm';
export type Command = 'serve' | 'worker';

interface FlagSpec {
  /** The setting it sets (its camelCase name is the option's; the flag is its kebab-case). */
  readonly key: SettingName;
  readonly kind: Kind;
  /** What the flag takes, for usage and README (`N`, `MS`, `FILE`...); empty for a switch. */
  readonly arg: string;
  readonly commands: readonly Command[];
  /** An old name of the setting's flag: still read, with one warning, and left out of usage and README. */
  readonly deprecated?: OldName;
  /** `--help`'s text where the setting has no README row (`doc`), or where this command's meaning differs. */
  readonly help?: string;
}

const BOTH: readonly Command[] = ['serve', 'worker'];

export const FLAGS = {
  model: { key: 'model', kind: 'strings', arg: 'FILE', commands: ['serve'] },
  'model-repository': { key: 'modelRepository', kind: 'string', arg: 'DIR', commands: ['serve'] },
  'model-control': { key: 'modelControl', kind: 'control', arg: 'none\\|explicit', commands: ['serve'] },
  'load-model': { key: 'loadModel', kind: 'strings', arg: 'NAME', commands: ['serve'] },
  'worker-model': {
    key: 'model',
    kind: 'string',
    arg: 'FILE',
    commands: ['worker'],
    help: 'ONNX model this worker runs',
  },
  name: { key: 'name', kind: 'string', arg: 'NAME', commands: BOTH },
  host: { key: 'host', kind: 'string', arg: 'HOST', commands: ['serve'] },
  port: { key: 'port', kind: 'int0', arg: 'PORT', commands: ['serve'] },
  'grpc-port': { key: 'grpcPort', kind: 'int0', arg: 'PORT', commands: ['serve'] },
  'no-grpc': { key: 'noGrpc', kind: 'boolean', arg: '', commands: ['serve'] },
  'grpc-max-streams': { key: 'grpcMaxStreams', kind: 'int1', arg: 'N', commands: ['serve'] },
  'grpc-receive-timeout': { key: 'grpcReceiveTimeout', kind: 'positive-duration', arg: 'MS', commands: ['serve'] },
  'grpc-restricted-protocol': {
    key: 'grpcRestrictedProtocol',
    kind: 'strings',
    arg: 'PROTOCOLS:KEY=VALUE',
    commands: ['serve'],
  },
  otel: { key: 'otel', kind: 'boolean', arg: '', commands: BOTH },
  dashboard: { key: 'dashboard', kind: 'onoff', arg: 'on\\|off', commands: ['serve'] },
  openai: { key: 'openai', kind: 'onoff', arg: 'on\\|off', commands: ['serve'] },
  'max-batch-size': { key: 'maxBatchSize', kind: 'int1', arg: 'N', commands: BOTH },
  'max-delay': { key: 'maxDelay', kind: 'delay', arg: 'MS\\|auto', commands: BOTH },
  'latency-target': { key: 'latencyTarget', kind: 'positive-duration', arg: 'MS', commands: ['serve'] },
  'preferred-batch-sizes': { key: 'preferredBatchSizes', kind: 'list', arg: 'N,N', commands: ['serve'] },
  pad: { key: 'pad', kind: 'boolean', arg: '', commands: ['serve'] },
  'channel-cap': { key: 'channelCap', kind: 'int1', arg: 'N', commands: ['serve'] },
  'queue-cap': { key: 'channelCap', kind: 'int1', arg: 'N', commands: ['serve'], deprecated: 'queueCap' },
  workers: { key: 'workers', kind: 'int1', arg: 'N', commands: BOTH },
  threads: { key: 'threads', kind: 'int1', arg: 'N', commands: BOTH },
  timeout: { key: 'timeout', kind: 'duration', arg: 'MS', commands: ['serve'] },
  'batch-timeout': { key: 'batchTimeout', kind: 'positive-duration', arg: 'MS', commands: BOTH },
  'max-active': { key: 'maxActive', kind: 'int1', arg: 'N', commands: ['serve'] },
  'prefill-chunk': { key: 'prefillChunk', kind: 'int1', arg: 'N', commands: ['serve'] },
  batching: { key: 'batching', kind: 'batching', arg: 'continuous\\|static', commands: ['serve'] },
  'body-limit': { key: 'bodyLimit', kind: 'int1', arg: 'BYTES', commands: ['serve'] },
  cors: { key: 'cors', kind: 'strings', arg: 'ORIGIN', commands: ['serve'] },
  'http-restricted-api': { key: 'httpRestrictedApi', kind: 'strings', arg: 'APIS:KEY=VALUE', commands: ['serve'] },
  'max-bytes-elements': { key: 'maxBytesElements', kind: 'int1', arg: 'N', commands: ['serve'] },
  'max-tensors': { key: 'maxTensors', kind: 'int1', arg: 'N', commands: ['serve'] },
  'max-objects': { key: 'maxObjects', kind: 'int1', arg: 'N', commands: ['serve'] },
  'shared-memory': { key: 'sharedMemory', kind: 'shm', arg: 'off\\|system', commands: ['serve'] },
  'shared-memory-regions': { key: 'sharedMemoryRegions', kind: 'int1', arg: 'N', commands: ['serve'] },
  'cache-dir': {
    key: 'cacheDir',
    kind: 'string',
    arg: 'DIR',
    commands: BOTH,
    help: 'where the generated default model is kept',
  },
  redis: {
    key: 'redis',
    kind: 'string',
    arg: 'redis://HOST:PORT',
    commands: BOTH,
    help: 'serve: send batches to remote workers through Redis; worker: the Redis to read them from (rediss:// for TLS)',
  },
  prefix: { key: 'prefix', kind: 'string', arg: 'PREFIX', commands: BOTH, help: "prefix of the Redis streams' keys" },
  'claim-idle': {
    key: 'claimIdleMs',
    kind: 'positive-duration',
    arg: 'MS',
    commands: ['worker'],
    help: "how long another worker's unacknowledged batch may sit before this worker takes it over",
  },
} as const satisfies Record<string, FlagSpec>;

type FlagName = keyof typeof FLAGS;

/** `worker-model` is `--model` of the worker command (one file there); every other flag is its own name. */
const cliName = (flag: string): string => (flag === 'worker-model' ? 'model' : flag);

/** `channelCap` → `channel-cap`. */
const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

const flagsOf = (command: Command): [FlagName, FlagSpec][] =>
  (Object.entries(FLAGS) as [FlagName, FlagSpec][]).filter(([, spec]) => spec.commands.includes(command));

function parseOne(values: Record<string, unknown>, flag: string, kind: Kind): unknown {
  switch (kind) {
    case 'string':
      return stringFlag(values, flag);
    case 'strings': {
      const list = values[flag] as string[] | undefined;
      return list === undefined || list.length === 0 ? undefined : list.length === 1 ? list[0] : list;
    }
    case 'batching': {
      const value = stringFlag(values, flag);
      if (value !== undefined && value !== 'continuous' && value !== 'static')
        throw new UsageError(`--${flag} must be continuous or static, got ${JSON.stringify(value)}`);
      return value;
    }
    case 'onoff': {
      const value = stringFlag(values, flag);
      if (value !== undefined && value !== 'on' && value !== 'off')
        throw new UsageError(`--${flag} must be on or off, got ${JSON.stringify(value)}`);
      return value;
    }
    case 'shm': {
      const value = stringFlag(values, flag);
      if (value !== undefined && value !== 'off' && value !== 'system')
        throw new UsageError(`--${flag} must be off or system, got ${JSON.stringify(value)}`);
      return value;
    }
    case 'control': {
      const value = stringFlag(values, flag);
      if (value !== undefined && value !== 'none' && value !== 'explicit')
        throw new UsageError(`--${flag} must be none or explicit, got ${JSON.stringify(value)}`);
      return value;
    }
    case 'int0':
      return intFlag(values, flag, 0);
    case 'int1':
      return intFlag(values, flag, 1);
    case 'duration':
      return durationFlag(values, flag);
    case 'positive-duration':
      return durationFlag(values, flag, true);
    case 'delay':
      return delayFlag(values, flag);
    case 'list':
      return listFlag(values, flag);
    case 'boolean':
      return values[flag] === true ? true : undefined;
  }
}

/** Parses and checks a command's flags into its options (camelCase); absent flags are left out. Usage errors throw. */
export function parseFlags(command: Command, argv: string[]): Record<string, unknown> {
  const specs = flagsOf(command);
  const options: ParseArgsConfig['options'] = Object.fromEntries(
    specs.map(([flag, spec]) => [
      cliName(flag),
      {
        type: spec.kind === 'boolean' ? ('boolean' as const) : ('string' as const),
        ...(spec.kind === 'strings' ? { multiple: true } : {}),
      },
    ]),
  );
  const { values } = parseArgs({ args: argv, options, strict: true });
  const parsed: Record<string, unknown> = {};
  for (const [flag, spec] of specs) {
    const value = parseOne(values, cliName(flag), spec.kind);
    const max = (SETTINGS[spec.key] as SettingSpec).max;
    if (typeof value === 'number' && max !== undefined && value > max)
      throw new UsageError(`--${cliName(flag)} must be at most ${max}, got ${JSON.stringify(values[cliName(flag)])}`);
    if (value === undefined) continue;
    if (spec.key in parsed) throw new UsageError(`Give --${kebab(spec.key)} or its old name --${flag}, not both`);
    if (spec.deprecated !== undefined) warnDeprecated(spec.deprecated, `--${flag}`);
    parsed[spec.key] = value;
  }
  return parsed;
}

/** The command's flags for the usage text, wrapped to the width of a terminal. */
export function usageFlags(command: Command, indent: string, shownAlready: readonly string[] = []): string {
  const words = flagsOf(command)
    .filter(([flag, spec]) => !shownAlready.includes(flag) && spec.deprecated === undefined)
    .map(([flag, spec]) => `[--${cliName(flag)}${spec.arg === '' ? '' : ` ${spec.arg.replace('\\|', '|')}`}]`);
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line.length + word.length > 100 - indent.length) {
      lines.push(line.trimEnd());
      line = '';
    }
    line += `${word} `;
  }
  lines.push(line.trimEnd());
  return lines.join(`\n${indent}`);
}

/** The command's flags for `--help` and its environment variables, from the flag and setting rows. */
export function flagRows(command: Command): FlagRow[] {
  return flagsOf(command).map(([flag, spec]) => ({
    flag: cliName(flag),
    arg: spec.arg.replace('\\|', '|'),
    doc: spec.help ?? (SETTINGS[spec.key] as SettingSpec).doc ?? '',
    shown: shownDefault(spec.key).replace(/`/g, ''),
    ...(spec.kind === 'strings' ? { multiple: true } : {}),
    ...(spec.deprecated === undefined ? {} : { deprecated: true }),
  }));
}

/** The README's `serve` flag table rows, from the flags that carry a meaning. */
export function readmeRows(): string[] {
  return flagsOf('serve').flatMap(([flag, spec]) => {
    const doc = (SETTINGS[spec.key] as SettingSpec).doc;
    if (doc === undefined || spec.deprecated !== undefined) return [];
    return [`| \`--${flag}${spec.arg === '' ? '' : ` ${spec.arg}`}\` | ${shownDefault(spec.key)} | ${doc} |`];
  });
}
