import { once } from 'node:events';
import type { ServerResponse } from 'node:http';

/**
 * OpenAI's stream framing: server-sent events of one `data: <JSON>` line each, ended by
 * `data: [DONE]`. A failure after the first chunk cannot change the status any more: it is sent
 * as `data: {"error": {...}}` (which the `openai` client raises as an APIError) and the stream closes.
 *
 * Writing waits while the socket's buffer is full, so a slow reader holds back the pull of tokens
 * instead of growing this process's buffer; the generation front bounds what waits behind it.
 */
export class SseWriter {
  readonly #raw: ServerResponse;

  constructor(raw: ServerResponse) {
    this.#raw = raw;
    // No `connection` header: Node lets an explicit one override the request's `Connection: close`.
    raw.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  }

  /** False once the client is gone: the caller stops pulling tokens. */
  get open(): boolean {
    return !this.#raw.destroyed && !this.#raw.writableEnded;
  }

  async send(data: unknown): Promise<void> {
    await this.#write(`data: ${JSON.stringify(data)}\n\n`);
  }

  async #write(text: string): Promise<void> {
    if (!this.open) return;
    if (this.#raw.write(text)) return;
    // The buffer is full: wait until it drains, or the connection closes; then drop the other listener.
    const settled = new AbortController();
    const { signal } = settled;
    try {
      await Promise.race([once(this.#raw, 'drain', { signal }), once(this.#raw, 'close', { signal })]);
    } finally {
      settled.abort();
    }
  }

  /** `data: [DONE]`, then the end of the answer. */
  async done(): Promise<void> {
    await this.#write('data: [DONE]\n\n');
    this.end();
  }

  end(): void {
    if (!this.#raw.writableEnded) this.#raw.end();
  }
}
