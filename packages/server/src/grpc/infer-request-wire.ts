import type { GrpcParameter } from './proto.js';
import type { GrpcInferRequest, TensorContents } from './decode.js';
import { malformed } from './wire-scan.js';

/**
 * ModelInferRequest's wire bytes → the object grpc/decode.ts reads, in one pass, for ModelInfer
 * and every ModelStreamInfer message.
 *
 * Why not protobufjs: through proto-loader it builds each message twice (a decoded instance, then
 * `toObject`'s plain copy), about 1.8 KB and 1-2 µs for a one-input request, on every call of
 * the hottest path. This builds the plain objects once, the same ones (checked field by field
 * against protobufjs in infer-wire.test.ts):
 * - strings as Node decodes UTF-8 (a bad sequence becomes U+FFFD), `bytes` as views of the message;
 * - 64-bit integers as decimal strings (`shape`, `int64_contents`, `uint64_contents`, and the
 *   parameters' `int64_param` and `uint64_param`), exact past 2^53;
 * - repeated fields always present, as arrays; any other field only when it was sent; a
 *   `contents` message with all eight of its arrays;
 * - parameters as `{ parameter_choice, <field>: value }`, in objects without a prototype (a
 *   `__proto__` key is a key);
 * - unknown fields skipped.
 *
 * Where protobufjs departs from the protobuf spec this follows the spec: of a oneof's members the
 * last one sent is the one chosen (protobufjs kept the first it saw, beside the others), a
 * `contents` sent twice is merged (protobufjs kept the last), a bool is true when any bit of its
 * varint is (protobufjs read only the low 32), a varint of 6 to 9 bytes is read to its end
 * (protobufjs jumped to a tenth byte), a field of an InferParameter with another wire type than its
 * own is skipped as unknown (protobufjs read it as its own), and a string that runs past its
 * message is refused (protobufjs read past the end).
 *
 * It runs after wire-scan.ts has checked the message's structure and limits (tags, lengths within
 * their message, wire types of our fields, no groups), and reads tags and varints exactly as the
 * scan counts them: a tag past 32 bits and a varint past 10 bytes are refused by both, so no field
 * can be one thing to the scan and another here, and nothing here can allocate more than the scan
 * allowed. What the scan does not look at (a packed float field whose length is not a multiple of
 * 4, a packed varint cut off at its end) is refused as malformed here.
 */
export function parseModelInferRequest(bytes: Buffer): GrpcInferRequest {
  const reader = new WireReader(bytes);
  const request: GrpcInferRequest = { inputs: [], outputs: [], raw_input_contents: [] };
  const inputs = request.inputs as NonNullable<GrpcInferRequest['inputs']>;
  const outputs = request.outputs as NonNullable<GrpcInferRequest['outputs']>;
  const raw = request.raw_input_contents as Buffer[];
  while (reader.pos < reader.end) {
    const tag = reader.tag();
    switch (tag) {
      case (1 << 3) | LEN:
        request.model_name = reader.string();
        break;
      case (2 << 3) | LEN:
        request.model_version = reader.string();
        break;
      case (3 << 3) | LEN:
        request.id = reader.string();
        break;
      case (4 << 3) | LEN:
        request.parameters = mapEntry(reader, request.parameters);
        break;
      case (5 << 3) | LEN:
        inputs.push(reader.nested(input));
        break;
      case (6 << 3) | LEN:
        outputs.push(reader.nested(output));
        break;
      case (7 << 3) | LEN:
        raw.push(reader.bytes());
        break;
      default:
        reader.skip(tag);
    }
  }
  return request;
}

type Input = NonNullable<GrpcInferRequest['inputs']>[number];
type Output = NonNullable<GrpcInferRequest['outputs']>[number];
type ParameterMap = Record<string, GrpcParameter>;

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

