import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { type RunningServer, startServer } from '@batched-fn/server';
import { grpcClient } from './grpc-client.js';
import { messages, until } from './triton-helpers.js';

// A generator over gRPC, as tritonclient streams Triton's decoupled models: ModelStreamInfer answers
// one response per token, the last with `triton_final_response: true`; with the request parameter
// `enable_empty_final_response` the final response is empty and separate. The client is generated
// at run time from the shipped proto (grpc-client.ts), as a tritonclient user's would be.
const REPOSITORY = fileURLToPath(new URL('./fixtures/generators/', import.meta.url));

let server: RunningServer;
let client: ReturnType<typeof grpcClient>;
beforeAll(async () => {
  server = await startServer({ modelRepository: REPOSITORY, port: 0, grpcPort: 0, dashboard: 'off' });
  client = grpcClient(server.grpcUrl as string);
}, 60_000);
afterAll(async () => {
  client?.close();
  await server?.close();
});

interface Answer {
  error_message: string;
  infer_response: {
    id: string;
    model_name: string;
    outputs: { name: string; datatype: string; shape: number[] }[];
    raw_output_contents: Buffer[];
    parameters: Record<string, { bool_param?: boolean }>;
  };
}

/** A tritonclient-style request: the prompt as BYTES, sampling parameters as inputs or request parameters. */
const request = (
  id: string,
  prompt: string,
  parameters: Record<string, object> = {},
  inputs: object[] = [],
  model = 'echo',
) => ({
  model_name: model,
  id,
  inputs: [
    { name: 'text_input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from(prompt)] } },
    ...inputs,
  ],
  parameters,
});

/** A response's text (a raw BYTES element: 4-byte length, then the bytes), or undefined for an empty one. */
const textOf = (answer: Answer): string | undefined => {
  const raw = answer.infer_response.raw_output_contents[0];
  return raw === undefined ? undefined : raw.subarray(4, 4 + raw.readUInt32LE(0)).toString();
};
const isFinal = (answer: Answer): boolean =>
  answer.infer_response.parameters.triton_final_response?.bool_param === true;

/** Reads one request's responses up to its final one. */
async function until_final(answers: ReturnType<typeof messages<Answer>>): Promise<Answer[]> {
  const read: Answer[] = [];
  for (;;) {
    const answer = await answers.next();
    read.push(answer);
    if (answer.error_message !== '' || isFinal(answer)) return read;
  }
}

test('one response per token, the last with triton_final_response true; the text is REST’s', async () => {
  const stream = client.raw.ModelStreamInfer();
  const answers = messages<Answer>(stream);
  stream.write(request('r1', 'hello'));
  const read = await until_final(answers);
  expect(read.map(textOf)).toEqual(['h', 'e', 'l', 'l', 'o']);
  expect(read.map(isFinal)).toEqual([false, false, false, false, true]);
  expect(read[0]?.infer_response).toMatchObject({
    id: 'r1',
    model_name: 'echo',
    outputs: [{ name: 'text_output', datatype: 'BYTES', shape: [1] }],
  });
  // A sampling parameter as an input (BOOL [1]), another as a request parameter; max_tokens is the server's.
  stream.write(
    request('r2', 'hello world', { delay: { double_param: 1 }, max_tokens: { int64_param: 4 } }, [
      { name: 'upper', datatype: 'BOOL', shape: [1], contents: { bool_contents: [true] } },
    ]),
  );
  const capped = await until_final(answers);
  expect(capped.map(textOf).join('')).toBe('HELL');
  expect(capped.filter(isFinal)).toHaveLength(1);
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
  const rest = await fetch(`${server.url}/v2/models/echo/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text_input: 'hello' }),
  });
  expect(((await rest.json()) as { text_output: string }).text_output).toBe(read.map(textOf).join(''));
});

test('enable_empty_final_response: every token says false, and an empty response says true', async () => {
  const stream = client.raw.ModelStreamInfer();
  const answers = messages<Answer>(stream);
  stream.write(request('e1', 'abc', { enable_empty_final_response: { bool_param: true } }));
  const read = await until_final(answers);
  expect(read.map(textOf)).toEqual(['a', 'b', 'c', undefined]);
  expect(read.map(isFinal)).toEqual([false, false, false, true]);
  expect(read[3]?.infer_response.outputs).toEqual([]);
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
});

test('a stop string spanning tokens is never sent; the final flag comes once', async () => {
  const stream = client.raw.ModelStreamInfer();
  const answers = messages<Answer>(stream);
  stream.write(request('s1', 'hello world', { stop: { string_param: 'lo w' } }));
  const read = await until_final(answers);
  expect(read.map(textOf).join('')).toBe('hel');
  expect(read.filter(isFinal)).toHaveLength(1);
  expect(isFinal(read.at(-1) as Answer)).toBe(true);
  stream.end();
  await answers.status;
});

test('a refused request is one response with its error_message, and the stream goes on', async () => {
  const stream = client.raw.ModelStreamInfer();
  const answers = messages<Answer>(stream);
  stream.write(request('bad', 'x', { temperature: { double_param: 1 } }));
  expect(await answers.next()).toMatchObject({
    error_message: 'Unknown sampling parameter `temperature` (the model accepts `delay`, `upper`)',
    infer_response: { id: 'bad' },
  });
  stream.write(
    request('bad2', 'x', {}, [{ name: 'top_k', datatype: 'INT32', shape: [1], contents: { int_contents: [1] } }]),
  );
  expect((await answers.next()).error_message).toBe(
    "Model 'echo' has no input `top_k` (it takes `text_input`, `delay`, `upper`)",
  );
  stream.write(request('good', 'ok'));
  expect((await until_final(answers)).map(textOf).join('')).toBe('ok');
  stream.end();
  expect(await answers.status).toMatchObject({ code: status.OK });
});

test('gRPC ModelConfig says decoupled, and ModelStatistics carries response_stats', async () => {
  const { config } = await client.call('ModelConfig', { name: 'echo' });
  expect(config.model_transaction_policy).toEqual({ decoupled: true });
  expect(config.max_batch_size).toBe(0);
  const { model_stats } = await client.call('ModelStatistics', { name: 'echo' });
  const first = model_stats[0].response_stats['0'];
  expect(first.success.count).toBeGreaterThan(0);
  expect(Object.keys(first).sort()).toEqual([
    'cancel',
    'compute_infer',
    'compute_output',
    'empty_response',
    'fail',
    'success',
  ]);
});

test('unary ModelInfer on a generator is refused as Triton refuses decoupled models', async () => {
  expect(await client.fails('ModelInfer', request('u', 'x'))).toEqual({
    code: status.INVALID_ARGUMENT,
    details: "ModelInfer RPC doesn't support models with decoupled transaction policy",
  });
});

test('a cancelled stream leaves the batch at the next step', async () => {
  const echo = () => server.generators.find((g) => g.name === 'echo')?.generate.stats;
  const aborted = echo()?.ended.aborted ?? 0;
  const stream = client.raw.ModelStreamInfer();
  const answers = messages<Answer>(stream);
  stream.write(request('c1', 'a long prompt that takes a while', { delay: { double_param: 20 } }));
  expect(textOf(await answers.next())).toBe('a');
  expect(echo()?.active).toBe(1);
  stream.cancel();
  await until(() => echo()?.active === 0);
  expect(echo()?.active).toBe(0);
  expect(echo()?.ended.aborted).toBe(aborted + 1);
  expect((await answers.status).code).toBe(status.CANCELLED);
});
