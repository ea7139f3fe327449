import type { ParseArgsConfig } from 'node:util';
import type { FlagRow } from './flag-row.js';

/**
 * The flags of the tools (`bench`, `tune`, `demo`), declared once: their parser options, their
 * defaults (the commands read them here) and their `--help` rows come from these tables. Serve's
 * and worker's flags are settings of the server (flags.ts).
 */
export interface ToolFlag {
  readonly arg: string;
  readonly doc: string;
  readonly default?: string | number | readonly number[];
  /** The default as shown, where the value alone does not say it. */
  readonly shown?: string;
}

export const BENCH_FLAGS = {
  url: { arg: 'URL', doc: 'the server to load, as http://HOST:PORT (required)' },
  model: { arg: 'NAME', doc: 'the model to call', default: 'mlp', shown: 'mlp (charlm with --generate)' },
  concurrency: { arg: 'N,N', doc: 'concurrent clients, one run each', default: [1, 8, 32, 64, 128] },
  duration: { arg: 'S', doc: 'seconds per run', default: 10 },
  rows: { arg: 'N', doc: 'rows per request', default: 1 },
  compare: { arg: 'URL', doc: 'a second server to run the same load against, for one chart' },
  out: { arg: 'DIR', doc: 'write bench.json and bench.svg here' },
  binary: { arg: '', doc: "send tensors in the binary extension's format instead of JSON" },
  grpc: { arg: '', doc: 'call over gRPC instead of REST' },
  'grpc-url': { arg: 'HOST:PORT', doc: 'the gRPC address, with --grpc', shown: "the REST host's port 8001" },
  generate: { arg: '', doc: 'load the generate extension with token streams (max_tokens 1 to 128)' },
  streams: { arg: 'N', doc: 'concurrent token streams, with --generate', default: 32 },
} as const satisfies Record<string, ToolFlag>;

export const TUNE_FLAGS = {
  model: { arg: 'FILE', doc: 'the ONNX model to tune', shown: 'the generated MLP' },
  'model-repository': { arg: 'DIR', doc: 'a model repository holding the model to tune (with --name)' },
  name: { arg: 'NAME', doc: 'the model of --model-repository to tune' },
  'latency-budget': { arg: 'MS', doc: 'the p99 latency a recommended setting must keep', default: 100 },
  concurrency: { arg: 'N,N', doc: 'concurrent clients each candidate is measured at', default: [1, 8, 32, 64] },
  duration: { arg: 'S', doc: 'seconds of one measurement window, from 1 to 600', default: 5 },
  out: { arg: 'DIR', doc: 'write the table, tune.json and the chart here', default: 'tune-out' },
  'max-candidates': { arg: 'N', doc: 'most server settings tried', default: 24 },
  'max-windows': { arg: 'N', doc: 'most measurement windows per point before it counts as unstable', default: 6 },
  'cache-dir': { arg: 'DIR', doc: 'where the generated model is kept', shown: '~/.cache/batched-fn' },
} as const satisfies Record<string, ToolFlag>;

export const DEMO_FLAGS = {
  duration: { arg: 'S', doc: 'seconds per run', default: 5 },
  concurrency: { arg: 'N,N', doc: 'concurrent clients, one run each', default: [1, 8, 32, 64, 128] },
  out: { arg: 'DIR', doc: 'write demo.json and demo.svg here', default: 'bench-out' },
  'cache-dir': { arg: 'DIR', doc: 'where the generated models are kept', shown: '~/.cache/batched-fn' },
} as const satisfies Record<string, ToolFlag>;

export const TOOL_FLAGS = { bench: BENCH_FLAGS, tune: TUNE_FLAGS, demo: DEMO_FLAGS } as const;
export type Tool = keyof typeof TOOL_FLAGS;

/** node:util parseArgs options of a tool's table: a flag with no argument is a switch. */
export function toolParseOptions(table: Record<string, ToolFlag>): NonNullable<ParseArgsConfig['options']> {
  return Object.fromEntries(
    Object.entries(table).map(([flag, spec]) => [flag, { type: spec.arg === '' ? 'boolean' : 'string' }] as const),
  );
}

export function toolRows(tool: Tool): FlagRow[] {
  return Object.entries(TOOL_FLAGS[tool] as Record<string, ToolFlag>).map(([flag, spec]) => ({
    flag,
    arg: spec.arg,
    doc: spec.doc,
    shown: spec.shown ?? (spec.default === undefined ? (spec.arg === '' ? 'off' : 'none') : String(spec.default)),
  }));
}
