import { clip } from '../protocol/status.js';
import { OpenAIParamError } from './errors.js';

/**
 * Decodes and checks the bodies of `POST /v1/completions` and `POST /v1/chat/completions`
 * against OpenAI's API reference (and the `openai` package's `CompletionCreateParams` and
 * `ChatCompletionCreateParams`, which is what clients send).
 *
 * Every field OpenAI defines is sorted into one of three kinds:
 * - read: the ones we implement (`model`, `prompt`/`messages`, `max_tokens`, `stop`, `stream`...);
 * - harmless: accepted and ignored, as they change nothing a client relies on (`user`, `metadata`);
 * - neutral only: a feature we do not implement (`logprobs`, `tools`, `n > 1`...), accepted only at
 *   its "off" value (absent, null, or the value OpenAI treats as off), else a 400 naming the field,
 *   so a client never gets a silently different answer than it asked for.
 * A field OpenAI does not define is a 400 in OpenAI's own words ("Unrecognized request argument").
 * Sampling settings go to the model as parameters: the model's `parameters` export decides which
 * it takes (the generation front refuses the rest, naming them).
 */

/** What both endpoints ask of the generation front. */
export interface OpenAIGeneration {
  model: string;
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk with `usage` (and `usage: null` on the others). */
  includeUsage: boolean;
  /** Absent: the model's own cap decides. */
  maxTokens: number | undefined;
  /** At most four, none empty. */
  stop: string[];
  /** Sampling settings for the model (`temperature`, `seed`, `top_p`...), only those given. */
  parameters: Record<string, unknown>;
}

export interface CompletionRequest extends OpenAIGeneration {
  prompt: string;
}

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatRequest extends OpenAIGeneration {
  messages: ChatMessage[];
}

/** OpenAI's legacy completions default to 16 tokens (its API reference); chat has no default. */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
/** OpenAI's limit on stop sequences. */
export const MAX_STOP = 4;
/** A stop sequence longer than this cannot be meant; it would only cost matching time. */
export const MAX_STOP_LENGTH = 256;

/** A client's value, described without echoing a structure (which could be deep or huge). */
function shown(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return clip(JSON.stringify(value));
  return String(value);
}

const absent = (value: unknown): boolean => value === undefined || value === null;

const refuse = (param: string, message: string): OpenAIParamError => new OpenAIParamError(param, message);

/** A feature we do not implement: its field may only carry its "off" value. */
type Neutral = (value: unknown) => boolean;
const isFalse: Neutral = (v) => absent(v) || v === false;
const isOne: Neutral = (v) => absent(v) || v === 1;
const isEmpty: Neutral = (v) =>
  absent(v) || (Array.isArray(v) && v.length === 0) || (isPlainObject(v) && Object.keys(v).length === 0);

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Fields of both endpoints that only their "off" value may carry, with why each is refused. */
const SHARED_NEUTRAL: Readonly<Record<string, readonly [Neutral, string]>> = {
  n: [isOne, 'n must be 1: this server generates one choice per request'],
  logit_bias: [isEmpty, '`logit_bias` is not supported by this server'],
};

const COMPLETION_NEUTRAL: Readonly<Record<string, readonly [Neutral, string]>> = {
  ...SHARED_NEUTRAL,
  best_of: [isOne, 'best_of must be 1: this server generates one choice per request'],
  echo: [isFalse, '`echo` is not supported by this server'],
  logprobs: [absent, '`logprobs` is not supported by this server'],
  suffix: [(v) => absent(v) || v === '', '`suffix` is not supported by this server'],
};

const CHAT_NEUTRAL: Readonly<Record<string, readonly [Neutral, string]>> = {
  ...SHARED_NEUTRAL,
  logprobs: [isFalse, '`logprobs` is not supported by this server'],
  top_logprobs: [(v) => absent(v) || v === 0, '`top_logprobs` is not supported by this server'],
  tools: [isEmpty, '`tools` are not supported by this server'],
  tool_choice: [(v) => absent(v) || v === 'none', '`tool_choice` is not supported by this server'],
  functions: [isEmpty, '`functions` are not supported by this server'],
  function_call: [(v) => absent(v) || v === 'none', '`function_call` is not supported by this server'],
  response_format: [
    (v) => absent(v) || (isPlainObject(v) && v.type === 'text' && Object.keys(v).length === 1),
    'response_format must be `{ "type": "text" }`: structured output is not supported by this server',
  ],
  audio: [absent, '`audio` output is not supported by this server'],
  modalities: [
    (v) => absent(v) || (Array.isArray(v) && v.length === 1 && v[0] === 'text'),
    'modalities must be ["text"]: this server answers text only',
  ],
  prediction: [absent, '`prediction` is not supported by this server'],
  reasoning_effort: [absent, '`reasoning_effort` is not supported by this server'],
  verbosity: [absent, '`verbosity` is not supported by this server'],
  web_search_options: [absent, '`web_search_options` is not supported by this server'],
};

