import { loadSync } from '@grpc/proto-loader';
import fc from 'fast-check';
import { expect, test } from 'vitest';
import { ProtocolError } from '../src/protocol/errors.js';
import { parseModelInferRequest } from '../src/grpc/infer-request-wire.js';
import {
  serializeModelInferResponse,
  serializeModelStreamInferResponse,
  type WireInferResponse,
  type WireParameter,
} from '../src/grpc/infer-response-wire.js';
import { PROTO_OPTIONS, PROTO_PATH } from '../src/grpc/proto.js';
import { scanModelInferRequest } from '../src/grpc/wire-scan.js';

// Our ModelInferRequest decoder and ModelInferResponse writer against protobufjs (through
// proto-loader, as the server used them before): the same objects from the same bytes, and
// bytes protobufjs reads back as what was written.

type Method = {
  requestSerialize(value: unknown): Buffer;
  requestDeserialize(bytes: Buffer): unknown;
  responseSerialize(value: unknown): Buffer;
  responseDeserialize(bytes: Buffer): unknown;
};
const methods = (options: object) =>
  loadSync(PROTO_PATH, { ...PROTO_OPTIONS, ...options })['inference.GRPCInferenceService'] as unknown as Record<
    string,
    Method
  >;
/** How the server decoded a request with protobufjs: 64-bit integers as strings, absent fields absent. */
const before = methods({ longs: String, defaults: false });
const ModelInfer = before.ModelInfer as Method;
const ModelStreamInfer = before.ModelStreamInfer as Method;
const LIMITS = { maxTensors: 1024, maxObjects: 65536, maxBytesElements: 1 << 20 };

/** Maps are made without a prototype: compared as plain objects. */
const plain = (value: unknown): unknown => {
  if (Buffer.isBuffer(value)) return { buffer: [...value] };
  if (Array.isArray(value)) return value.map(plain);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
};
const ours = (bytes: Buffer) => {
  scanModelInferRequest(bytes, LIMITS);
  return parseModelInferRequest(bytes);
};

const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'grapheme', maxLength: 6 }));
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String);
const uint64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String);
const parameter = fc.oneof(
  fc.record({ bool_param: fc.boolean() }),
  fc.record({ int64_param: int64 }),
  fc.record({ string_param: text }),
  fc.record({ double_param: fc.double() }),
  fc.record({ uint64_param: uint64 }),
);
const parameters = fc.dictionary(text, parameter, { maxKeys: 3 });
const float32 = fc.float().map((x) => Math.fround(x));
const contents = fc.record(
  {
    bool_contents: fc.array(fc.boolean(), { maxLength: 4 }),
    int_contents: fc.array(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), { maxLength: 4 }),
    int64_contents: fc.array(int64, { maxLength: 4 }),
    uint_contents: fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 4 }),
    uint64_contents: fc.array(uint64, { maxLength: 4 }),
    fp32_contents: fc.array(float32, { maxLength: 4 }),
    fp64_contents: fc.array(fc.double(), { maxLength: 4 }),
    bytes_contents: fc.array(fc.uint8Array({ maxLength: 6 }).map(Buffer.from), { maxLength: 3 }),
  },
  { requiredKeys: [] },
);
const request = fc.record(
  {
    model_name: text,
    model_version: text,
    id: text,
    parameters,
    inputs: fc.array(
      fc.record(
        { name: text, datatype: text, shape: fc.array(int64, { maxLength: 4 }), parameters, contents },
        { requiredKeys: [] },
      ),
      { maxLength: 3 },
    ),
    outputs: fc.array(fc.record({ name: text, parameters }, { requiredKeys: [] }), { maxLength: 3 }),
    raw_input_contents: fc.array(fc.uint8Array({ maxLength: 8 }).map(Buffer.from), { maxLength: 3 }),
  },
  { requiredKeys: [] },
);

test('a request decodes into what protobufjs made of it, for any request protobufjs writes', () => {
  fc.assert(
    fc.property(request, (value) => {
      const bytes = ModelInfer.requestSerialize(value);
      expect(plain(ours(bytes))).toEqual(plain(ModelInfer.requestDeserialize(bytes)));
    }),
    { numRuns: 500 },
  );
});

