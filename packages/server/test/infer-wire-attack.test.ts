import type { ClientHttp2Session } from 'node:http2';
import { isDeepStrictEqual } from 'node:util';
import { status } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterEach, expect, test } from 'vitest';
import { type RunningServer, serveModel } from '@batched-fn/server';
import { ProtocolError } from '../src/protocol/errors.js';
import { parseModelInferRequest } from '../src/grpc/infer-request-wire.js';
import {
  serializeModelInferResponse,
  serializeModelStreamInferResponse,
  type WireInferResponse,
  type WireParameter,
} from '../src/grpc/infer-response-wire.js';
import { PROTO_OPTIONS, PROTO_PATH } from '../src/grpc/proto.js';
import { scanModelInferRequest, type WireLimits } from '../src/grpc/wire-scan.js';
import { grpcClient } from './grpc-client.js';
import { gatedModel } from './helpers.js';
import { frame, rawSession as openRawSession, rawCall as sendRaw } from './raw-grpc.js';

// Attacks on the gRPC wire codecs of cd97b84 (infer-request-wire.ts, infer-response-wire.ts):
// the request decoder against protobufjs and against the wire scan that runs before it, the
// response writer against protobufjs's reading of it, and the same through a real server.

type Method = {
  requestDeserialize(bytes: Buffer): unknown;
  responseSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
};
const methods = (options: object) =>
  loadSync(PROTO_PATH, { ...PROTO_OPTIONS, ...options })['inference.GRPCInferenceService'] as unknown as Record<
    string,
    Method
  >;
/** protobufjs as the server used it before: 64-bit integers as strings, absent fields absent. */
const protobufjs = (methods({ longs: String, defaults: false }).ModelInfer as Method).requestDeserialize;
const LIMITS: WireLimits = { maxTensors: 1024, maxObjects: 65536, maxBytesElements: 1 << 20 };

/** The server's path: the scan, then the decoder; a refusal is a ProtocolError (anything else would be a bug). */
const ours = (bytes: Buffer, limits: WireLimits = LIMITS) => {
  scanModelInferRequest(bytes, limits);
  return parseModelInferRequest(bytes);
};
/** What the server makes of `bytes`: its request, or the ProtocolError it refuses them with. */
const outcome = (
  bytes: Buffer,
  limits: WireLimits = LIMITS,
): { request?: ReturnType<typeof parseModelInferRequest>; refused?: ProtocolError } => {
  try {
    return { request: ours(bytes, limits) };
  } catch (error) {
    expect(error).toBeInstanceOf(ProtocolError);
    return { refused: error as ProtocolError };
  }
};
const plain = (value: unknown): unknown => {
  if (Buffer.isBuffer(value)) return { buffer: [...value] };
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  if (typeof value === 'number' && (Number.isNaN(value) || Object.is(value, -0))) return String(value);
  return value;
};

// ---- Wire building ----

/** A varint of a 64-bit value (two's complement), with `pad` extra non-minimal bytes (10 at most in all). */
const varint = (value: number | bigint, pad = 0): number[] => {
  let rest = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    out.push(Number(rest & 0x7fn));
    rest >>= 7n;
  } while (rest > 0n);
  for (; pad > 0 && out.length < 10; pad--) out.push(0);
  return out.map((byte, i) => (i < out.length - 1 ? byte | 0x80 : byte));
};
/** A tag, with `pad` non-minimal bytes while it stays within five (protobufjs misreads a longer one). */
const tag = (field: number, wire: number, pad = 0): number[] => {
  const padded = varint(field * 8 + wire, pad);
  return padded.length <= 5 ? padded : varint(field * 8 + wire);
};
/** A length-delimited field: tag, length, content. */
const field = (number: number, content: number[]): number[] => [
  ...tag(number, 2),
  ...varint(content.length),
  ...content,
];
const ascii = (text: string): number[] => [...Buffer.from(text)];
/** A tag of five bytes whose last byte carries bit 32 (0x10): the low 32 bits are `field`/`wire`'s tag. */
const tagWithBit32 = (number: number, wire: number): number[] => {
  const low = number * 8 + wire;
  return [
    (low & 0x7f) | 0x80,
    ((low >>> 7) & 0x7f) | 0x80,
    ((low >>> 14) & 0x7f) | 0x80,
    ((low >>> 21) & 0x7f) | 0x80,
    0x10,
  ];
};

