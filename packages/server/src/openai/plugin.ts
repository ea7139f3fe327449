import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { endSpanOf, spanOf } from '../otel/request-spans.js';
import { ProtocolError } from '../protocol/errors.js';
import { HTTP_RESTRICTED, parseRestrictions, refusedBy, restrictedMessage } from '../protocol/restricted.js';
import { chatPrompt, type GenerationOutcome, listGenerators, startGeneration } from '../protocol/generation.js';
import type { ModelRegistry } from '../repository/registry.js';
import { openAIAnswerFor, OpenAIParamError } from './errors.js';
import { decodeChat, decodeCompletion, type OpenAIGeneration } from './requests.js';
import {
  answerHead,
  chatChunk,
  chatCompletion,
  completion,
  completionChunk,
  modelEntry,
  type OpenAIFinishReason,
  usageChunk,
  usageOf,
} from './responses.js';
import { SseWriter } from './sse.js';

export interface OpenAIOptions {
  /** The models served; its READY generators are OpenAI's models. */
  registry: ModelRegistry;
  /** The most bytes of a request body (413 beyond). @default OPENAI_BODY_LIMIT */
  bodyLimit?: number;
  /**
   * Triton's `--http-restricted-api` values, as the KServe routes take them: `inference` covers the
   * completions, `metadata` the model list, so a restricted server has no open side door at /v1.
   */
  httpRestrictedApi?: string | readonly string[];
}

/**
 * OpenAI's request bodies are a prompt or a chat and a few settings: 4 MiB holds a 128k-token
 * context several times over, while JSON.parse of a body of the server's 64 MiB (made for tensors)
 * could build millions of objects before any check.
 */
export const OPENAI_BODY_LIMIT = 4 * 1024 * 1024;

/** OpenAI's finish reasons: the model's own end of text is `stop`, as it is for OpenAI's models. */
const finishOf = (outcome: GenerationOutcome): OpenAIFinishReason =>
  outcome.finishReason === 'length' ? 'length' : 'stop';

/** Aborted when the client hangs up before its answer is out: its sequence leaves the batch at the next step. */
function hangUp(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new ProtocolError('cancelled', 'Client closed the connection'));
  });
  return controller.signal;
}

/**
 * OpenAI's API (`/v1/models`, `/v1/completions`, `/v1/chat/completions`) over the server's
 * generators, as a fastify plugin: register it with `{ prefix: '/v1' }`. A transport only: every
 * generation goes through the generation front (protocol/generation.ts), which applies
 * `max_tokens` and `stop` for every protocol alike and batches on the model's engine.
 */
