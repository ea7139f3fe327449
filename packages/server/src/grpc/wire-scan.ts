import { invalidArgument, type ProtocolError } from '../protocol/errors.js';

/**
 * A cheap pass over a request's protobuf wire bytes, before protobufjs builds a single object.
 *
 * Why: protobufjs (through proto-loader, with `defaults: true`) turns every embedded message,
 * map entry and `bytes` element into a JS object, and only then can anyone count them. An 8 MiB
 * ModelInferRequest of 4.2 M empty `inputs` (two bytes each) took a 4-23 s main-thread stall and
 * 1.5-2.3 GB of RSS before the decoder could say "too many"; 4.2 M empty `bytes_contents` or
 * `raw_input_contents` elements cost the same. This pass reads tags and lengths only (no
 * allocation) and refuses such a message, or a malformed one, with a 400 (INVALID_ARGUMENT).
 *
 * It also checks the wire structure protobufjs lets through: a length that runs past the end of
 * its message is silently truncated by protobufjs (a "valid" request built from garbage).
 */

export interface WireLimits {
  /** Most `inputs`, most `outputs`, most `raw_input_contents` entries. */
  maxTensors: number;
  /**
   * Most elements the decoder would build: messages, map entries, `bytes` elements and `shape`
   * dimensions; apart from them, most typed 64-bit integers (each a string, see `countLongs`);
   * in any other request, most fields (see `scanMessage`).
   */
  maxObjects: number;
  /** Most `bytes_contents` elements (each a Buffer) in a ModelInferRequest, apart from the objects. */
  maxBytesElements: number;
}

/** The ModelInferRequest messages the scan descends into (proto/grpc_service.proto). */
enum Kind {
  /** A message we only check the wire structure of (any other RPC's request). */
  Opaque,
  Request,
  Input,
  Output,
  Contents,
  /** A `parameters` map entry: key = 1, value (an InferParameter) = 2. */
  Entry,
}

/** Wire types (https://protobuf.dev/programming-guides/encoding/). */
const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

/**
 * The wire types each field of our messages may arrive with (a bit per type; repeated numbers
 * may come packed, as LEN). protobufjs does not check them: it reads a `5: varint 0` as an
 * empty `inputs` element, so a field of the wrong type must be refused here, not skipped.
 */
const bit = (...types: number[]): number => types.reduce((mask, type) => mask | (1 << type), 0);
const TEXT = bit(LEN);
const MESSAGE = bit(LEN);
const SCHEMA: Record<Kind, Record<number, number>> = {
  [Kind.Opaque]: {},
  // model_name, model_version, id, parameters, inputs, outputs, raw_input_contents
  [Kind.Request]: { 1: TEXT, 2: TEXT, 3: TEXT, 4: MESSAGE, 5: MESSAGE, 6: MESSAGE, 7: TEXT },
  // name, datatype, shape, parameters, contents
  [Kind.Input]: { 1: TEXT, 2: TEXT, 3: bit(VARINT, LEN), 4: MESSAGE, 5: MESSAGE },
  // name, parameters
  [Kind.Output]: { 1: TEXT, 2: MESSAGE },
  // bool, int, int64, uint, uint64, fp32, fp64, bytes
  [Kind.Contents]: {
    1: bit(VARINT, LEN),
    2: bit(VARINT, LEN),
    3: bit(VARINT, LEN),
    4: bit(VARINT, LEN),
    5: bit(VARINT, LEN),
    6: bit(I32, LEN),
    7: bit(I64, LEN),
    8: TEXT,
  },
  // key, value
  [Kind.Entry]: { 1: TEXT, 2: MESSAGE },
};

interface Counts {
  inputs: number;
  outputs: number;
  raw: number;
  objects: number;
  /** Typed `int64_contents` and `uint64_contents` elements. */
  longs: number;
  /** `bytes_contents` elements. */
  strings: number;
}

class Malformed extends Error {}
/** A request other than ModelInfer with more fields than --max-objects (see `scanMessage`). */
class TooManyFields extends Error {}

/**
 * Checks a ModelInferRequest's wire bytes against the limits; throws the refusal to answer.
 * Linear in the message's size and allocation-free, so it costs about a copy of it.
 */
export function scanModelInferRequest(bytes: Uint8Array, limits: WireLimits): void {
  const counts: Counts = { inputs: 0, outputs: 0, raw: 0, objects: 1, longs: 0, strings: 0 };
  try {
    walk(bytes, 0, bytes.length, Kind.Request, counts, limits);
  } catch (error) {
    throw error instanceof Malformed ? malformed('ModelInferRequest', error.message) : error;
  }
}

