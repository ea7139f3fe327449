// file: examples/http-server.ts
import { createServer } from 'node:http';
import { batchedFn, BatchedFnError } from 'batched-fn';

export const model = { predict: async (texts: string[]) => texts.map((t) => t.length) };

export const predict = batchedFn({
  handler: (texts: string[]) => model.predict(texts),
  maxBatchSize: 32,
  maxDelay: 2,
  channelCap: 256, // beyond this, shed load with 503 instead of queueing without bound
});

export const server = createServer(async (req, res) => {
  const text = new URL(req.url ?? '/', 'http://x').searchParams.get('text') ?? '';
  try {
    const length = await predict(text, { timeout: 1000 });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ length }));
  } catch (error) {
    const code = error instanceof BatchedFnError ? error.code : undefined;
    const status = code === 'ERR_QUEUE_FULL' ? 503 : code === 'ERR_TIMEOUT' ? 504 : 500;
    res.writeHead(status, status === 503 ? { 'retry-after': '1' } : {}).end(JSON.stringify({ error: String(error) }));
  }
});

export async function shutdown(): Promise<void> {
  await new Promise((resolve) => server.close(resolve));
  await predict.close(); // answers everything already accepted
}