// ---- 1. The wire scan and the decoder read a five-byte tag differently ----

test('a five-byte tag past 32 bits is refused, never read as `inputs` the scan did not count (--max-tensors)', () => {
  // Field 5 (inputs), length 0, written as aa 80 80 80 10 00. The scan reads the tag as 35 bits
  // (field 2^29 + 5, unknown: skipped, not counted); the decoder, like protobufjs, keeps the low
  // 32 bits (0x2a: field 5, an input). 2000 inputs past a limit of 1024.
  const bytes = Buffer.from(Array.from({ length: 2000 }, () => [...tagWithBit32(5, 2), 0]).flat());
  const result = outcome(bytes);
  // Before the fix the scan skipped it as an unknown field and the decoder built 2000 inputs.
  expect(result.request).toBeUndefined();
  expect(result.refused?.protocolStatus).toBe('invalid-argument');
  expect(result.refused?.message).toMatch(/tag is larger than 32 bits/);
});

test('a five-byte tag past 32 bits cannot hide typed INT64 contents from the scan (--max-objects)', () => {
  // Packed int64_contents (field 3 of InferTensorContents) tagged 9a 80 80 80 10: 100,000 zero bytes,
  // each a decimal string in the decoder; the scan counted none of them (limit 65,536). An 8 MiB
  // message of this is 8.4 M strings, the attack countLongs was written against.
  const zeros = Array(100_000).fill(0) as number[];
  const contents = [...tagWithBit32(3, 2), ...varint(zeros.length), ...zeros];
  const bytes = Buffer.from(field(5, field(5, contents)));
  const result = outcome(bytes);
  expect(result.request).toBeUndefined();
  expect(result.refused?.message).toMatch(/tag is larger than 32 bits/);
});

// ---- 2. A packed 64-bit varint longer than 10 bytes ----

test('a packed `shape` varint of 11 bytes is refused, as protobufjs refused it ("invalid varint encoding")', () => {
  const bytes = Buffer.from(field(5, field(3, [...Array(10).fill(0x80), 0x00])));
  expect(() => protobufjs(bytes)).toThrow(/invalid varint encoding/);
  // The decoder reads 10 bytes as one dimension, then the 11th as a second: shape ['0', '0'].
  const result = outcome(bytes);
  expect(result.request === undefined ? result.refused?.protocolStatus : plain(result.request)).toBe(
    'invalid-argument',
  );
});

test('an over-long packed varint is refused, never split into more dimensions or INT64 strings than the scan counted (--max-objects)', () => {
  const limits: WireLimits = { maxTensors: 8, maxObjects: 100, maxBytesElements: 100 };
  // 5,000 bytes of 0x80 and one 0x00: one varint to the scan (one byte below 0x80); before the fix,
  // 501 to the decoder, which cut it every 10 bytes.
  const run = [...Array(5000).fill(0x80), 0x00] as number[];
  for (const bytes of [field(5, field(3, run)), field(5, field(5, field(3, run)))]) {
    const result = outcome(Buffer.from(bytes), limits);
    expect(result.request).toBeUndefined();
    expect(result.refused?.message).toMatch(/varint is longer than 10 bytes/);
  }
});

test('an int64_param varint of 11 bytes is refused, as protobufjs refused it', () => {
  // The parameter value 10 80 x10 08 01: an 11-byte int64_param, read by the decoder as 10 bytes
  // (int64 0), then `08 01` as a bool_param: {k: bool_param true}. protobufjs refused the message.
  const bytes = Buffer.from(
    field(4, [...field(1, ascii('k')), ...field(2, [0x10, ...Array(10).fill(0x80), 0x08, 0x01])]),
  );
  expect(() => protobufjs(bytes)).toThrow(/invalid varint encoding/);
  const result = outcome(bytes);
  expect(result.request === undefined ? result.refused?.protocolStatus : plain(result.request)).toBe(
    'invalid-argument',
  );
});

// ---- 3. Differential against protobufjs, on what protobufjs reads as the spec says ----