/**
 * What the scan follows of any other request, read from its descriptor (proto-loader's
 * `requestType.type`): the fields that are messages declared inside it (map entries, Triton's
 * `SettingValue`), and the packed numeric ones. Messages declared elsewhere are not followed.
 */
export interface MessageShape {
  fields: Map<number, { message?: MessageShape; packed?: 'varint' | 4 | 8 }>;
}

interface DescriptorLike {
  name?: unknown;
  field?: { number?: unknown; label?: unknown; type?: unknown; typeName?: unknown }[];
  nestedType?: DescriptorLike[];
}

const PACKED: Record<string, 'varint' | 4 | 8> = {
  TYPE_INT32: 'varint',
  TYPE_INT64: 'varint',
  TYPE_UINT32: 'varint',
  TYPE_UINT64: 'varint',
  TYPE_SINT32: 'varint',
  TYPE_SINT64: 'varint',
  TYPE_BOOL: 'varint',
  TYPE_ENUM: 'varint',
  TYPE_FIXED32: 4,
  TYPE_SFIXED32: 4,
  TYPE_FLOAT: 4,
  TYPE_FIXED64: 8,
  TYPE_SFIXED64: 8,
  TYPE_DOUBLE: 8,
};

/** A request's shape from its descriptor, or undefined for anything that does not look like one. */
export function messageShape(descriptor: unknown): MessageShape | undefined {
  if (typeof descriptor !== 'object' || descriptor === null || !Array.isArray((descriptor as DescriptorLike).field))
    return undefined;
  const byName = new Map<string, DescriptorLike>();
  const collect = (d: DescriptorLike): void => {
    for (const nested of Array.isArray(d.nestedType) ? d.nestedType : []) {
      if (typeof nested?.name === 'string' && !byName.has(nested.name)) byName.set(nested.name, nested);
      collect(nested);
    }
  };
  collect(descriptor as DescriptorLike);
  const shapes = new Map<DescriptorLike, MessageShape>();
  const build = (d: DescriptorLike): MessageShape => {
    const known = shapes.get(d);
    if (known !== undefined) return known;
    const shape: MessageShape = { fields: new Map() };
    shapes.set(d, shape); // before its fields: a message may hold itself
    for (const f of Array.isArray(d.field) ? d.field : []) {
      if (typeof f?.number !== 'number') continue;
      if (f.type === 'TYPE_MESSAGE') {
        const nested = byName.get(String(f.typeName).split('.').at(-1) as string);
        shape.fields.set(f.number, nested === undefined ? {} : { message: build(nested) });
      } else if (f.label === 'LABEL_REPEATED' && PACKED[String(f.type)] !== undefined)
        shape.fields.set(f.number, { packed: PACKED[String(f.type)] });
    }
    return shape;
  };
  return build(descriptor as DescriptorLike);
}

/** Deepest a request other than ModelInfer is followed: none of ours is more than three levels. */
const MAX_DEPTH = 32;

/**
 * Checks any other request's wire structure and counts what the decoder would build of it; throws
 * the refusal to answer. None of these requests is more than a few names and values, while
 * each field occurrence may cost the decoder an object: 930,000 map entries with distinct keys in
 * one 8 MiB RepositoryModelLoadRequest (or a TraceSettingRequest, which grpc-js decodes even to
 * answer UNIMPLEMENTED) cost a 3.1-3.3 s stall and +300 MB before any handler ran, and 2.8 M
 * strings inside one TraceSettingRequest `SettingValue` 1.1 s. So every field occurrence, at every
 * level `shape` lets the scan follow, and every packed number, counts one against `maxObjects`.
 * Without a shape only the top level is counted.
 */
export function scanMessage(bytes: Uint8Array, type: string, limits: WireLimits, shape?: MessageShape): void {
  try {
    walk(
      bytes,
      0,
      bytes.length,
      Kind.Opaque,
      { inputs: 0, outputs: 0, raw: 0, objects: 0, longs: 0, strings: 0 },
      limits,
      shape,
      0,
    );
  } catch (error) {
    if (error instanceof TooManyFields)
      throw invalidArgument(
        `${type} has more than ${limits.maxObjects} fields (map entries and repeated elements, at any depth, count one each; --max-objects): refused before decoding`,
      );
    throw error instanceof Malformed ? malformed(type, error.message) : error;
  }
}

