// file: examples/http-server.mjs
import { createServer } from 'node:http';
import { BatchedFnError, batchedFn } from 'batched-fn';

// Stands in for a real model: one call scores a whole batch of texts.
const model = { predict: async (texts) => texts.map((t) => t.length) };

const predict = batchedFn({
  handler: (texts) => model.predict(texts),
  maxBatchSize: 32,
  maxDelay: 2,
  channelCap: 256, // beyond this, shed load with 503 instead of queueing without bound
});

const server = createServer(async (req, res) => {
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

// PORT=0 picks a free port.
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`Try it: curl 'http://127.0.0.1:${server.address().port}/?text=hello'`);
});

// Ctrl-C or SIGTERM: stop accepting, answer every request already accepted, then exit.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    server.close();
    server.closeIdleConnections();
    await predict.close();
  });
}
