/**
 * One flag of a command as `--help`, the environment (`BATCHED_FN_<FLAG>`) and did-you-mean see
 * it: every command's rows come from its one flag table (serve and worker: flags.ts over the
 * settings; bench, tune, demo: tool-flags.ts).
 */
export interface FlagRow {
  /** The flag without its dashes: `max-batch-size`. */
  readonly flag: string;
  /** What it takes (`N`, `MS`, `FILE`...); empty for a switch. */
  readonly arg: string;
  readonly doc: string;
  /** Its default as shown to a user (`64`, `64 MiB`, `none`). */
  readonly shown: string;
  /** Repeatable on the command line (`--model a --model b`); its variable holds one value. */
  readonly multiple?: boolean;
  /** An old name: still read, not shown. */
  readonly deprecated?: boolean;
}

/** The environment variable of a flag: `--max-batch-size` is `BATCHED_FN_MAX_BATCH_SIZE`. */
export const envName = (flag: string): string => `BATCHED_FN_${flag.replace(/-/g, '_').toUpperCase()}`;
