/**
 * Load for generative models: `streams` clients, each opening a
 * `generate_stream` with `max_tokens` drawn uniformly from 1..128 (seeded),
 * and opening the next one as soon as it ends. Reports tokens/s, time to
 * first token and the gap between tokens, from the client's side.
 */
export interface GenerateLoadOptions {
  url: string;
  model: string;
  streams: number;
  durationSeconds: number;
  seed?: number;
}

export interface GenerateLoadResult {
  streams: number;
  tokensPerSecond: number;
  ttftP50: number;
  ttftP99: number;
  interTokenP99: number;
  completed: number;
  errors: number;
}

const at = (sorted: number[], q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;

export async function runGenerateLoad(options: GenerateLoadOptions): Promise<GenerateLoadResult> {
  let state = (options.seed ?? 1) >>> 0 || 1;
  const random = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 4294967296;
  };
  const ttft: number[] = [];
  const gaps: number[] = [];
  let tokens = 0;
  let completed = 0;
  let errors = 0;
  const end = performance.now() + options.durationSeconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.streams }, async (_, client) => {
      while (performance.now() < end) {
        const maxTokens = 1 + Math.floor(random() * 128);
        const sent = performance.now();
        try {
          const response = await fetch(`${options.url}/v2/models/${options.model}/generate_stream`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ text_input: `client ${client}`, parameters: { max_tokens: maxTokens } }),
          });
          if (response.status !== 200 || response.body === null) {
            errors++;
            await response.body?.cancel();
            continue;
          }
          let last = 0;
          let buffer = '';
          const decoder = new TextDecoder();
          for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
            buffer += decoder.decode(chunk, { stream: true });
            let cut = buffer.indexOf('\n\n');
            while (cut >= 0) {
              const event = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              cut = buffer.indexOf('\n\n');
              if (!event.startsWith('data: ') || event.includes('"error"')) continue;
              const now = performance.now();
              if (last === 0) ttft.push(now - sent);
              else gaps.push(now - last);
              last = now;
              tokens++;
            }
          }
          completed++;
        } catch {
          errors++;
        }
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  ttft.sort((a, b) => a - b);
  gaps.sort((a, b) => a - b);
  return {
    streams: options.streams,
    tokensPerSecond: tokens / seconds,
    ttftP50: at(ttft, 0.5),
    ttftP99: at(ttft, 0.99),
    interTokenP99: at(gaps, 0.99),
    completed,
    errors,
  };
}