export const malformed = (type: string, why: string): ProtocolError =>
  invalidArgument(`Malformed ${type} message: ${why}`);

function walk(
  bytes: Uint8Array,
  start: number,
  end: number,
  kind: Kind,
  counts: Counts,
  limits: WireLimits,
  shape?: MessageShape,
  depth = 0,
): void {
  let pos = start;
  while (pos < end) {
    // The tag: a varint of at most 5 bytes (field numbers fit in 29 bits).
    let tag = 0;
    let shift = 1;
    for (let i = 0; ; i++) {
      if (pos >= end) throw new Malformed(`a field's tag runs past the end of its message, at byte ${pos}`);
      if (i === 5) throw new Malformed(`a field's tag is longer than 5 bytes, at byte ${pos}`);
      const byte = bytes[pos++] as number;
      // A tag is a uint32 (field numbers fit in 29 bits): a fifth byte past 0x0f is not one. Read
      // any other way, the scan and the decoder would see different fields (infer-request-wire.ts).
      if (i === 4 && byte > 0x0f) throw new Malformed(`a field's tag is larger than 32 bits, at byte ${pos - 1}`);
      tag += (byte & 0x7f) * shift;
      shift *= 128;
      if (byte < 0x80) break;
    }
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === 0) throw new Malformed(`field number 0, at byte ${pos}`);
    if (kind === Kind.Opaque && ++counts.objects > limits.maxObjects) throw new TooManyFields();
    const allowed = SCHEMA[kind][field];
    if (allowed !== undefined && (allowed & (1 << wireType)) === 0)
      throw new Malformed(`field ${field} has wire type ${wireType}, which it cannot have`);
    // The same for a message field of any other request: protobufjs would read a varint there as a length.
    if (kind === Kind.Opaque && wireType !== LEN && shape?.fields.get(field)?.message !== undefined)
      throw new Malformed(`field ${field} has wire type ${wireType}, which it cannot have`);
    switch (wireType) {
      case VARINT: {
        for (let i = 0; ; i++) {
          if (pos >= end) throw new Malformed(`field ${field}'s varint runs past the end of its message`);
          if (i === 10) throw new Malformed(`field ${field}'s varint is longer than 10 bytes`);
          if ((bytes[pos++] as number) < 0x80) break;
        }
        // An unpacked `shape` dimension: each becomes an element of a JS array.
        if (kind === Kind.Input && field === 3) count(counts, limits);
        // An unpacked typed 64-bit integer: each becomes a string.
        else if (kind === Kind.Contents && (field === 3 || field === 5)) countLongs(counts, limits, 1);
        break;
      }
      case I64:
        pos += 8;
        if (pos > end) throw new Malformed(`field ${field}'s 8 bytes run past the end of its message`);
        break;
      case I32:
        pos += 4;
        if (pos > end) throw new Malformed(`field ${field}'s 4 bytes run past the end of its message`);
        break;
      case LEN: {
        let length = 0;
        let scale = 1;
        for (let i = 0; ; i++) {
          if (pos >= end) throw new Malformed(`field ${field}'s length runs past the end of its message`);
          if (i === 5) throw new Malformed(`field ${field}'s length is longer than 5 bytes`);
          const byte = bytes[pos++] as number;
          length += (byte & 0x7f) * scale;
          scale *= 128;
          if (byte < 0x80) break;
        }
        if (length > end - pos)
          throw new Malformed(`field ${field} says ${length} bytes, ${end - pos} are left in its message`);
        if (kind === Kind.Opaque) opaqueElement(bytes, pos, pos + length, field, counts, limits, shape, depth);
        else element(bytes, pos, pos + length, kind, field, counts, limits);
        pos += length;
        break;
      }
      default:
        // 3 and 4 are proto2 groups (no field of ours is one), 6 and 7 do not exist.
        throw new Malformed(`field ${field} has wire type ${wireType}, which no field of this message has`);
    }
  }
}

