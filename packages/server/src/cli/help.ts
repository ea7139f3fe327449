import { SERVER_VERSION } from '../protocol/infer-front.js';
import { envName, type FlagRow } from './flag-row.js';
import { flagRows, usageFlags } from './flags.js';
import { type Tool, toolRows } from './tool-flags.js';

/**
 * What the CLI says about itself: the usage, `--help` of each command (every flag with its
 * meaning, default and variable, from the commands' one flag tables) and `--version`.
 */
export const COMMANDS = {
  serve: 'serve models over KServe v2 REST and gRPC, with dynamic batching',
  worker: 'run a model for servers that queue their requests in Redis (no HTTP)',
  bench: 'load a running server and measure throughput and latency',
  tune: "measure a model's server settings and recommend the best within a latency budget",
  demo: 'the default model served batched and unbatched, side by side, with a chart',
} as const;
export type CommandName = keyof typeof COMMANDS;

export const isCommand = (name: string): name is CommandName => Object.hasOwn(COMMANDS, name);

/** Each command's synopsis; `--help` adds every flag's meaning. */
const SYNOPSES: Record<CommandName, string> = {
  serve: `  batched-fn serve ${usageFlags('serve', '                   ')}\n`,
  worker:
    '  batched-fn worker --redis redis://HOST:PORT\n' +
    `                   ${usageFlags('worker', '                   ', ['redis'])}\n`,
  bench:
    '  batched-fn bench --url http://127.0.0.1:8000 [--model NAME] [--concurrency 1,8,32,64,128] [--duration 10]\n' +
    '                   [--rows 1] [--compare URL] [--out DIR] [--binary | --grpc [--grpc-url HOST:PORT]]\n' +
    '  batched-fn bench --generate --url http://127.0.0.1:8000 [--model charlm] [--streams 32] [--duration 10]\n',
  tune:
    '  batched-fn tune [--model FILE | --model-repository DIR --name NAME] [--latency-budget 100]\n' +
    '                  [--concurrency 1,8,32,64] [--duration 5] [--out tune-out] [--max-candidates 24] [--max-windows 6]\n',
  demo: '  batched-fn demo [--duration 5] [--concurrency 1,8,32,64,128] [--out bench-out]\n',
};

/** The usage of one command, or of all. */
export const usage = (command?: CommandName): string =>
  `Usage:\n${command === undefined ? Object.values(SYNOPSES).join('') : SYNOPSES[command]}`;

/** Where every flag's meaning is. */
export const HELP_HINT =
  'Run `batched-fn <command> --help` for every flag, its default and its environment variable.\n';

/** A command's flags, as its flag table declares them. */
export function rowsOf(command: CommandName): FlagRow[] {
  return command === 'serve' || command === 'worker' ? flagRows(command) : toolRows(command as Tool);
}

export function overviewHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  return (
    `batched-fn ${version()}: dynamic batching for model serving\n\n` +
    `Commands:\n${Object.entries(COMMANDS)
      .map(([name, what]) => `  ${name.padEnd(width)}  ${what}\n`)
      .join('')}\n${usage()}\n` +
    'Every flag can also be set as the environment variable BATCHED_FN_<FLAG> (--max-batch-size is\n' +
    'BATCHED_FN_MAX_BATCH_SIZE); a flag on the command line wins over its variable.\n' +
    HELP_HINT
  );
}

/** `batched-fn <command> --help`: each flag, what it means, its default and its variable. */
export function commandHelp(command: CommandName): string {
  const rows = rowsOf(command).filter((row) => row.deprecated !== true);
  const lines = [`batched-fn ${command}: ${COMMANDS[command]}`, '', usage(command)];
  lines.push('Flags (each also an environment variable; the flag wins over the variable):');
  for (const row of rows) {
    lines.push(`  --${row.flag}${row.arg === '' ? '' : ` ${row.arg}`}`);
    // The README's backticks mean code there; on a terminal they are noise.
    for (const line of wrap(row.doc.replace(/`/g, ''), 94)) lines.push(`      ${line}`);
    const repeat = row.multiple === true ? ' (repeat the flag for several; the variable holds one)' : '';
    lines.push(`      default: ${row.shown}   env: ${envName(row.flag)}${repeat}`);
  }
  return `${lines.join('\n')}\n`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter((w) => w !== '')) {
    if (line !== '' && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line === '' ? word : `${line} ${word}`;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** The package's version (package.json's, read once by the protocol layer). */
export const version = (): string => SERVER_VERSION;