function input(reader: WireReader): Input {
  const tensor: Input = { shape: [] };
  const shape = tensor.shape as string[];
  while (reader.pos < reader.end) {
    const tag = reader.tag();
    switch (tag) {
      case (1 << 3) | LEN:
        tensor.name = reader.string();
        break;
      case (2 << 3) | LEN:
        tensor.datatype = reader.string();
        break;
      case (3 << 3) | VARINT:
        shape.push(reader.int64());
        break;
      case (3 << 3) | LEN:
        reader.packed(shape, int64);
        break;
      case (4 << 3) | LEN:
        tensor.parameters = mapEntry(reader, tensor.parameters);
        break;
      case (5 << 3) | LEN:
        tensor.contents = reader.nested(contents, (tensor.contents as ContentsArrays | undefined) ?? emptyContents());
        break;
      default:
        reader.skip(tag);
    }
  }
  return tensor;
}

function output(reader: WireReader): Output {
  const tensor: Output = {};
  while (reader.pos < reader.end) {
    const tag = reader.tag();
    if (tag === ((1 << 3) | LEN)) tensor.name = reader.string();
    else if (tag === ((2 << 3) | LEN)) tensor.parameters = mapEntry(reader, tensor.parameters);
    else reader.skip(tag);
  }
  return tensor;
}

type ContentsArrays = Required<{ [K in keyof TensorContents]: unknown[] }>;

const emptyContents = (): ContentsArrays => ({
  bool_contents: [],
  int_contents: [],
  int64_contents: [],
  uint_contents: [],
  uint64_contents: [],
  fp32_contents: [],
  fp64_contents: [],
  bytes_contents: [],
});

/** Element readers of InferTensorContents' fields 1-7, in field order (one function each, not a closure a call). */
const bool = (reader: WireReader): boolean => reader.bool();
const int32 = (reader: WireReader): number => reader.uint32() | 0;
const int64 = (reader: WireReader): string => reader.int64();
const uint32 = (reader: WireReader): number => reader.uint32() >>> 0;
const uint64 = (reader: WireReader): string => reader.uint64();
const float = (reader: WireReader): number => reader.fixed(4);
const double = (reader: WireReader): number => reader.fixed(8);
const CONTENTS: readonly { key: keyof ContentsArrays; read: (reader: WireReader) => unknown; wire: number }[] = [
  { key: 'bool_contents', read: bool, wire: VARINT },
  { key: 'int_contents', read: int32, wire: VARINT },
  { key: 'int64_contents', read: int64, wire: VARINT },
  { key: 'uint_contents', read: uint32, wire: VARINT },
  { key: 'uint64_contents', read: uint64, wire: VARINT },
  { key: 'fp32_contents', read: float, wire: I32 },
  { key: 'fp64_contents', read: double, wire: I64 },
];

/** Into `into`: a `contents` sent twice is merged, as the protobuf spec merges an embedded message. */
function contents(reader: WireReader, into: ContentsArrays): ContentsArrays {
  while (reader.pos < reader.end) {
    const tag = reader.tag();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 8 && wire === LEN) into.bytes_contents.push(reader.bytes());
    else if (field >= 1 && field <= 7) {
      const { key, read, wire: unpacked } = CONTENTS[field - 1] as (typeof CONTENTS)[number];
      if (wire === LEN) reader.packed(into[key], read);
      else if (wire === unpacked) into[key].push(read(reader));
      else reader.skip(tag);
    } else reader.skip(tag);
  }
  return into;
}

/** One `map<string, InferParameter>` entry into its map (made on the first entry). */
function mapEntry(reader: WireReader, map: ParameterMap | undefined): ParameterMap {
  const into = map ?? (Object.create(null) as ParameterMap);
  const end = reader.enter();
  let key = '';
  let value: GrpcParameter | undefined;
  while (reader.pos < reader.end) {
    const tag = reader.tag();
    if (tag === ((1 << 3) | LEN)) key = reader.string();
    else if (tag === ((2 << 3) | LEN)) value = reader.nested(parameter);
    else reader.skip(tag);
  }
  reader.leave(end);
  // An entry without its value has no parameter to give: protobufjs failed on it too.
  if (value === undefined) throw malformed('ModelInferRequest', `the parameter \`${key.slice(0, 100)}\` has no value`);
  into[key] = value;
  return into;
}