/** A length-delimited field: counts what the decoder would build of it, and descends into our messages. */
function element(
  bytes: Uint8Array,
  start: number,
  end: number,
  kind: Kind,
  field: number,
  counts: Counts,
  limits: WireLimits,
): void {
  switch (kind) {
    case Kind.Request:
      if (field === 4) entry(bytes, start, end, counts, limits);
      else if (field === 5) {
        if (++counts.inputs > limits.maxTensors) throw tooMany('inputs', limits.maxTensors);
        count(counts, limits);
        walk(bytes, start, end, Kind.Input, counts, limits);
      } else if (field === 6) {
        if (++counts.outputs > limits.maxTensors) throw tooMany('outputs', limits.maxTensors);
        count(counts, limits);
        walk(bytes, start, end, Kind.Output, counts, limits);
      } else if (field === 7) {
        if (++counts.raw > limits.maxTensors) throw tooMany('raw_input_contents entries', limits.maxTensors);
        count(counts, limits);
      }
      return;
    case Kind.Input:
      if (field === 3) {
        // Packed `shape`: one dimension per varint, and every varint ends on a byte below 0x80.
        for (let i = start; i < end; i++) if ((bytes[i] as number) < 0x80) count(counts, limits);
      } else if (field === 4) entry(bytes, start, end, counts, limits);
      else if (field === 5) {
        count(counts, limits);
        walk(bytes, start, end, Kind.Contents, counts, limits);
      }
      return;
    case Kind.Output:
      if (field === 2) entry(bytes, start, end, counts, limits);
      return;
    case Kind.Entry:
      // protobufjs decodes every `value` of an entry (the last one wins), each an object.
      if (field === 2) count(counts, limits);
      return;
    case Kind.Contents:
      // `bytes_contents`: each element a Buffer. The numeric fields are packed numbers: tensor data, bounded by the size,
      // but for the 64-bit integers (see countLongs).
      if (field === 8 && ++counts.strings > limits.maxBytesElements) {
        throw invalidArgument(
          `ModelInferRequest has more than ${limits.maxBytesElements} BYTES elements (--max-bytes-elements): refused before decoding`,
        );
      } else if (field === 3 || field === 5) countLongs(counts, limits, varintsIn(bytes, start, end));
      return;
    case Kind.Opaque: // see opaqueElement
      return;
  }
}

/** A length-delimited field of any other request: followed if its shape says it is a message of its own, counted if packed numbers. */
function opaqueElement(
  bytes: Uint8Array,
  start: number,
  end: number,
  field: number,
  counts: Counts,
  limits: WireLimits,
  shape: MessageShape | undefined,
  depth: number,
): void {
  const rule = shape?.fields.get(field);
  if (rule?.message !== undefined) {
    if (depth >= MAX_DEPTH) throw new Malformed(`messages nested more than ${MAX_DEPTH} deep`);
    walk(bytes, start, end, Kind.Opaque, counts, limits, rule.message, depth + 1);
  } else if (rule?.packed !== undefined) {
    counts.objects += rule.packed === 'varint' ? varintsIn(bytes, start, end) : Math.floor((end - start) / rule.packed);
    if (counts.objects > limits.maxObjects) throw new TooManyFields();
  }
}

function entry(bytes: Uint8Array, start: number, end: number, counts: Counts, limits: WireLimits): void {
  count(counts, limits);
  walk(bytes, start, end, Kind.Entry, counts, limits);
}

function count(counts: Counts, limits: WireLimits): void {
  if (++counts.objects > limits.maxObjects)
    throw invalidArgument(
      `ModelInferRequest has more than ${limits.maxObjects} elements (messages, map entries and shape dimensions; --max-objects): refused before decoding`,
    );
}

/** How many varints a packed field holds: each one ends on a byte below 0x80. */
function varintsIn(bytes: Uint8Array, start: number, end: number): number {
  let n = 0;
  for (let i = start; i < end; i++) if ((bytes[i] as number) < 0x80) n++;
  return n;
}

/**
 * Typed `int64_contents` and `uint64_contents` elements, which the server decodes as decimal strings
 * (proto.ts: exact past 2^53), one heap string per element, and one byte of the message can be one
 * element: an 8 MiB message of packed zeros was 8.4 M strings, a 3.3-3.6 s main-thread stall and
 * +790 MB of RSS before the decoder could say the shape was [1, 2]. They count apart from the
 * objects above (a message's tensors are not refused for the elements of another), against the same
 * --max-objects. A large 64-bit tensor travels in raw_input_contents, where it stays bytes.
 */
function countLongs(counts: Counts, limits: WireLimits, n: number): void {
  counts.longs += n;
  if (counts.longs > limits.maxObjects)
    throw invalidArgument(
      `ModelInferRequest has more than ${limits.maxObjects} typed INT64/UINT64 elements (each is decoded into a string; --max-objects): refused before decoding. Send a large 64-bit tensor in raw_input_contents`,
    );
}

const tooMany = (what: string, limit: number): ProtocolError =>
  invalidArgument(`ModelInferRequest has more than ${limit} ${what} (--max-tensors): refused before decoding`);
