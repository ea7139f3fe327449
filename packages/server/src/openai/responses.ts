import { randomBytes } from 'node:crypto';

/**
 * The answers of OpenAI's completions and chat completions, whole and as stream chunks, shaped as
 * the `openai` package's `Completion`, `ChatCompletion` and `ChatCompletionChunk` types.
 */

export type OpenAIFinishReason = 'stop' | 'length';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export const usageOf = (promptTokens: number, completionTokens: number): Usage => ({
  prompt_tokens: promptTokens,
  completion_tokens: completionTokens,
  total_tokens: promptTokens + completionTokens,
});

/** What every chunk of one answer shares: OpenAI gives each chunk the same id, `created` and `model`. */
export interface AnswerHead {
  id: string;
  created: number;
  model: string;
}

/** A new answer's head: `cmpl-…` or `chatcmpl-…` (OpenAI's prefixes) and the time in Unix seconds. */
export function answerHead(kind: 'completion' | 'chat', model: string): AnswerHead {
  const prefix = kind === 'chat' ? 'chatcmpl-' : 'cmpl-';
  return { id: `${prefix}${randomBytes(12).toString('base64url')}`, created: Math.floor(Date.now() / 1000), model };
}

export const completion = (head: AnswerHead, text: string, finish: OpenAIFinishReason, usage: Usage) => ({
  ...head,
  object: 'text_completion' as const,
  choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
  usage,
});

/**
 * One chunk of a streamed completion: a piece of text, or (with `finish`) the last, empty one. As
 * OpenAI streams them, a chunk's `finish_reason` is null until the last (the `openai` package types
 * stream chunks as `Completion`, whose `finish_reason` is never null: the wire has it null).
 */
export const completionChunk = <F extends OpenAIFinishReason | null>(
  head: AnswerHead,
  text: string,
  finish: F,
  withUsage: boolean,
) => ({
  ...head,
  object: 'text_completion' as const,
  choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
  ...(withUsage ? { usage: null } : {}),
});

export const chatCompletion = (head: AnswerHead, text: string, finish: OpenAIFinishReason, usage: Usage) => ({
  ...head,
  object: 'chat.completion' as const,
  choices: [
    {
      index: 0,
      message: { role: 'assistant' as const, content: text, refusal: null },
      logprobs: null,
      finish_reason: finish,
    },
  ],
  usage,
});

/**
 * One chunk of a streamed chat completion. As OpenAI streams: the first delta carries the role,
 * the following ones content, and the last one is empty with the finish reason.
 */
export const chatChunk = (
  head: AnswerHead,
  delta: { role?: 'assistant'; content?: string },
  finish: OpenAIFinishReason | null,
  withUsage: boolean,
) => ({
  ...head,
  object: 'chat.completion.chunk' as const,
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  ...(withUsage ? { usage: null } : {}),
});

/** With `stream_options.include_usage`: the chunk before `[DONE]`, with no choices and the request's usage. */
export const usageChunk = <O extends 'text_completion' | 'chat.completion.chunk'>(
  head: AnswerHead,
  object: O,
  usage: Usage,
) => ({
  ...head,
  object,
  choices: [],
  usage,
});

/** `GET /v1/models`'s entry for one model. */
export const modelEntry = (id: string, created: number) => ({
  id,
  object: 'model' as const,
  created,
  owned_by: 'batched-fn',
});