test('the fields of a one-input raw request, exactly', () => {
  const raw = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
  const bytes = ModelInfer.requestSerialize({
    model_name: 'tiny',
    inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }],
    outputs: [{ name: 'probabilities' }],
    raw_input_contents: [raw],
    parameters: { priority: { uint64_param: 2 }, timeout: { int64_param: 1000 } },
  });
  const decoded = ours(bytes);
  expect(plain(decoded)).toEqual({
    model_name: 'tiny',
    parameters: {
      priority: { parameter_choice: 'uint64_param', uint64_param: '2' },
      timeout: { parameter_choice: 'int64_param', int64_param: '1000' },
    },
    inputs: [{ name: 'input', datatype: 'FP32', shape: ['1', '4'] }],
    outputs: [{ name: 'probabilities' }],
    raw_input_contents: [{ buffer: [...raw] }],
  });
  // A view of the message, not a copy (as protobufjs gave it).
  expect(decoded.raw_input_contents?.[0]?.buffer).toBe(bytes.buffer);
});

/** A length-delimited field: tag, length, content. */
const field = (number: number, content: number[]): number[] => [(number << 3) | 2, content.length, ...content];
const ascii = (text: string): number[] => [...Buffer.from(text)];

test('what protobufjs wrote differently is read as the protobuf spec says', () => {
  // Unpacked `shape` dimensions, then a packed run: one shape of three.
  const shape = ours(Buffer.from(field(5, [0x18, 2, ...field(3, [3, 0x7f])])));
  expect(shape.inputs?.[0]?.shape).toEqual(['2', '3', '127']);
  // A oneof with two members on the wire: the last one is chosen (protobufjs kept the first).
  const both = ours(Buffer.from(field(4, [...field(1, ascii('k')), ...field(2, [0x10, 5, 0x08, 1])])));
  expect(plain(both.parameters)).toEqual({ k: { parameter_choice: 'bool_param', bool_param: true } });
  // `contents` sent twice is merged (protobufjs kept the second).
  const twice = ours(Buffer.from(field(5, [...field(5, [0x08, 1]), ...field(5, [0x10, 2])])));
  expect(twice.inputs?.[0]?.contents?.bool_contents).toEqual([true]);
  expect(twice.inputs?.[0]?.contents?.int_contents).toEqual([2]);
  // A bool whose only set bit is above the low 32: true.
  const high = ours(Buffer.from(field(5, [...field(5, [0x08, 0x80, 0x80, 0x80, 0x80, 0x10])])));
  expect(high.inputs?.[0]?.contents?.bool_contents).toEqual([true]);
  // -1 as an int64 dimension (ten bytes) and 2^63 - 1: exact.
  const minus = ours(Buffer.from(field(5, [0x18, ...Array(9).fill(0xff), 0x01])));
  expect(minus.inputs?.[0]?.shape).toEqual(['-1']);
  const max = ours(Buffer.from(field(5, [0x18, ...Array(8).fill(0xff), 0x7f])));
  expect(max.inputs?.[0]?.shape).toEqual([String(2n ** 63n - 1n)]);
  // A `__proto__` parameter is a key like any other, not the map's prototype.
  const proto = ours(Buffer.from(field(4, [...field(1, ascii('__proto__')), ...field(2, [0x1a, 1, 0x78])])));
  expect(Object.keys(proto.parameters ?? {})).toEqual(['__proto__']);
  expect(Object.getPrototypeOf(proto.parameters)).toBe(null);
  // Unknown fields are skipped, whatever their wire type.
  const unknown = ours(Buffer.from([0x48, 0x01, 0x51, ...Array(8).fill(0), 0x5d, 0, 0, 0, 0, ...field(1, ascii('m'))]));
  expect(unknown.model_name).toBe('m');
});