/** Accepted and ignored: bookkeeping for OpenAI's platform, or settings of features off here. */
const SHARED_HARMLESS = ['user', 'stream_options'] as const;
const CHAT_HARMLESS = [
  ...SHARED_HARMLESS,
  'metadata',
  'store',
  'service_tier',
  'safety_identifier',
  'prompt_cache_key',
  'prompt_cache_retention',
  'parallel_tool_calls',
] as const;

/**
 * Sampling settings passed to the model as parameters when given. At their neutral value (OpenAI's
 * default) they are dropped, so a client that always sends `top_p: 1` still reaches a model that
 * does not take `top_p`.
 */
const SAMPLING: Readonly<Record<string, { min: number; max: number; neutral?: number }>> = {
  temperature: { min: 0, max: 2 },
  top_p: { min: 0, max: 1, neutral: 1 },
  frequency_penalty: { min: -2, max: 2, neutral: 0 },
  presence_penalty: { min: -2, max: 2, neutral: 0 },
};

const SHARED_READ = ['model', 'stream', 'max_tokens', 'stop', 'seed', ...Object.keys(SAMPLING)];
const COMPLETION_FIELDS = new Set([...SHARED_READ, 'prompt', ...SHARED_HARMLESS, ...Object.keys(COMPLETION_NEUTRAL)]);
const CHAT_FIELDS = new Set([
  ...SHARED_READ,
  'messages',
  'max_completion_tokens',
  ...CHAT_HARMLESS,
  ...Object.keys(CHAT_NEUTRAL),
]);

function checkFields(
  body: Record<string, unknown>,
  known: ReadonlySet<string>,
  neutral: Readonly<Record<string, readonly [Neutral, string]>>,
): void {
  for (const [field, value] of Object.entries(body)) {
    if (!known.has(field)) throw refuse(field, `Unrecognized request argument supplied: ${clip(field)}`);
    const rule = neutral[field];
    if (rule !== undefined && !rule[0](value)) throw refuse(field, `${rule[1]}, got ${shown(value)}`);
  }
}

function objectBody(body: unknown): Record<string, unknown> {
  if (!isPlainObject(body)) throw refuse('body', 'The request body must be a JSON object');
  return body;
}

function model(body: Record<string, unknown>): string {
  const value = body.model;
  if (typeof value !== 'string' || value.length === 0)
    throw refuse('model', `you must provide a model parameter (a string), got ${shown(value)}`);
  return value;
}

function boolean(body: Record<string, unknown>, field: string): boolean {
  const value = body[field];
  if (absent(value)) return false;
  if (typeof value !== 'boolean') throw refuse(field, `${field} must be true or false, got ${shown(value)}`);
  return value;
}

function includeUsage(body: Record<string, unknown>): boolean {
  const options = body.stream_options;
  if (absent(options)) return false;
  if (!isPlainObject(options))
    throw refuse('stream_options', `stream_options must be an object, got ${shown(options)}`);
  const value = options.include_usage;
  if (absent(value)) return false;
  if (typeof value !== 'boolean')
    throw refuse(
      'stream_options.include_usage',
      `stream_options.include_usage must be true or false, got ${shown(value)}`,
    );
  return value;
}

function positiveInteger(body: Record<string, unknown>, field: string): number | undefined {
  const value = body[field];
  if (absent(value)) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1)
    throw refuse(field, `${field} must be an integer from 1 and up, got ${shown(value)}`);
  return value;
}

function stop(body: Record<string, unknown>): string[] {
  const value = body.stop;
  if (absent(value)) return [];
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string'))
    throw refuse('stop', `stop must be a string or an array of strings, got ${shown(value)}`);
  if (list.length > MAX_STOP) throw refuse('stop', `stop takes at most ${MAX_STOP} sequences, got ${list.length}`);
  for (const s of list as string[])
    if (s.length > MAX_STOP_LENGTH)
      throw refuse('stop', `each stop sequence must be at most ${MAX_STOP_LENGTH} characters, got ${s.length}`);
  // An empty stop sequence would end every answer at once: OpenAI ignores it, and so do we.
  return (list as string[]).filter((s) => s.length > 0);
}

