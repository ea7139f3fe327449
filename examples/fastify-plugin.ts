// file: examples/fastify-plugin.ts
import Fastify from 'fastify';
import { createOnnxModel, ensureMlpModel, kservePlugin, ServerMetrics } from '@batched-fn/server';

const metrics = new ServerMetrics();
// Any .onnx file works here; ensureMlpModel() generates (once) the default 17.9 M-parameter MLP.
export const model = createOnnxModel({
  path: ensureMlpModel(),
  name: 'mlp',
  maxBatchSize: 32,
  maxDelay: 2,
  onBatch: metrics.onBatch,
});
metrics.track(model);
await model.batcher.ready(); // loads the model now, so the first request's timeout does not include the load

export const app = Fastify();
app.get('/', async () => ({ service: 'my app' })); // your own routes stay yours
await app.register(kservePlugin, { models: [model], metrics, timeout: 1000 }); // adds the /v2/... routes
app.get('/metrics', async (_request, reply) =>
  reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
);

export async function shutdown(): Promise<void> {
  await app.close();
  await model.batcher.close();
}