/** A deterministic generator (a seeded LCG): the same messages on every run. */
function messages(seed: number) {
  let state = seed;
  const random = (): number => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state / 0x80000000;
  };
  const int = (n: number): number => Math.floor(random() * n);
  const pick = <T>(values: readonly T[]): T => values[int(values.length)] as T;
  const INT64 = [0n, 1n, 127n, 128n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 49n - 1n, 2n ** 49n];
  const more = [2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, -1n, -(2n ** 31n), -(2n ** 63n)];
  const int64 = (): number[] => varint(pick([...INT64, ...more]), random() < 0.1 ? int(3) : 0);
  // 32-bit numbers as protobuf writes them (5 bytes at most, a negative int32 in 10): protobufjs
  // misreads a 6- to 9-byte varint there (it skips to the tenth byte), which the spec allows.
  const int32 = (): number[] => varint(pick([0n, 1n, 127n, 128n, 2n ** 31n - 1n, -(2n ** 31n), -1n, 2n ** 32n - 1n]));
  /** Valid UTF-8, invalid sequences, NUL, surrogates encoded in UTF-8 (invalid), overlongs. */
  const text = (): number[] => {
    const units = [[0x61], [0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80], [0xff], [0xed, 0xa0, 0x80]];
    const more = [[0xc0, 0x80], [0x00], [0xe2, 0x82], [0x80]];
    return Array.from({ length: int(6) }, () => pick([...units, ...more])).flat();
  };
  const float = (size: 4 | 8): number[] => {
    const bytes = Buffer.alloc(size);
    const value = pick([0, -0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1.5, 5e-324, 3e38]);
    if (size === 4) bytes.writeFloatLE(value);
    else bytes.writeDoubleLE(value);
    if (random() < 0.2) bytes.writeUInt32LE(int(2 ** 32));
    return [...bytes];
  };
  const lengthDelimited = (number: number, content: number[]): number[] => [
    ...tag(number, 2, random() < 0.1 ? 1 : 0),
    ...varint(content.length, random() < 0.05 ? 1 : 0),
    ...content,
  ];
  /** An unknown field: any number up to 2^29 - 1 (tags of one to five bytes), any wire type but groups. */
  const unknown = (): number[] => {
    const number = pick([9, 15, 16, 100, 2047, 2048, 262_143, 262_144, 2 ** 29 - 1, 10 + int(2 ** 29 - 11)]);
    switch (pick([0, 1, 2, 5])) {
      case 0:
        return [...tag(number, 0), ...int64()];
      case 1:
        return [...tag(number, 1), ...float(8)];
      case 5:
        return [...tag(number, 5), ...float(4)];
      default:
        return lengthDelimited(number, text());
    }
  };
  const noise = (): number[] => (random() < 0.2 ? unknown() : []);
  // One member of the oneof a parameter (the documented deviations left out: two members, a bool past 32 bits).
  const parameter = (): number[] => {
    const member = [
      () => [...tag(1, 0), ...varint(int(2), random() < 0.1 ? 2 : 0)],
      () => [...tag(2, 0), ...int64()],
      () => lengthDelimited(3, text()),
      () => [...tag(4, 1), ...float(8)],
      () => [...tag(5, 0), ...int64()],
    ];
    return [...noise(), ...pick(member)(), ...noise()];
  };
  const entry = (): number[] => {
    const parts = [lengthDelimited(1, text()), lengthDelimited(2, parameter())];
    if (random() < 0.3) parts.reverse();
    return [...noise(), ...parts.flat(), ...noise()];
  };
  const contents = (): number[] => {
    const out: number[] = [];
    for (let i = int(7); i > 0; i--) {
      const number = 1 + int(8);
      const element = (): number[] =>
        number === 1
          ? varint(int(2))
          : number === 6
            ? float(4)
            : number === 7
              ? float(8)
              : number === 3 || number === 5
                ? int64()
                : int32();
      if (number === 8) out.push(...lengthDelimited(8, text()));
      else if (random() < 0.5) out.push(...lengthDelimited(number, Array.from({ length: int(4) }, element).flat()));
      else out.push(...tag(number, number === 6 ? 5 : number === 7 ? 1 : 0), ...element());
      out.push(...noise());
    }
    return out;
  };
  const input = (): number[] => {
    const out: number[] = [];
    let withContents = false;
    for (let i = int(7); i > 0; i--) {
      const which = int(6);
      if (which === 0) out.push(...lengthDelimited(1, text()));
      else if (which === 1) out.push(...lengthDelimited(2, text()));
      else if (which === 2) out.push(...tag(3, 0), ...int64());
      else if (which === 3) out.push(...lengthDelimited(3, Array.from({ length: int(4) }, int64).flat()));
      else if (which === 4) out.push(...lengthDelimited(4, entry()));
      else if (!withContents) {
        // One `contents` (a second one is merged: a documented deviation).
        withContents = true;
        out.push(...lengthDelimited(5, contents()));
      }
      out.push(...noise());
    }
    return out;
  };
  const output = (): number[] =>
    Array.from({ length: int(3) }, () => [
      ...(random() < 0.5 ? lengthDelimited(1, text()) : lengthDelimited(2, entry())),
      ...noise(),
    ]).flat();
  const request = (): number[] => {
    const out: number[] = [];
    for (let i = int(9); i > 0; i--) {
      const which = int(7);
      if (which <= 2) out.push(...lengthDelimited(1 + which, text()));
      else if (which === 3) out.push(...lengthDelimited(4, entry()));
      else if (which === 4) out.push(...lengthDelimited(5, input()));
      else if (which === 5) out.push(...lengthDelimited(6, output()));
      else out.push(...lengthDelimited(7, text()));
      out.push(...noise());
    }
    return out;
  };
  return { request };
}

