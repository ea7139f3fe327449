import { Counter, Histogram, Registry } from 'prom-client';
import { expect, test } from 'vitest';
import { SeriesCounter, SeriesHistogram } from '../src/metrics/series.js';
import { ServerMetrics } from '../src/metrics/metrics.js';

// The resolved series (metrics/series.ts) must be invisible to Prometheus: the same text as prom-client's own.

const BUCKETS = [0.001, 0.01, 0.1, 1];
const OBSERVED: [string, string, number][] = [
  ['tiny', 'grpc', 0.0004],
  ['tiny', 'rest', 0.02],
  ['tiny', 'grpc', 0.001],
  ['big', 'rest', 7],
  ['tiny', 'grpc', 0.5],
];

test('a SeriesHistogram writes the text and JSON of a prom-client Histogram given the same observations', async () => {
  const ours = new Registry();
  const theirs = new Registry();
  const config = { name: 'h_seconds', help: 'A histogram', labelNames: ['model', 'protocol'] };
  const histogram = new SeriesHistogram({ ...config, buckets: BUCKETS }, ours);
  const reference = new Histogram({ ...config, buckets: BUCKETS, registers: [theirs] });
  for (const [model, protocol, value] of OBSERVED) {
    histogram.observe(histogram.series(model, protocol), value);
    reference.observe({ model, protocol }, value);
  }
  expect(await ours.metrics()).toBe(await theirs.metrics());
  expect(await ours.getMetricsAsJSON()).toEqual(await theirs.getMetricsAsJSON());
});

test('a SeriesCounter counts into prom-client at each collection, once', async () => {
  const ours = new Registry();
  const theirs = new Registry();
  const config = { name: 'c_total', help: 'A counter', labelNames: ['model', 'protocol', 'status'] };
  const counter = new SeriesCounter({ ...config, registry: ours });
  const reference = new Counter({ ...config, registers: [theirs] });
  const grpc = counter.series('tiny', 'grpc', '200');
  grpc.pending++;
  grpc.pending++;
  counter.series('tiny', 'rest', '400').pending++;
  reference.inc({ model: 'tiny', protocol: 'grpc', status: '200' }, 2);
  reference.inc({ model: 'tiny', protocol: 'rest', status: '400' });
  expect(await ours.metrics()).toBe(await theirs.metrics());
  // Reading again adds nothing; a new event is counted at the next reading.
  expect(await ours.metrics()).toBe(await theirs.metrics());
  counter.series('tiny', 'grpc', '200').pending++;
  reference.inc({ model: 'tiny', protocol: 'grpc', status: '200' });
  expect(await ours.metrics()).toBe(await theirs.metrics());
  expect(counter.series('tiny', 'grpc', '200')).toBe(grpc);
});

test("the server's request and batch series read as before: counts, sums and buckets by their labels", async () => {
  const metrics = new ServerMetrics({ defaultMetrics: false });
  metrics.request('tiny', 200, 0.003, 'grpc');
  metrics.request('tiny', 200, 0.2, 'grpc');
  metrics.request('tiny', 503, 0.0001, 'rest');
  metrics.onBatch({
    name: 'tiny',
    rows: 3,
    items: 3,
    maxWaitMs: 2,
    execMs: 1,
    reason: 'full',
    ok: true,
  } as Parameters<ServerMetrics['onBatch']>[0]);
  const text = await metrics.registry.metrics();
  expect(text).toContain('batched_fn_requests_total{model="tiny",protocol="grpc",status="200"} 2');
  expect(text).toContain('batched_fn_requests_total{model="tiny",protocol="rest",status="503"} 1');
  expect(text).toContain('batched_fn_request_duration_seconds_bucket{le="0.005",model="tiny",protocol="grpc"} 1');
  expect(text).toContain('batched_fn_request_duration_seconds_bucket{le="+Inf",model="tiny",protocol="grpc"} 2');
  expect(text).toContain('batched_fn_request_duration_seconds_sum{model="tiny",protocol="grpc"} 0.203');
  expect(text).toContain('batched_fn_request_duration_seconds_count{model="tiny",protocol="rest"} 1');
  expect(text).toContain('batched_fn_batch_size_bucket{le="2",model="tiny"} 0');
  expect(text).toContain('batched_fn_batch_size_bucket{le="4",model="tiny"} 1');
  expect(text).toContain('batched_fn_batches_total{model="tiny",reason="full",ok="true"} 1');
});
