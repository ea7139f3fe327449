import { badRequest, type HttpError } from '../kserve/errors.js';

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
  /** Most elements the decoder would build: messages, map entries, `bytes` elements and `shape` dimensions. */
  maxObjects: number;
}

/** The ModelInferRequest messages the scan descends into (proto/grpc_service.proto). */
const enum Kind {
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
  [Kind.Contents]: { 1: bit(VARINT, LEN), 2: bit(VARINT, LEN), 3: bit(VARINT, LEN), 4: bit(VARINT, LEN), 5: bit(VARINT, LEN), 6: bit(I32, LEN), 7: bit(I64, LEN), 8: TEXT },
  // key, value
  [Kind.Entry]: { 1: TEXT, 2: MESSAGE },
};

interface Counts {
  inputs: number;
  outputs: number;
  raw: number;
  objects: number;
}

class Malformed extends Error {}

/**
 * Checks a ModelInferRequest's wire bytes against the limits; throws the HttpError (400) to answer.
 * Linear in the message's size and allocation-free, so it costs about a copy of it.
 */
export function scanModelInferRequest(bytes: Uint8Array, limits: WireLimits): void {
  const counts: Counts = { inputs: 0, outputs: 0, raw: 0, objects: 1 };
  try {
    walk(bytes, 0, bytes.length, Kind.Request, counts, limits);
  } catch (error) {
    throw error instanceof Malformed ? malformed('ModelInferRequest', error.message) : error;
  }
}

/** Checks any request's top-level wire structure; throws the HttpError (400) to answer. */
export function scanMessage(bytes: Uint8Array, type: string): void {
  try {
    walk(bytes, 0, bytes.length, Kind.Opaque, { inputs: 0, outputs: 0, raw: 0, objects: 0 }, { maxTensors: Infinity, maxObjects: Infinity });
  } catch (error) {
    throw error instanceof Malformed ? malformed(type, error.message) : error;
  }
}

export const malformed = (type: string, why: string): HttpError => badRequest(`Malformed ${type} message: ${why}`);

function walk(bytes: Uint8Array, start: number, end: number, kind: Kind, counts: Counts, limits: WireLimits): void {
  let pos = start;
  while (pos < end) {
    // The tag: a varint of at most 5 bytes (field numbers fit in 29 bits).
    let tag = 0;
    let shift = 1;
    for (let i = 0; ; i++) {
      if (pos >= end) throw new Malformed(`a field's tag runs past the end of its message, at byte ${pos}`);
      if (i === 5) throw new Malformed(`a field's tag is longer than 5 bytes, at byte ${pos}`);
      const byte = bytes[pos++] as number;
      tag += (byte & 0x7f) * shift;
      shift *= 128;
      if (byte < 0x80) break;
    }
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === 0) throw new Malformed(`field number 0, at byte ${pos}`);
    const allowed = SCHEMA[kind][field];
    if (allowed !== undefined && (allowed & (1 << wireType)) === 0) throw new Malformed(`field ${field} has wire type ${wireType}, which it cannot have`);
    switch (wireType) {
      case VARINT: {
        for (let i = 0; ; i++) {
          if (pos >= end) throw new Malformed(`field ${field}'s varint runs past the end of its message`);
          if (i === 10) throw new Malformed(`field ${field}'s varint is longer than 10 bytes`);
          if ((bytes[pos++] as number) < 0x80) break;
        }
        // An unpacked `shape` dimension: each becomes an element of a JS array.
        if (kind === Kind.Input && field === 3) count(counts, limits);
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
        if (length > end - pos) throw new Malformed(`field ${field} says ${length} bytes, ${end - pos} are left in its message`);
        element(bytes, pos, pos + length, kind, field, counts, limits);
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
function element(bytes: Uint8Array, start: number, end: number, kind: Kind, field: number, counts: Counts, limits: WireLimits): void {
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
      // `bytes_contents`: each element a Buffer. The numeric fields are packed numbers: tensor data, bounded by the size.
      if (field === 8) count(counts, limits);
      return;
    case Kind.Opaque:
      return;
  }
}

function entry(bytes: Uint8Array, start: number, end: number, counts: Counts, limits: WireLimits): void {
  count(counts, limits);
  walk(bytes, start, end, Kind.Entry, counts, limits);
}

function count(counts: Counts, limits: WireLimits): void {
  if (++counts.objects > limits.maxObjects)
    throw badRequest(`ModelInferRequest has more than ${limits.maxObjects} elements (messages, map entries, BYTES elements and shape dimensions; --max-objects): refused before decoding`);
}

const tooMany = (what: string, limit: number): HttpError => badRequest(`ModelInferRequest has more than ${limit} ${what} (--max-tensors): refused before decoding`);