test('differential: 4000 generated requests (unknown fields of every wire type, tags of 1-5 bytes, non-minimal varints, unpacked and packed numbers, NaN/-0/Infinity, invalid UTF-8) decode as protobufjs decodes them', () => {
  const { request } = messages(20261204);
  let compared = 0;
  for (let run = 0; run < 4000; run++) {
    // Not mutated at random: protobufjs reads a known field of the wrong wire type (inside an
    // InferParameter, which the scan does not walk) as if it had the right one, and a 6- to 9-byte
    // varint as ten bytes; the decoder skips the one and reads the other as the spec says.
    const bytes = Buffer.from(request());
    try {
      scanModelInferRequest(bytes, LIMITS);
    } catch {
      continue;
    }
    let theirs: unknown;
    try {
      theirs = plain(protobufjs(bytes));
    } catch {
      theirs = 'refused';
    }
    const result = outcome(bytes);
    const mine = result.request === undefined ? 'refused' : plain(result.request);
    if (!isDeepStrictEqual(mine, theirs))
      expect({ bytes: bytes.toString('hex'), ours: mine }).toEqual({ bytes: bytes.toString('hex'), ours: theirs });
    compared++;
  }
  expect(compared).toBeGreaterThan(3000);
});

test('many inputs, long strings and 2 MB of raw contents decode as protobufjs decodes them, as views of the message', () => {
  const name = 'ü'.repeat(70_000); // a 3-byte length
  const raw = Buffer.alloc(2_100_000, 7); // a 4-byte length
  const inputs = Array.from({ length: 1000 }, (_, i) =>
    field(5, [...field(1, ascii(`in${i}`)), ...field(2, ascii('FP32')), ...tag(3, 0), ...varint(i)]),
  ).flat();
  const bytes = Buffer.concat([
    Buffer.from([...field(1, ascii(name)), ...inputs, ...tag(7, 2), ...varint(raw.length)]),
    raw,
  ]);
  const decoded = ours(bytes);
  const theirs = protobufjs(bytes) as typeof decoded;
  expect(decoded.model_name).toBe(name);
  expect(decoded.inputs).toHaveLength(1000);
  expect(isDeepStrictEqual({ ...decoded }, { ...theirs })).toBe(true);
  expect(decoded.raw_input_contents?.[0]?.equals(raw)).toBe(true);
  expect(decoded.raw_input_contents?.[0]?.buffer).toBe(bytes.buffer);
});

// ---- 4. The response writer: bytes protobufjs reads back as what was written ----

const read = methods({ longs: String, defaults: true });
const utf8 = (text: string): string => Buffer.from(text).toString();

