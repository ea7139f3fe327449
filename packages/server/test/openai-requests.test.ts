import { QueueFullError } from 'batched-fn';
import type OpenAI from 'openai';
import { expect, test } from 'vitest';
import { openAIAnswerFor, OpenAIParamError } from '../dist/openai/errors.js';
import { decodeChat, decodeCompletion } from '../dist/openai/requests.js';
import {
  answerHead,
  chatChunk,
  chatCompletion,
  completion,
  completionChunk,
  modelEntry,
  usageChunk,
  usageOf,
} from '../dist/openai/responses.js';
import { ProtocolError } from '../dist/protocol/errors.js';

// The OpenAI API's request decoding and error shape, without a server: every field of the
// `openai` package's CompletionCreateParams / ChatCompletionCreateParams is read, accepted or refused.

const refusal = (fn: () => unknown): { param: string; message: string } => {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(OpenAIParamError);
    return { param: (error as OpenAIParamError).param, message: (error as Error).message };
  }
  throw new Error('expected a refusal');
};

test('completions: the fields read, with OpenAI defaults (max_tokens 16) and neutral sampling values dropped', () => {
  expect(decodeCompletion({ model: 'm', prompt: 'Hi' })).toEqual({
    model: 'm',
    prompt: 'Hi',
    stream: false,
    includeUsage: false,
    maxTokens: 16,
    stop: [],
    parameters: {},
  });
  expect(
    decodeCompletion({
      model: 'm',
      prompt: ['Hi'],
      max_tokens: 5,
      temperature: 0.7,
      top_p: 1,
      frequency_penalty: 0,
      presence_penalty: 0.5,
      seed: 42,
      stop: 'x',
      stream: true,
      stream_options: { include_usage: true },
      user: 'u',
      n: 1,
      best_of: null,
      echo: false,
      logprobs: null,
      logit_bias: {},
      suffix: null,
    }),
  ).toEqual({
    model: 'm',
    prompt: 'Hi',
    stream: true,
    includeUsage: true,
    maxTokens: 5,
    stop: ['x'],
    parameters: { temperature: 0.7, presence_penalty: 0.5, seed: 42 },
  });
});

test('completions: unsupported and malformed fields are 400s naming the field', () => {
  const base = { model: 'm', prompt: 'Hi' };
  expect(refusal(() => decodeCompletion({ ...base, n: 2 }))).toEqual({
    param: 'n',
    message: 'n must be 1: this server generates one choice per request, got 2',
  });
  expect(refusal(() => decodeCompletion({ ...base, best_of: 3 })).param).toBe('best_of');
  expect(refusal(() => decodeCompletion({ ...base, echo: true })).param).toBe('echo');
  expect(refusal(() => decodeCompletion({ ...base, logprobs: 2 })).param).toBe('logprobs');
  expect(refusal(() => decodeCompletion({ ...base, logit_bias: { 50256: -100 } })).param).toBe('logit_bias');
  expect(refusal(() => decodeCompletion({ ...base, suffix: 'end' })).param).toBe('suffix');
  expect(refusal(() => decodeCompletion({ ...base, frobnicate: 1 }))).toEqual({
    param: 'frobnicate',
    message: 'Unrecognized request argument supplied: frobnicate',
  });
  expect(refusal(() => decodeCompletion({ ...base, prompt: ['a', 'b'] }))).toEqual({
    param: 'prompt',
    message: 'prompt must be one string: several prompts, or token ids, are not supported by this server',
  });
  expect(refusal(() => decodeCompletion({ ...base, prompt: [1, 2] })).param).toBe('prompt');
  expect(refusal(() => decodeCompletion({ prompt: 'Hi' })).param).toBe('model');
  expect(refusal(() => decodeCompletion({ ...base, stop: ['a', 'b', 'c', 'd', 'e'] }))).toEqual({
    param: 'stop',
    message: 'stop takes at most 4 sequences, got 5',
  });
  expect(refusal(() => decodeCompletion({ ...base, stop: [1] })).param).toBe('stop');
  expect(refusal(() => decodeCompletion({ ...base, max_tokens: 0 }))).toEqual({
    param: 'max_tokens',
    message: 'max_tokens must be an integer from 1 and up, got 0',
  });
  expect(refusal(() => decodeCompletion({ ...base, temperature: 3 }))).toEqual({
    param: 'temperature',
    message: 'temperature must be a number from 0 to 2, got 3',
  });
  expect(refusal(() => decodeCompletion({ ...base, seed: 1.5 })).param).toBe('seed');
  expect(refusal(() => decodeCompletion({ ...base, stream: 'yes' })).param).toBe('stream');
  expect(refusal(() => decodeCompletion({ ...base, stream_options: { include_usage: 1 } })).param).toBe(
    'stream_options.include_usage',
  );
  expect(refusal(() => decodeCompletion([base])).param).toBe('body');
  // Empty stop sequences are dropped (they would end every answer at once).
  expect(decodeCompletion({ ...base, stop: ['', 'x'] }).stop).toEqual(['x']);
});

test('chat: messages (string or text parts), max_completion_tokens over max_tokens, no default max', () => {
  expect(
    decodeChat({
      model: 'm',
      messages: [
        { role: 'system', content: 'Be brief.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Hel' },
            { type: 'text', text: 'lo' },
          ],
          name: 'ann',
        },
        { role: 'assistant', content: null },
      ],
      max_completion_tokens: 7,
      tools: [],
      tool_choice: 'none',
      response_format: { type: 'text' },
      modalities: ['text'],
      logprobs: false,
      metadata: { a: 'b' },
      store: false,
      parallel_tool_calls: true,
    }),
  ).toEqual({
    model: 'm',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello' },
      { role: 'assistant', content: '' },
    ],
    stream: false,
    includeUsage: false,
    maxTokens: 7,
    stop: [],
    parameters: {},
  });
  expect(decodeChat({ model: 'm', messages: [{ role: 'user', content: 'x' }] }).maxTokens).toBeUndefined();
  expect(decodeChat({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 3 }).maxTokens).toBe(3);
});

