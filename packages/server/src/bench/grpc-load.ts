import { credentials } from '@grpc/grpc-js';
import { loadInferenceService } from '../grpc/proto.js';
import type { LoadResult } from './load.js';

export interface GrpcLoadOptions {
  /** host:port of the gRPC face. */
  target: string;
  request: object;
  concurrency: number;
  durationSeconds: number;
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;

type Unary = (request: object, callback: (error: Error | null) => void) => void;

/**
 * One closed-loop gRPC run: `concurrency` calls in flight on one channel (HTTP/2 multiplexes
 * them, as tritonclient does), each sending its next call as soon as the last is answered.
 */
export async function runGrpcLoad(options: GrpcLoadOptions): Promise<Omit<LoadResult, 'meanBatch'>> {
  const Service = loadInferenceService() as unknown as new (target: string, creds: ReturnType<typeof credentials.createInsecure>) => { ModelInfer: Unary; close(): void };
  const client = new Service(options.target, credentials.createInsecure());
  const latencies: number[] = [];
  let errors = 0;
  const started = performance.now();
  const end = started + options.durationSeconds * 1000;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      const t = performance.now();
      const ok = await new Promise<boolean>((resolve) => client.ModelInfer(options.request, (error) => resolve(error === null)));
      if (ok) latencies.push(performance.now() - t);
      else errors++;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, loop));
  const elapsed = (performance.now() - started) / 1000;
  client.close();
  latencies.sort((a, b) => a - b);
  const round = (ms: number): number => Math.round(ms * 100) / 100;
  return {
    concurrency: options.concurrency,
    requestsPerSecond: latencies.length / elapsed,
    p50: round(percentile(latencies, 50)),
    p90: round(percentile(latencies, 90)),
    p99: round(percentile(latencies, 99)),
    errors,
    non2xx: 0,
  };
}