test('answers with multi-byte, surrogate-pair and lone-surrogate texts, 64-bit parameters of every form, and raw outputs at every length-varint size read back exactly', () => {
  const texts = [
    '',
    'a',
    'é'.repeat(43),
    '€'.repeat(50),
    '😀'.repeat(33),
    '\ud800',
    'x\udc00y',
    '\ud83d',
    '\u0000\uffff',
  ];
  const int64s: (number | string | bigint)[] = [0, -1, 2 ** 53 - 1, -(2 ** 53), '-9223372036854775808', 2n ** 63n - 1n];
  const uint64s: (number | string | bigint)[] = [0, 2 ** 53 - 1, '18446744073709551615', 2n ** 64n - 1n];
  const parameters: Record<string, WireParameter> = {};
  texts.forEach((text, i) => {
    parameters[`s${i}${text}`] = { string_param: text };
  });
  int64s.forEach((value, i) => {
    parameters[`i${i}`] = { int64_param: value };
  });
  uint64s.forEach((value, i) => {
    parameters[`u${i}`] = { uint64_param: value };
  });
  parameters.nan = { double_param: Number.NaN };
  parameters.zero = { double_param: -0 };
  parameters.no = { bool_param: false };
  const sizes = [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152];
  const response: WireInferResponse = {
    model_name: texts.join(''),
    model_version: '\ud800\udc00',
    id: '😀\ud800',
    parameters,
    outputs: texts.map((text) => ({
      name: text,
      datatype: text,
      shape: [0, 1, -1, 127, 128, 2 ** 32, -(2 ** 40), 2 ** 53 - 1],
      parameters: { [text]: { string_param: text } },
    })),
    raw_output_contents: sizes.map((size) => Buffer.alloc(size, size & 0xff)),
  };
  const bytes = serializeModelInferResponse(response);
  const back = (read.ModelInfer as Method).responseDeserialize(bytes) as any;
  expect(back.model_name).toBe(utf8(texts.join('')));
  expect(back.model_version).toBe('\ud800\udc00');
  expect(back.id).toBe(utf8('😀\ud800'));
  expect(back.outputs.map((o: any) => [o.name, o.datatype, o.shape])).toEqual(
    texts.map((text) => [
      utf8(text),
      utf8(text),
      ['0', '1', '-1', '127', '128', String(2 ** 32), String(-(2 ** 40)), String(2 ** 53 - 1)],
    ]),
  );
  for (const text of texts)
    expect(back.outputs.find((o: any) => o.name === utf8(text)).parameters[utf8(text)].string_param).toBe(utf8(text));
  expect(back.raw_output_contents.map((raw: Buffer) => [raw.length, raw[0]])).toEqual(
    sizes.map((size) => [size, size === 0 ? undefined : size & 0xff]),
  );
  const p = back.parameters;
  texts.forEach((text, i) => {
    expect(p[utf8(`s${i}${text}`)]).toMatchObject({ parameter_choice: 'string_param', string_param: utf8(text) });
  });
  int64s.forEach((value, i) => {
    expect(BigInt(p[`i${i}`].int64_param)).toBe(BigInt.asIntN(64, BigInt(value)));
  });
  uint64s.forEach((value, i) => {
    expect(BigInt(p[`u${i}`].uint64_param)).toBe(BigInt.asUintN(64, BigInt(value)));
  });
  expect(p.nan.double_param).toBeNaN();
  expect(Object.is(p.zero.double_param, -0)).toBe(true);
  expect(p.no).toMatchObject({ parameter_choice: 'bool_param', bool_param: false });
  // The same answer inside a stream response, as an object and as bytes already written.
  for (const inner of [response, bytes]) {
    const streamed = serializeModelStreamInferResponse({ error_message: '\ud800 failed', infer_response: inner });
    const decoded = (read.ModelStreamInfer as Method).responseDeserialize(streamed) as any;
    expect(decoded.error_message).toBe(utf8('\ud800 failed'));
    expect(isDeepStrictEqual(decoded.infer_response, back)).toBe(true);
  }
});

// ---- 5. Through a real server ----

let server: RunningServer | undefined;
let client: ReturnType<typeof grpcClient> | undefined;
const sessions: ClientHttp2Session[] = [];
afterEach(async () => {
  for (const session of sessions.splice(0)) session.destroy();
  client?.close();
  await server?.close();
  server = client = undefined;
});