/** InferParameter: of its oneof's members, the last one sent. */
function parameter(reader: WireReader): GrpcParameter {
  const chosen: GrpcParameter = {};
  let choice: keyof GrpcParameter | undefined;
  let value: unknown;
  while (reader.pos < reader.end) {
    const tag = reader.tag();
    switch (tag) {
      case (1 << 3) | VARINT:
        choice = 'bool_param';
        value = reader.bool();
        break;
      case (2 << 3) | VARINT:
        choice = 'int64_param';
        value = reader.int64();
        break;
      case (3 << 3) | LEN:
        choice = 'string_param';
        value = reader.string();
        break;
      case (4 << 3) | I64:
        choice = 'double_param';
        value = reader.fixed(8);
        break;
      case (5 << 3) | VARINT:
        choice = 'uint64_param';
        value = reader.uint64();
        break;
      default:
        reader.skip(tag);
    }
  }
  if (choice !== undefined) {
    chosen.parameter_choice = choice;
    (chosen as Record<string, unknown>)[choice] = value;
  }
  return chosen;
}

const TWO_32 = 2 ** 32;

/** A position in a message, and the end of the (sub)message being read. */
class WireReader {
  pos = 0;
  end: number;

  constructor(readonly buf: Buffer) {
    this.end = buf.length;
  }

  /** A field's tag: a varint of at most 5 bytes below 2^32, as wire-scan.ts reads it. */
  tag(): number {
    const start = this.pos;
    const value = this.uint32();
    if (this.pos - start > 5 || (this.pos - start === 5 && (this.buf[this.pos - 1] as number) > 0x0f))
      throw cut(`a field's tag is larger than 32 bits, at byte ${start}`);
    return value >>> 0;
  }

  /** A varint's low 32 bits (as a uint32 in a number's int32 form; callers pick `| 0` or `>>> 0`). */
  uint32(): number {
    let pos = this.pos;
    let byte = this.#byte(pos++);
    let value = byte & 0x7f;
    if (byte >= 0x80) {
      byte = this.#byte(pos++);
      value |= (byte & 0x7f) << 7;
      if (byte >= 0x80) {
        byte = this.#byte(pos++);
        value |= (byte & 0x7f) << 14;
        if (byte >= 0x80) {
          byte = this.#byte(pos++);
          value |= (byte & 0x7f) << 21;
          if (byte >= 0x80) {
            byte = this.#byte(pos++);
            value |= (byte & 0x0f) << 28;
            // The rest of a 10-byte varint (a negative int32) carries no low bits.
            if (byte >= 0x80) pos = this.#pastVarint(pos, 5);
          }
        }
      }
    }
    this.pos = pos;
    return value;
  }

  bool(): boolean {
    const start = this.pos;
    const end = this.#pastVarint(start, 0);
    let any = 0;
    for (let pos = start; pos < end; pos++) any |= (this.buf[pos] as number) & 0x7f;
    this.pos = end;
    return any !== 0;
  }

