import type { BatchedStream } from 'batched-fn';

/**
 * The generator half of the served-model contract: a ServedModel with a `generator` answers a
 * prompt with a stream of text values (formats/generator.ts builds it, protocol/generation.ts
 * serves it on every transport). The model never sees `max_tokens` or `stop`: the server applies them.
 */

/** What a generator's `start` receives per sequence (the issue #23 contract). */
export interface GeneratorPrompt {
  text: string;
  /** Sampling parameters, only names the model accepts (its `parameters` export). */
  parameters: Record<string, unknown>;
}

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ServedGenerator {
  /** The running sequences, one value (a token's text) per step each. */
  readonly stream: BatchedStream<GeneratorPrompt, string>;
  /** The sampling parameters the model accepts; any other name is the client's error. */
  readonly parameters: readonly string[];
  /** The most tokens a request may ask for. */
  readonly maxTokens: number;
  /** Tokens generated when a request sets none (at most `maxTokens`). */
  readonly defaultMaxTokens: number;
  /** The longest prompt, in UTF-16 code units. */
  readonly maxPrompt: number;
  /** Most sequences in one step. */
  readonly maxActive: number;
  readonly batching: 'continuous' | 'static';
  /** When this instance was built, in Unix seconds (OpenAI's `created`). */
  readonly created: number;
  /** Whether the model exports `chatTemplate` (else the server's default template applies). */
  readonly hasChatTemplate: boolean;
  /** Runs the model's `chatTemplate(messages)` where its code runs (a worker thread); rejects without one. */
  chatTemplate(messages: readonly ChatMessage[]): Promise<string>;
}