async function start(serve: Parameters<typeof serveModel>[2] = {}) {
  const gated = gatedModel({ maxBatchSize: 1 });
  server = await serveModel(gated.model, gated.metrics, { port: 0, grpcPort: 0, host: '127.0.0.1', ...serve });
  client = grpcClient(server.grpcUrl as string);
  return { ...gated, client };
}

/** A raw HTTP/2 connection to this test's server's gRPC port. */
const rawSession = (): Promise<ClientHttp2Session> =>
  openRawSession((server as RunningServer).grpcUrl as string, sessions);

/** A unary call of `message` (framed here); its grpc-status and grpc-message. */
const rawCall = (session: ClientHttp2Session, method: string, message: Buffer) =>
  sendRaw(session, method, frame(message)).answer;

const until = async (condition: () => boolean, ms = 5_000) => {
  const end = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
};

test('end to end: with --max-tensors 1, a second input behind a five-byte tag (bit 32 set) is refused INVALID_ARGUMENT, as it is behind a one-byte tag', async () => {
  await start({ maxTensors: 1 });
  const session = await rawSession();
  const input = [
    ...field(1, ascii('x')),
    ...field(2, ascii('FP32')),
    ...field(3, [1, 2]),
    ...field(5, field(6, [...Buffer.from(new Float32Array([1, 1]).buffer)])),
  ];
  const second = [...tagWithBit32(5, 2), ...varint(input.length), ...input];
  const message = Buffer.from([...field(1, ascii('gated')), ...field(5, input), ...second]);
  // The same request with an ordinary tag is refused by the scan, before decoding.
  const refused = {
    code: status.INVALID_ARGUMENT,
    details: 'ModelInferRequest has more than 1 inputs (--max-tensors): refused before decoding',
  };
  expect(
    await rawCall(
      session,
      'ModelInfer',
      Buffer.from([...field(1, ascii('gated')), ...field(5, input), ...field(5, input)]),
    ),
  ).toEqual(refused);
  // Behind the five-byte tag the scan counted one input and the decoder built two, before the fix.
  expect(await rawCall(session, 'ModelInfer', message)).toEqual({
    code: status.INVALID_ARGUMENT,
    details: "Malformed ModelInferRequest message: a field's tag is larger than 32 bits, at byte 38",
  });
});

test('end to end: answers written by our writer read back with grpc-js clients; a deadline and a cancel each settle their call once, and the server drains', async () => {
  const gated = await start();
  const row = { name: 'x', datatype: 'FP32', shape: [1, 2], contents: { fp32_contents: [1, 2] } };
  const blocker = gated.client.call('ModelInfer', { model_name: 'gated', id: '😀é€', inputs: [row] });
  await until(() => gated.running() === 1);
  // Queued behind it: one is cancelled, one times out.
  const cancelled = gated.client.start('ModelInfer', { model_name: 'gated', inputs: [row] });
  await until(() => gated.model.batcher.stats.queued === 1);
  const late = gated.client.fails('ModelInfer', { model_name: 'gated', inputs: [row] }, 150);
  cancelled.call.cancel();
  await expect(cancelled.done).rejects.toMatchObject({ code: status.CANCELLED });
  expect((await late).code).toBe(status.DEADLINE_EXCEEDED);
  await until(() => gated.model.batcher.stats.queued === 0);
  gated.release();
  const answer = await blocker;
  expect(answer).toMatchObject({ model_name: 'gated', model_version: '1', id: '😀é€' });
  expect(answer.outputs).toMatchObject([{ name: 'y', datatype: 'FP32', shape: [1, 1], parameters: {} }]);
  expect([...new Float32Array(Uint8Array.from(answer.raw_output_contents[0]).buffer)]).toEqual([0]);
  // Three calls again after the failures: the pooled signals carry nothing over.
  const again = Array.from({ length: 3 }, () =>
    gated.client.call('ModelInfer', { model_name: 'gated', inputs: [row] }),
  );
  for (let i = 0; i < 3; i++) {
    await until(() => gated.running() === 1);
    gated.release();
    await until(() => gated.running() === 0);
  }
  expect((await Promise.all(again)).map((a) => a.outputs[0].name)).toEqual(['y', 'y', 'y']);
  // Every call accounted for: close resolves.
  await (server as RunningServer).close();
  server = undefined;
});
