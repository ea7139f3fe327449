import { defaultThreads, SETTING_DEFAULTS } from '../../settings/settings.js';

/**
 * The settings `batched-fn tune` searches: batch limit, window, how the machine's cores are
 * split between worker threads and ONNX Runtime threads, and preferred batch sizes. (Not whether
 * those threads spin: off served more in 5 of 7 runs, quiet or busy; see onnx.worker.ts.)
 */
export interface Candidate {
  maxBatchSize: number;
  maxDelay: number | 'auto';
  workers: number;
  threads: number;
  /** Preferred sizes: none, or half and all of maxBatchSize. */
  preferred: boolean;
}

/**
 * The server's own defaults on a machine of `cores` cores (one session, a thread per core: see
 * settings.ts defaultThreads), always measured: the recommendation's gain is against them.
 */
export function defaultCandidate(cores: number): Candidate {
  return {
    maxBatchSize: SETTING_DEFAULTS.maxBatchSize,
    maxDelay: SETTING_DEFAULTS.maxDelay,
    workers: SETTING_DEFAULTS.workers,
    threads: defaultThreads(cores),
    preferred: false,
  };
}

const BATCH_SIZES = [4, 8, 16, 32, 64, 128, 256];
const DELAYS: (number | 'auto')[] = ['auto', 0, 1, 2, 5, 10, 20];

export const keyOf = (c: Candidate): string =>
  `b${c.maxBatchSize}-d${c.maxDelay}-w${c.workers}x${c.threads}${c.preferred ? '-p' : ''}`;

/** Worker × thread splits that fit in `cores`, from one big session to one thread per worker. */
export function topologies(cores: number): { workers: number; threads: number }[] {
  const out: { workers: number; threads: number }[] = [];
  for (let workers = 1; workers <= cores; workers++) {
    const threads = Math.max(1, Math.floor(cores / workers));
    out.push({ workers, threads });
  }
  return out;
}

/**
 * Splits that leave one core to the main thread (HTTP, batching, answering), which otherwise preempts
 * intra-op threads: tried around the best candidate, not in the coarse grid, to keep it small.
 */
export function spareCoreTopologies(cores: number): { workers: number; threads: number }[] {
  const out: { workers: number; threads: number }[] = [];
  for (let workers = 1; workers < cores; workers++) {
    const threads = Math.floor((cores - 1) / workers);
    if (threads >= 1 && threads !== Math.floor(cores / workers)) out.push({ workers, threads });
  }
  return out;
}

export function preferredSizes(c: Candidate): number[] | undefined {
  if (!c.preferred || c.maxBatchSize < 2) return undefined;
  return [c.maxBatchSize / 2, c.maxBatchSize];
}

/**
 * The coarse grid: batch limits a factor of four apart, the adaptive window and a fixed one,
 * and every core split; the defaults too. Then hill-climbing refines around the best.
 */
export function coarseGrid(cores: number): Candidate[] {
  const grid: Candidate[] = [defaultCandidate(cores)];
  for (const maxBatchSize of [16, 64]) {
    for (const maxDelay of ['auto', 5] as const) {
      for (const { workers, threads } of topologies(cores))
        grid.push({ maxBatchSize, maxDelay, workers, threads, preferred: false });
    }
  }
  const seen = new Set<string>();
  return grid.filter((c) => !seen.has(keyOf(c)) && seen.add(keyOf(c)));
}

/**
 * One step in each direction on each axis (batch size ×2 or ÷2, the next window, another split of
 * the cores, one leaving a core to the main thread among them, preferred sizes on or off).
 */
export function neighbours(c: Candidate, cores: number): Candidate[] {
  const out: Candidate[] = [];
  const b = BATCH_SIZES.indexOf(c.maxBatchSize);
  for (const i of [b - 1, b + 1])
    if (i >= 0 && i < BATCH_SIZES.length) out.push({ ...c, maxBatchSize: BATCH_SIZES[i] as number });
  const d = DELAYS.indexOf(c.maxDelay);
  for (const i of [d - 1, d + 1])
    if (i >= 0 && i < DELAYS.length) out.push({ ...c, maxDelay: DELAYS[i] as number | 'auto' });
  for (const t of [...topologies(cores), ...spareCoreTopologies(cores)])
    if (t.workers !== c.workers || t.threads !== c.threads) out.push({ ...c, ...t });
  out.push({ ...c, preferred: !c.preferred });
  return out;
}

/** The candidate as `batched-fn serve` flags. */
export function serveFlags(c: Candidate): string[] {
  const preferred = preferredSizes(c);
  return [
    '--max-batch-size',
    String(c.maxBatchSize),
    '--max-delay',
    String(c.maxDelay),
    '--workers',
    String(c.workers),
    '--threads',
    String(c.threads),
    ...(preferred === undefined ? [] : ['--preferred-batch-sizes', preferred.join(',')]),
  ];
}

/** The candidate as a model repository's config.json. */
export function modelConfig(c: Candidate): Record<string, unknown> {
  const preferred = preferredSizes(c);
  return {
    maxBatchSize: c.maxBatchSize,
    maxDelay: c.maxDelay,
    workers: c.workers,
    threads: c.threads,
    ...(preferred === undefined ? {} : { preferredBatchSizes: preferred }),
  };
}