test('chat: tools, logprobs, structured output, images and tool messages are 400s naming the field', () => {
  const base = { model: 'm', messages: [{ role: 'user', content: 'Hi' }] };
  const tool = { type: 'function', function: { name: 'f', parameters: {} } };
  expect(refusal(() => decodeChat({ ...base, tools: [tool] })).param).toBe('tools');
  expect(refusal(() => decodeChat({ ...base, logprobs: true })).param).toBe('logprobs');
  expect(refusal(() => decodeChat({ ...base, top_logprobs: 2 })).param).toBe('top_logprobs');
  expect(refusal(() => decodeChat({ ...base, response_format: { type: 'json_object' } })).param).toBe(
    'response_format',
  );
  expect(refusal(() => decodeChat({ ...base, n: 3 })).param).toBe('n');
  expect(refusal(() => decodeChat({ ...base, reasoning_effort: 'high' })).param).toBe('reasoning_effort');
  expect(refusal(() => decodeChat({ ...base, max_tokens: 3, max_completion_tokens: 4 })).param).toBe('max_tokens');
  expect(refusal(() => decodeChat({ ...base, messages: [] })).param).toBe('messages');
  expect(
    refusal(() =>
      decodeChat({
        ...base,
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png' } }] }],
      }),
    ),
  ).toEqual({
    param: 'messages[0].content[0]',
    message: 'messages[0].content[0]: content parts of type "image_url" are not supported by this server (text only)',
  });
  expect(refusal(() => decodeChat({ ...base, messages: [{ role: 'tool', content: 'x' }] })).param).toBe(
    'messages[0].role',
  );
  expect(
    refusal(() => decodeChat({ ...base, messages: [{ role: 'assistant', content: 'x', tool_calls: [] }] })).param,
  ).toBe('messages[0].tool_calls');
  expect(refusal(() => decodeChat({ ...base, messages: [{ role: 'user' }] })).param).toBe('messages[0].content');
  expect(refusal(() => decodeChat({ ...base, prompt: 'x' })).param).toBe('prompt');
});

test("errors in OpenAI's shape and statuses: 400, 404 model_not_found, 429 with Retry-After, 503, 500", () => {
  expect(openAIAnswerFor(new OpenAIParamError('n', 'n must be 1'))).toEqual({
    status: 400,
    headers: {},
    body: { error: { message: 'n must be 1', type: 'invalid_request_error', param: 'n', code: null } },
  });
  expect(openAIAnswerFor(new ProtocolError('not-found', 'Unknown generative model `x`'))).toEqual({
    status: 404,
    headers: {},
    body: {
      error: {
        message: 'Unknown generative model `x`',
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      },
    },
  });
  const full = openAIAnswerFor(new QueueFullError(4));
  expect(full.status).toBe(429);
  expect(full.headers).toEqual({ 'retry-after': '1' });
  expect(full.body.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
  expect(full.body.error.message).toMatch(/^ERR_QUEUE_FULL: /);
  const draining = openAIAnswerFor(new ProtocolError('unavailable', 'not ready', { retryAfter: 1 }));
  expect([draining.status, draining.headers, draining.body.error.type]).toEqual([
    503,
    { 'retry-after': '1' },
    'server_error',
  ]);
  expect(openAIAnswerFor(new Error('boom'))).toEqual({
    status: 500,
    headers: {},
    body: { error: { message: 'Model failed: boom', type: 'server_error', param: null, code: null } },
  });
});

test("every answer is assignable to the openai package's own type (checked by tsc), with OpenAI's ids", () => {
  const head = answerHead('completion', 'm');
  const usage = usageOf(3, 4);
  expect(usage).toEqual({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
  const whole: OpenAI.Completion = completion(head, 'text', 'length', usage);
  // OpenAI sends `finish_reason: null` and `usage: null` on a piece, which its own `Completion` type does not allow.
  const piece = completionChunk(head, 'te', null, true);
  const last: Omit<OpenAI.Completion, 'usage'> = completionChunk(head, '', 'length', false);
  const chatHead = answerHead('chat', 'm');
  const chat: OpenAI.ChatCompletion = chatCompletion(chatHead, 'text', 'stop', usage);
  const chunks: OpenAI.ChatCompletionChunk[] = [
    chatChunk(chatHead, { role: 'assistant', content: '' }, null, true),
    chatChunk(chatHead, { content: 'te' }, null, true),
    chatChunk(chatHead, {}, 'stop', true),
    usageChunk(chatHead, 'chat.completion.chunk', usage),
  ];
  const model: OpenAI.Model = modelEntry('m', 1);
  expect(head.id).toMatch(/^cmpl-[A-Za-z0-9_-]{16}$/);
  expect(chatHead.id).toMatch(/^chatcmpl-[A-Za-z0-9_-]{16}$/);
  expect(answerHead('chat', 'm').id).not.toBe(chatHead.id);
  expect([whole.object, piece.usage, last.choices[0]?.finish_reason, chat.choices[0]?.message]).toEqual([
    'text_completion',
    null,
    'length',
    { role: 'assistant', content: 'text', refusal: null },
  ]);
  expect([chunks[3]?.choices, model.object]).toEqual([[], 'model']);
});