  /** A varint as two's-complement int64, in decimal. */
  int64(): string {
    const start = this.pos;
    const value = this.#small();
    if (value !== undefined) return String(value);
    return BigInt.asIntN(64, this.#big(start)).toString();
  }

  /** A varint as uint64, in decimal. */
  uint64(): string {
    const start = this.pos;
    const value = this.#small();
    if (value !== undefined) return String(value);
    return BigInt.asUintN(64, this.#big(start)).toString();
  }

  /** A little-endian float (4) or double (8). */
  fixed(size: 4 | 8): number {
    const pos = this.pos;
    if (pos + size > this.end) throw cut(`a ${size}-byte number runs past the end of its message`);
    this.pos = pos + size;
    return size === 4 ? this.buf.readFloatLE(pos) : this.buf.readDoubleLE(pos);
  }

  string(): string {
    const length = this.uint32() >>> 0;
    const start = this.pos;
    this.#within(length);
    return this.buf.toString('utf8', start, this.pos);
  }

  /** A `bytes` field: a view of the message, as protobufjs gives it. */
  bytes(): Buffer {
    const length = this.uint32() >>> 0;
    const start = this.pos;
    this.#within(length);
    return this.buf.subarray(start, this.pos);
  }

  /** Enters a length-delimited submessage: returns the outer end, for `leave`. */
  enter(): number {
    const length = this.uint32() >>> 0;
    const outer = this.end;
    if (length > outer - this.pos) throw cut(`a field says ${length} bytes, ${outer - this.pos} are left`);
    this.end = this.pos + length;
    return outer;
  }

  leave(outer: number): void {
    this.pos = this.end;
    this.end = outer;
  }

  /** A submessage read by `read` (into `into`, when given). */
  nested<T, A>(read: (reader: WireReader, into: A) => T, into?: A): T {
    const outer = this.enter();
    const value = read(this, into as A);
    this.leave(outer);
    return value;
  }

  /** A packed repeated field's elements onto `into`. */
  packed(into: unknown[], read: (reader: WireReader) => unknown): void {
    const outer = this.enter();
    while (this.pos < this.end) into.push(read(this));
    this.leave(outer);
  }

  /** Past a field this message does not read (an unknown one, or ours with another wire type). */
  skip(tag: number): void {
    switch (tag & 7) {
      case VARINT:
        this.pos = this.#pastVarint(this.pos, 0);
        break;
      case I64:
        this.#within(8);
        break;
      case LEN:
        this.#within(this.uint32() >>> 0);
        break;
      case I32:
        this.#within(4);
        break;
      default:
        throw cut(`field ${tag >>> 3} has wire type ${tag & 7}`);
    }
  }

  #within(length: number): void {
    if (length > this.end - this.pos) throw cut(`a field says ${length} bytes, ${this.end - this.pos} are left`);
    this.pos += length;
  }

  /**
   * Where the varint that has `read` bytes before `pos` ends. A varint is at most 10 bytes: a
   * longer one is refused, as protobufjs refused it. Read otherwise, it would split into more
   * elements of a packed field than the scan counted (one per byte below 0x80).
   */
  #pastVarint(pos: number, read: number): number {
    let next = pos;
    for (let i = read; ; i++) {
      if (i === 10) throw cut(`a varint is longer than 10 bytes, at byte ${pos - read}`);
      if (this.#byte(next++) < 0x80) return next;
    }
  }

  #byte(pos: number): number {
    if (pos >= this.end) throw cut('a varint runs past the end of its message');
    return this.buf[pos] as number;
  }

  /** A varint below 2^49 as a number (7 bytes at most), else undefined with nothing read. */
  #small(): number | undefined {
    let pos = this.pos;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 7; i++) {
      const byte = this.#byte(pos++);
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        this.pos = pos;
        return value;
      }
      scale *= 128;
    }
    return undefined;
  }

  /** A varint of up to 10 bytes from `start`, as an unsigned BigInt of its 64 bits. */
  #big(start: number): bigint {
    let pos = start;
    let low = 0;
    let high = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.#byte(pos++);
      // Bits 0-31 and 32-63 kept apart: exact in numbers.
      if (i < 4) low += (byte & 0x7f) * scale;
      else if (i === 4) {
        low += (byte & 0x0f) * scale;
        high += (byte & 0x7f) >>> 4;
      } else high += (byte & 0x7f) * 2 ** (7 * i - 32);
      if (byte < 0x80) break;
      if (i === 9) throw cut(`a varint is longer than 10 bytes, at byte ${start}`);
      if (i < 4) scale *= 128;
    }
    this.pos = pos;
    return (BigInt(high % TWO_32) << 32n) | BigInt(low);
  }
}

const cut = (why: string) => malformed('ModelInferRequest', why);