export async function openaiPlugin(app: FastifyInstance, options: OpenAIOptions): Promise<void> {
  const { registry } = options;
  const started = Math.floor(Date.now() / 1000);
  const bodyLimit = options.bodyLimit ?? OPENAI_BODY_LIMIT;
  const restrictions = parseRestrictions(options.httpRestrictedApi, HTTP_RESTRICTED);
  if (restrictions.size > 0)
    app.addHook('onRequest', async (request) => {
      const refused = refusedBy(restrictions, request.method === 'POST' ? 'inference' : 'metadata', (name) => {
        const value = request.headers[name];
        return Array.isArray(value) ? value[0] : value;
      });
      if (refused !== undefined)
        throw new ProtocolError('permission-denied', restrictedMessage(HTTP_RESTRICTED, refused));
    });

  // JSON only: a page on another site can POST text/plain or a form without asking (no CORS
  // preflight), but not application/json, so refusing the others (415) keeps /v1 out of reach
  // of cross-site requests. Parse errors are OpenAI-shaped 400s.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_request, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch (error) {
      done(
        new OpenAIParamError('body', `We could not parse the JSON body of your request: ${(error as Error).message}`),
      );
    }
  });
  app.setErrorHandler((error, request, reply) => {
    const answer = openAIAnswerFor(error);
    if (answer.status >= 500) request.log.error(error);
    void reply.code(answer.status).headers(answer.headers).send(answer.body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send({
      error: {
        message: `No route for ${request.method} ${request.url.slice(0, 200)}`,
        type: 'invalid_request_error',
        param: null,
        code: 'unknown_url',
      },
    });
  });

  /** One entry per model name: a request names a model, and reaches its highest version. */
  const models = () => {
    const seen = new Set<string>();
    return listGenerators(registry).flatMap((g) => {
      if (seen.has(g.name)) return [];
      seen.add(g.name);
      return [modelEntry(g.name, g.created ?? started)];
    });
  };
  app.get('/models', async () => ({ object: 'list', data: models() }));
  app.get<{ Params: { model: string } }>('/models/:model', async (request) => {
    const found = models().find((m) => m.id === request.params.model);
    if (found === undefined)
      throw new OpenAIParamError('model', `The model \`${request.params.model.slice(0, 100)}\` does not exist`, {
        status: 'not-found',
        code: 'model_not_found',
      });
    return found;
  });

  app.post('/completions', async (request, reply) => {
    const decoded = decodeCompletion(request.body);
    return answer(request, reply, 'completion', decoded, decoded.prompt, hangUp(reply));
  });
  app.post('/chat/completions', async (request, reply) => {
    const decoded = decodeChat(request.body);
    const signal = hangUp(reply);
    const prompt = await chatPrompt(registry, decoded.model, decoded.messages);
    return answer(request, reply, 'chat', decoded, prompt, signal);
  });

  async function answer(
    request: FastifyRequest,
    reply: FastifyReply,
    kind: 'completion' | 'chat',
    decoded: OpenAIGeneration,
    prompt: string,
    signal: AbortSignal,
  ): Promise<unknown> {
    const span = spanOf(request);
    // OpenTelemetry's GenAI conventions (v1.37.0), as the generate routes trace them.
    span?.setAttributes({
      'gen_ai.operation.name': kind === 'chat' ? 'chat' : 'text_completion',
      'gen_ai.provider.name': 'batched-fn',
      'gen_ai.request.model': decoded.model,
      'gen_ai.request.max_tokens': decoded.maxTokens,
      'gen_ai.request.temperature': decoded.parameters.temperature as number | undefined,
      'gen_ai.request.seed': decoded.parameters.seed as number | undefined,
    });
    const stream = startGeneration(registry, {
      model: decoded.model,
      prompt,
      parameters: decoded.parameters,
      ...(decoded.maxTokens === undefined ? {} : { maxTokens: decoded.maxTokens }),
      stop: decoded.stop,
      signal,
    });
    const head = answerHead(kind, decoded.model);
    const usageAttributes = (outcome: GenerationOutcome) => ({
      'gen_ai.usage.input_tokens': outcome.promptTokens,
      'gen_ai.usage.output_tokens': outcome.tokens,
      'gen_ai.response.finish_reasons': finishOf(outcome),
    });
    if (!decoded.stream) {
      let text = '';
      for await (const chunk of stream) text += chunk;
      const outcome = await stream.outcome;
      span?.setAttributes(usageAttributes(outcome));
      const usage = usageOf(outcome.promptTokens, outcome.tokens);
      return kind === 'chat'
        ? chatCompletion(head, text, finishOf(outcome), usage)
        : completion(head, text, finishOf(outcome), usage);
    }

    // The first chunk (or the refusal: a full queue, a bad parameter) decides the status: until
    // it is in, a failure is still a plain OpenAI error with its HTTP status.
    const chunks = stream[Symbol.asyncIterator]();
    const first = await chunks.next();
    reply.hijack();
    const sse = new SseWriter(reply.raw);
    const withUsage = decoded.includeUsage;
    const piece = (text: string) =>
      kind === 'chat'
        ? chatChunk(head, { content: text }, null, withUsage)
        : completionChunk(head, text, null, withUsage);
    let failure: string | undefined;
    try {
      if (kind === 'chat') await sse.send(chatChunk(head, { role: 'assistant', content: '' }, null, withUsage));
      for (let next = first; next.done !== true; next = await chunks.next()) {
        if (!sse.open) break;
        await sse.send(piece(next.value));
      }
      if (!sse.open) {
        // The client left: the sequence leaves the batch at the next step (the abort did it already).
        await chunks.return?.();
        endSpanOf(request, 499);
        return reply;
      }
      const outcome = await stream.outcome;
      const finish = finishOf(outcome);
      await sse.send(
        kind === 'chat' ? chatChunk(head, {}, finish, withUsage) : completionChunk(head, '', finish, withUsage),
      );
      if (withUsage)
        await sse.send(
          usageChunk(
            head,
            kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
            usageOf(outcome.promptTokens, outcome.tokens),
          ),
        );
      await sse.done();
      span?.setAttributes(usageAttributes(outcome));
    } catch (error) {
      // Past the status line: the error is the stream's last event, and the stream closes.
      const answer = openAIAnswerFor(error);
      failure = answer.body.error.type;
      if (answer.status >= 500) request.log.error(error);
      await sse.send(answer.body);
      sse.end();
    }
    // A hijacked reply skips fastify's onResponse: its span ends here (200 was sent, whatever followed).
    endSpanOf(request, 200, failure === undefined ? undefined : { 'error.type': failure });
    return reply;
  }
}