test('what the scan lets through but no decoder can read is refused INVALID_ARGUMENT, as a ProtocolError', () => {
  const refused = (bytes: number[], why: RegExp) => {
    let error: unknown;
    try {
      ours(Buffer.from(bytes));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ProtocolError);
    expect((error as ProtocolError).protocolStatus).toBe('invalid-argument');
    expect((error as Error).message).toMatch(why);
  };
  // A parameter entry with a key and no value.
  refused(field(4, field(1, ascii('k'))), /Malformed ModelInferRequest message: the parameter `k` has no value/);
  // Packed fp32 contents of 5 bytes.
  refused(field(5, field(5, field(6, [0, 0, 128, 63, 0]))), /Malformed ModelInferRequest.*4-byte number runs past/);
  // A packed varint cut off at the end of its field.
  refused(field(5, field(3, [0x80])), /Malformed ModelInferRequest.*varint runs past/);
});

test('any bytes: the decoder returns or refuses with a ProtocolError, never anything else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      try {
        ours(Buffer.from(bytes));
      } catch (error) {
        expect(error).toBeInstanceOf(ProtocolError);
      }
    }),
    { numRuns: 3000 },
  );
});

const wireParameter: fc.Arbitrary<WireParameter> = fc.oneof(
  fc.record({ bool_param: fc.boolean() }),
  fc.record({ int64_param: fc.oneof(fc.integer(), int64) }),
  fc.record({ string_param: text }),
  fc.record({ double_param: fc.double() }),
  fc.record({ uint64_param: fc.oneof(fc.nat(), uint64) }),
);
const wireParameters = fc.dictionary(text, wireParameter, { maxKeys: 3 });
const response: fc.Arbitrary<WireInferResponse> = fc.record(
  {
    model_name: text,
    model_version: text,
    id: text,
    parameters: wireParameters,
    outputs: fc.array(
      fc.record(
        {
          name: text,
          datatype: text,
          shape: fc.array(fc.oneof(fc.nat(), fc.integer({ min: -5, max: 2 ** 40 })), { maxLength: 4 }),
          parameters: wireParameters,
        },
        { requiredKeys: [] },
      ),
      { maxLength: 3 },
    ),
    raw_output_contents: fc.array(fc.uint8Array({ maxLength: 300 }).map(Buffer.from), { maxLength: 3 }),
  },
  { requiredKeys: [] },
);

test('an answer reads back, with protobufjs, as what protobufjs itself writes of it', () => {
  const read = methods({ longs: String, defaults: true });
  const infer = read.ModelInfer as Method;
  const stream = read.ModelStreamInfer as Method;
  fc.assert(
    fc.property(response, text, (value, error) => {
      expect(plain(infer.responseDeserialize(serializeModelInferResponse(value)))).toEqual(
        plain(infer.responseDeserialize(ModelInfer.responseSerialize(value))),
      );
      const streamed = { error_message: error, infer_response: value };
      expect(plain(stream.responseDeserialize(serializeModelStreamInferResponse(streamed)))).toEqual(
        plain(stream.responseDeserialize(ModelStreamInfer.responseSerialize(streamed))),
      );
    }),
    { numRuns: 500 },
  );
});

test('an answer as the server gives it: every byte where protobuf puts it', () => {
  const raw = Buffer.from([1, 2, 3, 4]);
  const bytes = serializeModelInferResponse({
    model_name: 'm',
    model_version: '1',
    id: '',
    outputs: [{ name: 'y', datatype: 'FP32', shape: [1, -1] }],
    raw_output_contents: [raw, Buffer.alloc(0)],
  });
  expect([...bytes]).toEqual([
    ...field(1, ascii('m')),
    ...field(2, ascii('1')),
    // id '' is its default: not written.
    ...field(5, [...field(1, ascii('y')), ...field(2, ascii('FP32')), ...field(3, [1, ...Array(9).fill(0xff), 0x01])]),
    ...field(6, [1, 2, 3, 4]),
    ...field(6, []),
  ]);
  // A string parameter that is empty is still the member the oneof chose.
  const empty = serializeModelInferResponse({ parameters: { k: { string_param: '' } } });
  expect([...empty]).toEqual(field(4, [...field(1, ascii('k')), ...field(2, field(3, []))]));
  // A raw output past 127 bytes: a two-byte length, and the buffer sized for it.
  const large = serializeModelInferResponse({ raw_output_contents: [Buffer.alloc(300, 7)] });
  expect(large.length).toBe(1 + 2 + 300);
  expect([...large.subarray(0, 3)]).toEqual([0x32, 0xac, 0x02]);
});