function parameters(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [field, range] of Object.entries(SAMPLING)) {
    const value = body[field];
    if (absent(value)) continue;
    if (typeof value !== 'number' || !(value >= range.min && value <= range.max))
      throw refuse(field, `${field} must be a number from ${range.min} to ${range.max}, got ${shown(value)}`);
    if (value !== range.neutral) out[field] = value;
  }
  const seed = body.seed;
  if (!absent(seed)) {
    if (typeof seed !== 'number' || !Number.isSafeInteger(seed))
      throw refuse('seed', `seed must be an integer, got ${shown(seed)}`);
    out.seed = seed;
  }
  return out;
}

function common(body: Record<string, unknown>, maxTokens: number | undefined): OpenAIGeneration {
  return {
    model: model(body),
    stream: boolean(body, 'stream'),
    includeUsage: includeUsage(body),
    maxTokens,
    stop: stop(body),
    parameters: parameters(body),
  };
}

/** `POST /v1/completions`: a prompt (one string, or an array of exactly one). */
export function decodeCompletion(raw: unknown): CompletionRequest {
  const body = objectBody(raw);
  checkFields(body, COMPLETION_FIELDS, COMPLETION_NEUTRAL);
  let prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') prompt = prompt[0];
  if (typeof prompt !== 'string')
    throw refuse(
      'prompt',
      Array.isArray(prompt)
        ? 'prompt must be one string: several prompts, or token ids, are not supported by this server'
        : `prompt must be a string, got ${shown(prompt)}`,
    );
  const maxTokens = positiveInteger(body, 'max_tokens') ?? COMPLETIONS_DEFAULT_MAX_TOKENS;
  return { ...common(body, maxTokens), prompt };
}

const ROLES = new Set(['system', 'developer', 'user', 'assistant']);
const MESSAGE_FIELDS = new Set(['role', 'content', 'name', 'refusal']);

/** A message's content: a string, or an array of text parts joined (OpenAI's content parts). */
function content(value: unknown, at: string, role: string): string {
  if (typeof value === 'string') return value;
  // An assistant turn may carry no content (it had tool calls, refused by then).
  if (absent(value) && role === 'assistant') return '';
  if (!Array.isArray(value)) throw refuse(at, `${at} must be a string or an array of text parts, got ${shown(value)}`);
  let text = '';
  value.forEach((part, j) => {
    if (!isPlainObject(part) || part.type !== 'text' || typeof part.text !== 'string')
      throw refuse(
        `${at}[${j}]`,
        isPlainObject(part) && typeof part.type === 'string' && part.type !== 'text'
          ? `${at}[${j}]: content parts of type ${shown(part.type)} are not supported by this server (text only)`
          : `${at}[${j}] must be { "type": "text", "text": string }`,
      );
    text += part.text;
  });
  return text;
}

function messages(value: unknown): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0)
    throw refuse('messages', `messages must be a non-empty array, got ${shown(value)}`);
  return value.map((message, i) => {
    const at = `messages[${i}]`;
    if (!isPlainObject(message)) throw refuse(at, `${at} must be an object, got ${shown(message)}`);
    const role = message.role;
    if (typeof role !== 'string' || !ROLES.has(role))
      throw refuse(
        `${at}.role`,
        role === 'tool' || role === 'function'
          ? `${at}.role: ${role} messages are not supported by this server (no tools)`
          : `${at}.role must be one of ${[...ROLES].join(', ')}, got ${shown(role)}`,
      );
    for (const field of Object.keys(message))
      if (!MESSAGE_FIELDS.has(field))
        throw refuse(
          `${at}.${clip(field)}`,
          field === 'tool_calls' || field === 'function_call' || field === 'audio'
            ? `${at}.${field} is not supported by this server`
            : `Unrecognized argument in ${at}: ${clip(field)}`,
        );
    if (message.name !== undefined && typeof message.name !== 'string')
      throw refuse(`${at}.name`, `${at}.name must be a string, got ${shown(message.name)}`);
    return { role, content: content(message.content, `${at}.content`, role) };
  });
}

/** `POST /v1/chat/completions`: messages, which the model's chat template turns into a prompt. */
export function decodeChat(raw: unknown): ChatRequest {
  const body = objectBody(raw);
  checkFields(body, CHAT_FIELDS, CHAT_NEUTRAL);
  // `max_tokens` is deprecated for `max_completion_tokens`; either is read, and two that disagree are refused.
  const newer = positiveInteger(body, 'max_completion_tokens');
  const older = positiveInteger(body, 'max_tokens');
  if (newer !== undefined && older !== undefined && newer !== older)
    throw refuse('max_tokens', `max_tokens (${older}) and max_completion_tokens (${newer}) disagree: give one`);
  return { ...common(body, newer ?? older), messages: messages(body.messages) };
}
