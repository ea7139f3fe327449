// The protocol stacks alone, for bench/protocols.js: a bare fastify route and a bare @grpc/grpc-js
// ModelInfer handler that answer a fixed response at once, with no batching or model. The route
// JSON-parses the body (all of it, or the binary extension's header) as the server does; grpc-js
// decodes the request and encodes the answer through proto-loader, as it does for the server.
// Their req/s under the same load generators is the most each protocol can carry on this machine.
//
// `node bare-server.js <ms>` holds every answer until the next tick of a <ms> timer and sends them all
// then, as a batching server answers a batch: no batcher and no model, only the cost of holding calls
// (HTTP/2 streams, grpc-js calls, sockets and their request objects living through the wait, which a
// stack that answers at once never keeps past a scavenge).
import { Server, ServerCredentials } from '@grpc/grpc-js';
import Fastify from 'fastify';
import { loadInferenceService } from '../dist/grpc/proto.js';

const grpcAnswer = {
  model_name: 'tiny',
  model_version: '1',
  id: '',
  outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [1, 16] }],
  raw_output_contents: [Buffer.alloc(64)],
};
const restAnswer = JSON.stringify({
  model_name: 'tiny',
  model_version: '1',
  outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [1, 16], data: Array(16).fill(0.0625) }],
});
const HOLD_MS = Number(process.argv[2] ?? 0);
if (!(Number.isInteger(HOLD_MS) && HOLD_MS >= 0 && HOLD_MS <= 1000))
  throw new Error(`hold ms: 0-1000, got ${process.argv[2]}`);
const held = [];
if (HOLD_MS > 0)
  setInterval(() => {
    for (const send of held.splice(0)) send();
  }, HOLD_MS);
const answer = HOLD_MS > 0 ? (send) => held.push(send) : (send) => send();

const grpc = new Server({ 'grpc.enable_channelz': 0 });
grpc.addService(loadInferenceService().service, {
  ModelInfer: (_call, callback) => answer(() => callback(null, grpcAnswer)),
});
const grpcPort = await new Promise((resolve, reject) =>
  grpc.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, port) =>
    error ? reject(error) : resolve(port),
  ),
);
const binaryHeader = Buffer.from(
  JSON.stringify({
    model_name: 'tiny',
    model_version: '1',
    outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [1, 16], parameters: { binary_data_size: 64 } }],
  }),
);
const binaryAnswer = Buffer.concat([binaryHeader, Buffer.alloc(64)]);
const app = Fastify();
app.addContentTypeParser(
  ['application/json', 'application/octet-stream'],
  { parseAs: 'buffer' },
  (request, body, done) => {
    const length = Number(request.headers['inference-header-content-length'] ?? body.length);
    done(null, JSON.parse(body.subarray(0, length).toString()));
  },
);
// Not async, and returning nothing: fastify waits for reply.send, which a held answer calls later.
app.post('/v2/models/tiny/infer', (request, reply) => {
  answer(() =>
    request.headers['inference-header-content-length'] === undefined
      ? reply.header('content-type', 'application/json').send(restAnswer)
      : reply
          .header('content-type', 'application/octet-stream')
          .header('inference-header-content-length', String(binaryHeader.length))
          .send(binaryAnswer),
  );
});
app.get('/v2/models/tiny', async () => ({
  name: 'tiny',
  inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 256] }],
}));
app.get('/metrics', async () => '');
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`bare on ${url} gRPC: grpc://127.0.0.1:${grpcPort}\n`);
process.on('SIGTERM', () => process.exit(0));
