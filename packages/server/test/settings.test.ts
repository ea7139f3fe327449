import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS } from 'batched-fn';
import { OPTION_SCHEMA } from 'batched-fn/adapter';
import { SERVE_DEFAULTS, SERVER_DEFAULTS } from '@batched-fn/server';
import { expect, test } from 'vitest';
import { FLAGS, parseFlags } from '../dist/cli/flags.js';
import { readModelConfig } from '../dist/repository/config-file.js';
import { defaultThreads, SETTING_DEFAULTS, SETTINGS } from '../dist/settings/settings.js';
import { scratchDir } from './scratch.js';

// One name, one default, one place: the flags and config.json read the settings table, whose core
// options are the core's own rows; `queueCap` (`--queue-cap`) is read as `channelCap`, with one warning.

test('every flag sets a setting; a core option keeps the core name, rule and (unless serving says otherwise) default', () => {
  for (const spec of Object.values(FLAGS)) expect(Object.keys(SETTINGS)).toContain(spec.key);
  for (const [name, spec] of Object.entries(SETTINGS) as [string, { core?: string }][]) {
    if (spec.core !== undefined)
      expect([name, Object.keys(OPTION_SCHEMA).includes(spec.core)]).toEqual([spec.core, true]);
  }
  expect(SETTING_DEFAULTS.workers).toBe(DEFAULTS.workers);
  // The exported defaults are read from the table, not written again.
  expect(SERVER_DEFAULTS).toEqual({
    maxBatchSize: 64,
    maxDelay: 'auto',
    channelCap: 1024,
    workers: 1,
    threads: defaultThreads(availableParallelism()),
  });
  expect(SERVE_DEFAULTS).toEqual({
    ...SERVER_DEFAULTS,
    host: SETTING_DEFAULTS.host,
    port: SETTING_DEFAULTS.port,
    bodyLimit: SETTING_DEFAULTS.bodyLimit,
  });
});

test('--queue-cap and config.json `queueCap` are `channelCap`, with one deprecation warning; both names at once are refused', async () => {
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }): number => warnings.push(`${warning.name} ${warning.code}`);
  process.on('warning', onWarning);
  expect(parseFlags('serve', ['--queue-cap', '5'])).toEqual({ channelCap: 5 });
  expect(parseFlags('serve', ['--channel-cap', '6'])).toEqual({ channelCap: 6 });
  expect(() => parseFlags('serve', ['--channel-cap', '6', '--queue-cap', '7'])).toThrow(
    'Give --channel-cap or its old name --queue-cap, not both',
  );
  const file = join(scratchDir('bfn-settings-'), 'config.json');
  writeFileSync(file, JSON.stringify({ queueCap: 9, maxBatchSize: 0 }));
  expect(readModelConfig(file)).toEqual({ channelCap: 9, maxBatchSize: 0 });
  writeFileSync(file, JSON.stringify({ queueCap: 9, channelCap: 9 }));
  expect(() => readModelConfig(file)).toThrow(`${file}: give \`channelCap\` or its old name \`queueCap\`, not both`);
  writeFileSync(file, JSON.stringify({ channelCap: 0 }));
  expect(() => readModelConfig(file)).toThrow(
    `${file}: Expected \`channelCap\` to be an integer from 1 and up, or Infinity, got \`0\` (number)`,
  );
  await new Promise((resolve) => setImmediate(resolve));
  process.off('warning', onWarning);
  expect(warnings).toEqual(['DeprecationWarning BFN_DEP_QUEUE_CAP']);
});

test("ONNX Runtime threads default to one per core the process may use, within the setting's bound", () => {
  expect([0.5, 1, 2, 3, 16, 300].map(defaultThreads)).toEqual([1, 1, 2, 3, 16, 256]);
  expect(SETTING_DEFAULTS.threads).toBe(defaultThreads(availableParallelism()));
  expect(SETTINGS.threads.max).toBe(256);
});
