import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { endSpanOf, spanOf } from '../otel/request-spans.js';
import type { SpanLike } from '../otel/types.js';
import type { ServedGenerator } from '../model/generator.js';
import { samplingParameters } from '../model/reserved-parameters.js';
import { invalidArgument, ProtocolError } from '../protocol/errors.js';
import { type GenerateRequest, generatorOf, startGeneration } from '../protocol/generation.js';
import { schedulingParameters } from '../protocol/decode.js';
import { messageFor } from '../protocol/status.js';
import type { ModelRegistry } from '../repository/registry.js';

/**
 * Generation follows OpenTelemetry's GenAI semantic conventions, v1.37.0 (marked "Development",
 * so pinned): operation, model and request settings, token usage (the prompt's input tokens are
 * its code points), and time to first token, as an event.
 */
function traceGeneration(span: SpanLike | undefined, request: GenerateRequest, maxTokens: number): void {
  const { temperature, seed } = request.parameters;
  span?.setAttributes({
    'gen_ai.operation.name': 'text_completion',
    'gen_ai.provider.name': 'batched-fn',
    'gen_ai.request.model': request.model,
    'gen_ai.request.max_tokens': maxTokens,
    ...(typeof temperature === 'number' ? { 'gen_ai.request.temperature': temperature } : {}),
    ...(typeof seed === 'number' ? { 'gen_ai.request.seed': seed } : {}),
    'gen_ai.usage.input_tokens': [...request.prompt].length,
  });
}

function traceFirstToken(span: SpanLike | undefined, seconds: number): void {
  span?.setAttribute('gen_ai.server.time_to_first_token', seconds);
  span?.addEvent('gen_ai.first_token', { 'gen_ai.server.time_to_first_token': seconds });
}

/**
 * Checks a generate body, `{ text_input, parameters: { max_tokens, stop, priority, timeout, ...sampling } }`,
 * against the model's limits: `max_tokens` and `stop` are the server's (a string or an array of
 * strings), `priority` (a level) and `timeout` (µs) the schedule-policy extension's, as on infer
 * (Triton reserves both names), and every other parameter is the model's (protocol/generation.ts
 * refuses a name it does not accept).
 */
export function decodeGenerate(
  body: unknown,
  limits: { maxTokens: number; defaultMaxTokens: number; maxPrompt: number },
): Omit<GenerateRequest, 'model' | 'version' | 'signal'> & { maxTokens: number } {
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
  if (typeof prompt !== 'string' || prompt.length > limits.maxPrompt)
    throw invalidArgument(`text_input must be a string of at most ${limits.maxPrompt} characters`);
  if (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters))
    throw invalidArgument('parameters must be an object');
  const given = parameters as Record<string, unknown>;
  const { max_tokens: maxTokens = limits.defaultMaxTokens, stop } = given;
  const { priority: level, timeout: timeoutMs } = schedulingParameters(given);
  // Reserved keys (the server's, Triton's) are never sampling parameters: dropped, as gRPC drops them.
  const sampling = samplingParameters(given);
  if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > limits.maxTokens)
    throw invalidArgument(
      `parameters.max_tokens must be an integer from 1 to ${limits.maxTokens}, got ${JSON.stringify(maxTokens)?.slice(0, 80)}`,
    );
  const stops = stop === undefined || stop === '' ? [] : typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(stops) || !stops.every((s) => typeof s === 'string'))
    throw invalidArgument(
      `parameters.stop must be a string or an array of strings, got ${JSON.stringify(stop)?.slice(0, 80)}`,
    );
  return {
    prompt,
    parameters: sampling,
    maxTokens,
    stop: stops,
    ...(level === undefined ? {} : { level }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  };
}

/**
 * Triton's generate extension, for every generator the registry serves: `generate` answers the
 * whole text at once, `generate_stream` one server-sent event per chunk. Both go through the
 * generation front (protocol/generation.ts), as gRPC and the OpenAI API do. A client that hangs
 * up takes its sequence out of the batch at the next step; a client that reads too slowly is cut
 * with an `event: error` (the front's bound on buffered output).
 */
export function registerGenerateRoutes(app: FastifyInstance, registry: ModelRegistry): void {
  const released = (reply: FastifyReply): AbortSignal => {
    const controller = new AbortController();
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) controller.abort(new ProtocolError('cancelled', 'Client closed the connection'));
    });
    return controller.signal;
  };
  type Params = { name: string; version?: string };
  const start = (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const { name, version } = request.params;
    const generator = generatorOf(registry, name, version).generator as ServedGenerator;
    const decoded = decodeGenerate(request.body, generator);
    const call: GenerateRequest = {
      model: name,
      ...(version === undefined ? {} : { version }),
      ...decoded,
      signal: released(reply),
    };
    const span = spanOf(request);
    traceGeneration(span, call, decoded.maxTokens);
    return { stream: startGeneration(registry, call), span, started: performance.now() };
  };

  const whole = async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const { stream, span, started } = start(request, reply);
    let text = '';
    let first = true;
    for await (const chunk of stream) {
      if (first) traceFirstToken(span, (performance.now() - started) / 1000);
      first = false;
      text += chunk;
    }
    const outcome = await stream.outcome;
    span?.setAttribute('gen_ai.usage.output_tokens', outcome.tokens);
    return { model_name: request.params.name, model_version: stream.version, text_output: text };
  };
  app.post<{ Params: Params }>('/v2/models/:name/generate', whole);
  app.post<{ Params: Params }>('/v2/models/:name/versions/:version/generate', whole);

  const streamed = async (request: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const { stream, span, started } = start(request, reply);
    const iterator = stream[Symbol.asyncIterator]();
    // The first chunk (or a refusal) decides the status: a full queue is still a plain 503.
    const first = await iterator.next();
    if (first.done !== true) traceFirstToken(span, (performance.now() - started) / 1000);
    reply.hijack();
    // No `connection` header: Node lets an explicit one override the request's `Connection: close`
    // (it sets shouldKeepAlive), so a client that asked to close would find the socket kept open.
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const name = request.params.name;
    // Waits while the socket's buffer is full: the front then holds the chunks, within its bound.
    const send = async (event: string): Promise<void> => {
      if (reply.raw.destroyed) return;
      if (!reply.raw.write(event))
        await new Promise<void>((resolve) => {
          const done = () => {
            reply.raw.off('drain', done);
            reply.raw.off('close', done);
            resolve();
          };
          reply.raw.once('drain', done);
          reply.raw.once('close', done);
        });
    };
    const data = (text: string) =>
      `data: ${JSON.stringify({ model_name: name, model_version: stream.version, text_output: text })}\n\n`;
    try {
      if (first.done !== true) await send(data(first.value));
      for (let next = await iterator.next(); next.done !== true; next = await iterator.next())
        await send(data(next.value));
    } catch (error) {
      await send(`event: error\ndata: ${JSON.stringify({ error: messageFor(error) })}\n\n`);
    }
    reply.raw.end();
    const tokens = await stream.outcome.then(
      (o) => o.tokens,
      () => 0,
    );
    // A hijacked reply skips fastify's onResponse: its span ends here.
    endSpanOf(request, 200, { 'gen_ai.usage.output_tokens': tokens });
  };
  app.post<{ Params: Params }>('/v2/models/:name/generate_stream', streamed);
  app.post<{ Params: Params }>('/v2/models/:name/versions/:version/generate_stream', streamed);
}
