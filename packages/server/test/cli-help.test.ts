import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { flagRows } from '../dist/cli/flags.js';
import { toolRows } from '../dist/cli/tool-flags.js';
import { killRunning, run } from './cli-run.js';
import { TEST_CACHE } from './helpers.js';

// The CLI explains itself: help from the one flag schema, did-you-mean, BATCHED_FN_ variables.
afterEach(killRunning);

const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string })
  .version;

test('--help, -h and help print the commands and exit 0; --version prints the version', async () => {
  for (const args of [['--help'], ['-h'], ['help'], []]) {
    const help = run(args);
    expect(await help.exit).toBe(0);
    expect(help.output()).toContain(`batched-fn ${version}: dynamic batching for model serving\n\nCommands:\n  serve `);
    for (const command of ['serve', 'worker', 'bench', 'tune', 'demo'])
      expect(help.output()).toContain(`\n  batched-fn ${command} `);
    expect(help.output()).toContain('BATCHED_FN_MAX_BATCH_SIZE');
  }
  const shown = run(['--version']);
  expect(await shown.exit).toBe(0);
  expect(shown.output()).toBe(`${version}\n`);
});

test('<command> --help lists every flag with its meaning, default and variable, from the flag tables', async () => {
  const serve = run(['serve', '--help']);
  expect(await serve.exit).toBe(0);
  const text = serve.output();
  // Its meaning (the setting's doc, wrapped), then its default and variable.
  expect(text).toMatch(
    /\n {2}--max-batch-size N\n {6}most rows per session\.run, [^`]*?\n {6}default: 64 {3}env: BATCHED_FN_MAX_BATCH_SIZE\n/,
  );
  expect(text).toContain('  --body-limit BYTES\n');
  expect(text).toContain('      default: 64 MiB   env: BATCHED_FN_BODY_LIMIT\n');
  expect(text).toContain('  --no-grpc\n      serve REST only\n      default: off   env: BATCHED_FN_NO_GRPC\n');
  // Every flag of the schema, and none of its old names.
  for (const row of flagRows('serve')) {
    if (row.deprecated === true) expect(text).not.toContain(`\n  --${row.flag}`);
    else expect(text).toContain(`\n  --${row.flag}${row.arg === '' ? '' : ` ${row.arg}`}\n`);
  }
  for (const command of ['worker', 'bench', 'tune', 'demo'] as const) {
    const help = run([command, '-h']);
    expect(await help.exit).toBe(0);
    const rows = command === 'worker' ? flagRows('worker') : toolRows(command);
    expect(rows.length).toBeGreaterThan(3);
    for (const row of rows)
      expect(help.output()).toContain(`env: BATCHED_FN_${row.flag.replace(/-/g, '_').toUpperCase()}`);
  }
  const bench = run(['bench', '--help']);
  expect(await bench.exit).toBe(0);
  expect(bench.output()).toContain(
    '  --duration S\n      seconds per run\n      default: 10   env: BATCHED_FN_DURATION\n',
  );
});

test('an unknown flag or command suggests the closest, exit 2', async () => {
  const flag = run(['serve', '--max-batch', '4']);
  expect(await flag.exit).toBe(2);
  expect(flag.output()).toMatch(
    /^Unknown option '--max-batch'\. Did you mean --max-batch-size\?\n\nUsage:\n {2}batched-fn serve /,
  );
  expect(flag.output()).toContain('Run `batched-fn <command> --help` for every flag');
  const typo = run(['serve', '--prot', '0']);
  expect(await typo.exit).toBe(2);
  expect(typo.output()).toMatch(/^Unknown option '--prot'\. Did you mean --port\?\n/);
  const tune = run(['tune', '--max-window', '3']);
  expect(await tune.exit).toBe(2);
  expect(tune.output()).toMatch(/^Unknown option '--max-window'\. Did you mean --max-windows\?\n/);
  const far = run(['serve', '--frobnicate']);
  expect(await far.exit).toBe(2);
  expect(far.output()).toMatch(/^Unknown option '--frobnicate'\.\n/);
  const command = run(['serv']);
  expect(await command.exit).toBe(2);
  expect(command.output()).toMatch(/^Unknown command `serv`\. Did you mean serve\?\n/);
});

test('BATCHED_FN_<FLAG> sets a flag, checked as the flag is; a bad value is one line naming it, exit 2', async () => {
  const cases: [Record<string, string>, string][] = [
    [{ BATCHED_FN_MAX_BATCH_SIZE: '0' }, 'BATCHED_FN_MAX_BATCH_SIZE must be an integer from 1 and up, got "0"\n'],
    [
      { BATCHED_FN_MAX_DELAY: 'soon' },
      'BATCHED_FN_MAX_DELAY must be a number of milliseconds from 0 to 2147483647, got "soon"\n',
    ],
    [{ BATCHED_FN_DASHBOARD: 'maybe' }, 'BATCHED_FN_DASHBOARD must be on or off, got "maybe"\n'],
    [
      { BATCHED_FN_NO_GRPC: 'maybe' },
      'BATCHED_FN_NO_GRPC must be 1, true, yes, on, 0, false, no or off, got "maybe"\n',
    ],
    [{ BATCHED_FN_NO_GRPC: '1' }, 'Give --grpc-port or BATCHED_FN_NO_GRPC, not both\n'],
  ];
  for (const [env, line] of cases) {
    const bad = run(['serve', '--grpc-port', '0'], env);
    expect(await bad.exit).toBe(2);
    expect(bad.output()).toBe(line);
  }
  // The tools read theirs the same way.
  const bench = run(['bench'], { BATCHED_FN_URL: 'http://127.0.0.1:1', BATCHED_FN_ROWS: '0' });
  expect(await bench.exit).toBe(2);
  expect(bench.output()).toBe('BATCHED_FN_ROWS must be an integer from 1 and up, got "0"\n');
});

test('the variables start a server; a flag on the command line wins over its variable', async () => {
  const server = run(['serve', '--cache-dir', TEST_CACHE, '--max-batch-size', '8'], {
    BATCHED_FN_PORT: '0',
    BATCHED_FN_NO_GRPC: 'true',
    BATCHED_FN_MAX_BATCH_SIZE: '0', // bad, but the flag is given: never read
    BATCHED_FN_MAX_DELAY: '3',
    BATCHED_FN_HOST: '',
  });
  const url = await server.url;
  expect(server.output()).toContain(`batched-fn serving `);
  // Alone on its line (`serving model "mlp" on URL (...)`) or in the list of several models.
  expect(server.output()).toMatch(/model "mlp"(?: on \S+ \(|: )max batch 8, max delay 3 ms, /);
  expect(server.output()).toContain(url);
  expect(server.output()).not.toContain('gRPC:');
  server.child.kill('SIGTERM');
  expect(await server.exit).toBe(0);
});

test('a REST port in use names its flag, as the gRPC one does: one line, exit 2', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as { port: number }).port;
  try {
    const second = run(['serve', '--cache-dir', TEST_CACHE, '--port', String(port), '--no-grpc']);
    expect(await second.exit).toBe(2);
    expect(second.output()).toBe(
      `Cannot start: --port ${port} is in use on 127.0.0.1 (give another port, or 0 for a free one)\n`,
    );
  } finally {
    taken.close();
  }
});
