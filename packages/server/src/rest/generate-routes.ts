import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CharLmRequest } from '../builtin/charlm.worker.js';
import type { GenerativeModel } from '../formats/generator.js';
import type { ServerMetrics } from '../metrics/metrics.js';
import { endSpanOf, spanOf } from '../otel/request-spans.js';
import type { SpanLike } from '../otel/types.js';
import { invalidArgument, ProtocolError } from '../protocol/errors.js';

/**
 * Generation follows OpenTelemetry's GenAI semantic conventions, v1.37.0 (marked "Development",
 * so pinned): operation, model and request settings, token usage (a charlm token is one
 * character, so the prompt's input tokens are its characters), and time to first token, as an event.
 */
function traceGeneration(span: SpanLike | undefined, model: string, input: CharLmRequest): void {
  span?.setAttributes({
    'gen_ai.operation.name': 'text_completion',
    'gen_ai.provider.name': 'batched-fn',
    'gen_ai.request.model': model,
    'gen_ai.request.max_tokens': input.maxTokens,
    'gen_ai.request.temperature': input.temperature,
    'gen_ai.request.seed': input.seed,
    'gen_ai.usage.input_tokens': input.prompt.length,
  });
}

function traceFirstToken(span: SpanLike | undefined, seconds: number): void {
  span?.setAttribute('gen_ai.server.time_to_first_token', seconds);
  span?.addEvent('gen_ai.first_token', { 'gen_ai.server.time_to_first_token': seconds });
}

/**
 * The prompt is prefilled one character per run (a recurrent model), about 0.2 ms each, a chunk
 * of `--prefill-chunk` characters per step shared with the running streams, so a long prompt no
 * longer stalls them; it still delays its own first token (1,000 characters: about 0.25 s idle)
 * and holds a slot of the group meanwhile.
 */
const MAX_PROMPT = 1_000;
const MAX_TOKENS = 4096;

/** Checks a generate body: `{ text_input, parameters: { max_tokens, stop, temperature, seed } }`. */
export function decodeGenerate(body: unknown): CharLmRequest {
  if (!Buffer.isBuffer(body)) throw invalidArgument('Request needs a JSON body');
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw invalidArgument(`Malformed JSON: ${(error as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw invalidArgument('Request body must be a JSON object with `text_input`');
  const { text_input: prompt, parameters = {} } = json as { text_input?: unknown; parameters?: unknown };
  if (typeof prompt !== 'string' || prompt.length > MAX_PROMPT)
    throw invalidArgument(`text_input must be a string of at most ${MAX_PROMPT} characters`);
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters))
    throw invalidArgument('parameters must be an object');
  const p = parameters as Record<string, unknown>;
  const maxTokens = p.max_tokens ?? 64;
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > MAX_TOKENS)
    throw invalidArgument(
      `parameters.max_tokens must be an integer from 1 to ${MAX_TOKENS}, got ${JSON.stringify(maxTokens)}`,
    );
  const stop = p.stop ?? '';
  if (typeof stop !== 'string' || stop.length > 64)
    throw invalidArgument(
      `parameters.stop must be a string of at most 64 characters, got ${JSON.stringify(stop)?.slice(0, 80)}`,
    );
  const temperature = p.temperature ?? 0;
  if (typeof temperature !== 'number' || !(temperature >= 0 && temperature <= 10))
    throw invalidArgument(`parameters.temperature must be a number from 0 to 10, got ${JSON.stringify(temperature)}`);
  const seed = p.seed ?? 1;
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed > 2 ** 32 - 1)
    throw invalidArgument(`parameters.seed must be an integer from 0 to 4294967295, got ${JSON.stringify(seed)}`);
  return { prompt, maxTokens, stop, temperature, seed };
}

/**
 * Triton's generate extension: `generate` answers the whole text at once,
 * `generate_stream` one server-sent event per token. A client that hangs up
 * takes its sequence out of the batch at the next step.
 */
export function registerGenerateRoutes(
  app: FastifyInstance,
  generators: readonly GenerativeModel[],
  metrics?: ServerMetrics,
): void {
  const models = new Map(generators.map((g) => [g.name, g]));
  const find = (name: string): GenerativeModel => {
    const found = models.get(name);
    if (found === undefined) throw new ProtocolError('not-found', `Unknown generative model \`${name.slice(0, 100)}\``);
    return found;
  };
  const released = (reply: FastifyReply): AbortSignal => {
    const controller = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) controller.abort(new ProtocolError('cancelled', 'Client closed the connection'));
    });
    return controller.signal;
  };
  app.post<{ Params: { name: string } }>(
    '/v2/models/:name/generate',
    async (request: FastifyRequest<{ Params: { name: string } }>, reply) => {
      const model = find(request.params.name);
      const input = decodeGenerate(request.body);
      const span = spanOf(request);
      traceGeneration(span, model.name, input);
      const started = performance.now();
      let text = '';
      let tokens = 0;
      for await (const token of model.generate(input, { signal: released(reply) })) {
        if (tokens === 0) {
          metrics?.firstToken(model.name, (performance.now() - started) / 1000);
          traceFirstToken(span, (performance.now() - started) / 1000);
        }
        tokens++;
        text += token;
      }
      span?.setAttribute('gen_ai.usage.output_tokens', tokens);
      return { model_name: model.name, model_version: model.version, text_output: text };
    },
  );
  app.post<{ Params: { name: string } }>('/v2/models/:name/generate_stream', async (request, reply) => {
    const model = find(request.params.name);
    const input = decodeGenerate(request.body);
    const span = spanOf(request);
    traceGeneration(span, model.name, input);
    const started = performance.now();
    const stream = model.generate(input, { signal: released(reply) });
    // The first token (or a refusal) decides the status: a full queue is still a plain 503.
    const first = await stream.next();
    if (first.done !== true) {
      metrics?.firstToken(model.name, (performance.now() - started) / 1000);
      traceFirstToken(span, (performance.now() - started) / 1000);
    }
    let tokens = first.done === true ? 0 : 1;
    reply.hijack();
    // No `connection` header: Node lets an explicit one override the request's `Connection: close`
    // (it sets shouldKeepAlive), so a client that asked to close would find the socket kept open.
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (data: unknown): void => {
      if (!reply.raw.destroyed) reply.raw.write(`data: ${JSON.stringify(data)}\n\n`);
    };
    try {
      if (first.done !== true) send({ model_name: model.name, model_version: model.version, text_output: first.value });
      for await (const token of stream) {
        tokens++;
        send({ model_name: model.name, model_version: model.version, text_output: token });
      }
    } catch (error) {
      send({ error: (error as Error)?.message ?? String(error) });
    }
    reply.raw.end();
    // A hijacked reply skips fastify's onResponse: its span ends here.
    endSpanOf(request, 200, { 'gen_ai.usage.output_tokens': tokens });
  });
}
