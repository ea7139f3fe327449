// Generation over gRPC streaming (ModelStreamInfer, Triton's decoupled responses) against SSE
// (generate_stream), in one run on charlm: one server in its own process, then the same closed
// loop of STREAMS clients (max_tokens 64 each) over each protocol in turn, twice (SSE, gRPC, SSE,
// gRPC) so that a drift of the machine shows up as a difference between the halves. Bounded:
// SECONDS per protocol in all (default 8, about 20 s with the start and the warm-up).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PROTO_OPTIONS, PROTO_PATH } from '../dist/index.js';

const STREAMS = Number(process.env.BENCH_STREAMS ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const MAX_TOKENS = 64;
const BIN = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));

async function serve() {
  const args = ['serve', '--port', '0', '--grpc-port', '0', '--threads', '1', '--max-active', String(STREAMS)];
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk) => (out += chunk));
  const found = () => /(http:\/\/127\.0\.0\.1:\d+)/.exec(out) && /grpc:\/\/(127\.0\.0\.1:\d+)/.exec(out);
  for (let i = 0; i < 3000 && !found(); i++) await new Promise((resolve) => setTimeout(resolve, 20));
  if (!found()) throw new Error(`the server did not start:\n${out}`);
  return {
    url: /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)[1],
    grpc: /grpc:\/\/(127\.0\.0\.1:\d+)/.exec(out)[1],
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGTERM');
      }),
  };
}

/** One SSE generation: resolves with [time to first token in ms, tokens]. */
async function sse(url, prompt) {
  const started = performance.now();
  const response = await fetch(`${url}/v2/models/charlm/generate_stream`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text_input: prompt, parameters: { max_tokens: MAX_TOKENS } }),
  });
  if (response.status !== 200) throw new Error(`SSE status ${response.status}`);
  let first = 0;
  let tokens = 0;
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const bytes of response.body) {
    buffered += decoder.decode(bytes, { stream: true });
    const events = buffered.split('\n\n');
    buffered = events.pop();
    for (const event of events) {
      if (!event.startsWith('data: ')) throw new Error(`SSE error: ${event}`);
      if (tokens++ === 0) first = performance.now() - started;
    }
  }
  return [first, tokens];
}

/** gRPC: one ModelStreamInfer stream per client, its generations one after another. */
function grpcClient(address) {
  const pkg = loadPackageDefinition(loadSync(PROTO_PATH, PROTO_OPTIONS));
  const client = new pkg.inference.GRPCInferenceService(address, credentials.createInsecure());
  return () => {
    const stream = client.ModelStreamInfer();
    let waiting;
    stream.on('data', (answer) => waiting?.(answer));
    stream.on('error', () => {});
    let id = 0;
    return {
      generate: (prompt) =>
        new Promise((resolve, reject) => {
          const started = performance.now();
          let first = 0;
          let tokens = 0;
          waiting = (answer) => {
            if (answer.error_message !== '') return reject(new Error(answer.error_message));
            if (answer.infer_response.raw_output_contents.length > 0 && tokens++ === 0)
              first = performance.now() - started;
            if (answer.infer_response.parameters.triton_final_response?.bool_param) resolve([first, tokens]);
          };
          stream.write({
            model_name: 'charlm',
            id: String(id++),
            inputs: [
              {
                name: 'text_input',
                datatype: 'BYTES',
                shape: [1],
                contents: { bytes_contents: [Buffer.from(prompt)] },
              },
            ],
            parameters: { max_tokens: { int64_param: MAX_TOKENS } },
          });
        }),
      end: () => stream.end(),
      close: () => client.close(),
    };
  };
}

/** A closed loop of STREAMS clients for `seconds`: tokens/s and TTFT percentiles. */
async function load(makeClient, seconds) {
  const ttft = [];
  let tokens = 0;
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: STREAMS }, async (_, c) => {
      const client = makeClient();
      for (let n = 0; performance.now() < end; n++) {
        const [first, count] = await client.generate(`client ${c} request ${n}: `);
        ttft.push(first);
        tokens += count;
      }
      client.end?.();
    }),
  );
  const ms = performance.now() - started;
  ttft.sort((a, b) => a - b);
  const at = (q) => ttft[Math.min(ttft.length - 1, Math.floor(q * ttft.length))];
  return { tokensPerSecond: (tokens / ms) * 1000, p50: at(0.5), p99: at(0.99), requests: ttft.length };
}

const server = await serve();
const grpc = grpcClient(server.grpc);
const clients = {
  SSE: () => ({ generate: (prompt) => sse(server.url, prompt) }),
  'gRPC stream': grpc,
};
try {
  await load(clients.SSE, 1); // warm-up: the worker, the sessions, the connections
  const rows = [];
  for (const half of [1, 2])
    for (const protocol of ['SSE', 'gRPC stream'])
      rows.push({ protocol, half, ...(await load(clients[protocol], SECONDS / 2)) });
  console.log(
    `\ncharlm, ${STREAMS} concurrent streams, max_tokens ${MAX_TOKENS}, --max-active ${STREAMS}, ${SECONDS} s per protocol in two halves`,
  );
  console.table(
    rows.map((r) => ({
      protocol: r.protocol,
      half: r.half,
      'tokens/s': Math.round(r.tokensPerSecond),
      'TTFT p50 ms': r.p50.toFixed(1),
      'TTFT p99 ms': r.p99.toFixed(1),
      requests: r.requests,
    })),
  );
} finally {
  await server.stop();
  process.exit(0);
}
