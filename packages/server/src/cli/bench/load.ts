import type autocannonType from 'autocannon';

export interface LoadResult {
  concurrency: number;
  requestsPerSecond: number;
  p50: number;
  p90: number;
  p99: number;
  errors: number;
  non2xx: number;
  /** Rows per batch on the server during this run, from its /metrics; NaN when it exposes none. */
  meanBatch: number;
  /** Share of one core the load generator's thread used during this run (0.93 = 93 %): see generator-cpu.ts. */
  generatorCpu: number;
}

/** What one load generator measures; the server's mean batch and the generator's CPU are read around it. */
export type RunResult = Omit<LoadResult, 'meanBatch' | 'generatorCpu'>;

export interface LoadOptions {
  url: string;
  body: string | Buffer;
  /** Default: JSON. */
  headers?: Record<string, string>;
  concurrency: number;
  durationSeconds: number;
  progress: boolean;
}

/** One closed-loop run: `concurrency` connections, each sending its next request as soon as the last is answered. */
export async function runLoad(options: LoadOptions): Promise<RunResult> {
  // Loaded here, not at the top: `batched-fn serve` and the library entry never need it.
  const { default: autocannon } = await import('autocannon');
  let instance: autocannonType.Instance | undefined;
  const result = await new Promise<autocannonType.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: options.url,
        method: 'POST',
        headers: options.headers ?? { 'content-type': 'application/json' },
        body: options.body,
        connections: options.concurrency,
        pipelining: 1,
        duration: options.durationSeconds,
      },
      (error, done) => (error ? reject(error) : resolve(done)),
    );
    if (options.progress)
      autocannon.track(instance, { renderProgressBar: true, renderResultsTable: false, renderLatencyTable: false });
  });
  return {
    concurrency: options.concurrency,
    requestsPerSecond: result.requests.average,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}
