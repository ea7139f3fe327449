import type { ServiceDefinition } from '@grpc/grpc-js';

/**
 * ModelInferResponse (and ModelStreamInferResponse) written straight to wire bytes, for the
 * answers of ModelInfer and ModelStreamInfer.
 *
 * Why not protobufjs: through proto-loader an answer is built three times (the object we give,
 * protobufjs's `fromObject` message, then its writer's list of operations, one per field) before
 * the bytes exist: about 2.6 KB and 2.5-4 µs for a one-output answer, on the hottest path. Here
 * the bytes are written once into a buffer sized from the answer; only the length of an embedded
 * message (an output, a parameter) is written after its content, which is moved when its length
 * takes fewer bytes than were kept for it.
 *
 * Fields follow proto3's encoding: a field left at its default (an empty string, an empty
 * `shape`) is not written, `shape` is packed, 64-bit integers are two's complement varints.
 * infer-wire.test.ts decodes what this writes with protobufjs and compares.
 */

/** InferParameter's oneof, as the server's answers give it: the one member set. */
export type WireParameter =
  | { bool_param: boolean }
  | { int64_param: number | string | bigint }
  | { string_param: string }
  | { double_param: number }
  | { uint64_param: number | string | bigint };

export interface WireInferResponse {
  model_name?: string;
  model_version?: string;
  id?: string;
  parameters?: Record<string, WireParameter>;
  outputs?: readonly {
    name?: string;
    datatype?: string;
    shape?: readonly number[];
    parameters?: Record<string, WireParameter>;
  }[];
  raw_output_contents?: readonly Uint8Array[];
}

/** An answer as an object to write, or already written (grpc/encode.ts writes the answers of inferences itself). */
export type InferResponseValue = WireInferResponse | Buffer;

export interface WireStreamInferResponse {
  error_message?: string;
  infer_response?: InferResponseValue;
}

/** The service definition with ModelInfer's and ModelStreamInfer's answers written by this module. */
export function withResponseWriters(service: ServiceDefinition): ServiceDefinition {
  const infer = service.ModelInfer;
  const stream = service.ModelStreamInfer;
  if (infer === undefined || stream === undefined) throw new Error('not the GRPCInferenceService definition');
  return {
    ...service,
    ModelInfer: {
      ...infer,
      responseSerialize: (value: unknown) => serializeModelInferResponse(value as WireInferResponse),
    },
    ModelStreamInfer: {
      ...stream,
      responseSerialize: (value: unknown) => serializeModelStreamInferResponse(value as WireStreamInferResponse),
    },
  };
}

export function serializeModelInferResponse(response: InferResponseValue): Buffer {
  if (Buffer.isBuffer(response)) return response;
  const writer = new WireWriter(inferResponseBound(response));
  writeInferResponse(writer, response);
  return writer.done();
}

export function serializeModelStreamInferResponse(response: WireStreamInferResponse): Buffer {
  const inner = response.infer_response;
  const innerBound = inner === undefined ? 0 : Buffer.isBuffer(inner) ? inner.length : inferResponseBound(inner);
  const writer = new WireWriter(
    stringBound(response.error_message) + (inner === undefined ? 0 : 1 + LENGTH_BOUND + innerBound),
  );
  writer.string(1, response.error_message);
  if (Buffer.isBuffer(inner)) writer.bytes(2, inner);
  else if (inner !== undefined) {
    const start = writer.open(2);
    writeInferResponse(writer, inner);
    writer.close(start);
  }
  return writer.done();
}

function writeInferResponse(writer: WireWriter, response: WireInferResponse): void {
  writer.string(1, response.model_name);
  writer.string(2, response.model_version);
  writer.string(3, response.id);
  writeParameters(writer, 4, response.parameters);
  for (const output of response.outputs ?? [])
    writeOutput(writer, output.name, output.datatype, output.shape, output.parameters);
  // Every element is written, empty or not: its place says which output it belongs to.
  for (const raw of response.raw_output_contents ?? []) writer.bytes(6, raw);
}

/** An InferOutputTensor (field 5 of ModelInferResponse). */
export function writeOutput(
  writer: WireWriter,
  name: string | undefined,
  datatype: string | undefined,
  shape: readonly number[] | undefined,
  parameters: Record<string, WireParameter> | undefined,
): void {
  const start = writer.open(5);
  writer.string(1, name);
  writer.string(2, datatype);
  writer.packedInt64(3, shape);
  writeParameters(writer, 4, parameters);
  writer.close(start);
}

/** At least the bytes writeOutput takes. */
export const outputBound = (
  name: string,
  datatype: string,
  shape: readonly number[],
  parameters: Record<string, WireParameter> | undefined,
): number =>
  2 * (1 + LENGTH_BOUND) + stringBound(name) + stringBound(datatype) + shape.length * 10 + parametersBound(parameters);

function writeParameters(
  writer: WireWriter,
  field: number,
  parameters: Record<string, WireParameter> | undefined,
): void {
  if (parameters === undefined) return;
  for (const key of Object.keys(parameters)) {
    const entry = writer.open(field);
    writer.string(1, key);
    const value = writer.open(2);
    const parameter = parameters[key] as Record<string, unknown>;
    if ('bool_param' in parameter) writer.varint(1, parameter.bool_param === true ? 1 : 0);
    else if ('int64_param' in parameter) writer.int64(2, parameter.int64_param as number | string | bigint);
    else if ('string_param' in parameter) writer.string(3, parameter.string_param as string, true);
    else if ('double_param' in parameter) writer.double(4, parameter.double_param as number);
    else if ('uint64_param' in parameter) writer.int64(5, parameter.uint64_param as number | string | bigint);
    else throw new TypeError(`parameter \`${key}\` has no value of InferParameter's`);
    writer.close(value);
    writer.close(entry);
  }
}

/** Most bytes a varint of a length (below 2^32) takes. */
export const LENGTH_BOUND = 5;
/** Most bytes a tag (field numbers below 16) and a 64-bit varint take. */
const VARINT_FIELD_BOUND = 11;

export const stringBound = (text: string | undefined): number =>
  text === undefined ? 0 : 1 + LENGTH_BOUND + text.length * 3;

/** At least the bytes `response` takes: UTF-8 needs at most 3 bytes for a UTF-16 unit. */
function inferResponseBound(response: WireInferResponse): number {
  let bound =
    stringBound(response.model_name) +
    stringBound(response.model_version) +
    stringBound(response.id) +
    parametersBound(response.parameters);
  for (const output of response.outputs ?? [])
    bound += outputBound(output.name ?? '', output.datatype ?? '', output.shape ?? [], output.parameters);
  for (const raw of response.raw_output_contents ?? []) bound += 1 + LENGTH_BOUND + raw.byteLength;
  return bound;
}

function parametersBound(parameters: Record<string, WireParameter> | undefined): number {
  if (parameters === undefined) return 0;
  let bound = 0;
  for (const key of Object.keys(parameters)) {
    const parameter = parameters[key] as { string_param?: unknown };
    const text = typeof parameter.string_param === 'string' ? parameter.string_param : '';
    bound += 2 * (1 + LENGTH_BOUND) + stringBound(key) + VARINT_FIELD_BOUND + stringBound(text);
  }
  return bound;
}

const TWO_32 = 2 ** 32;

/** Writes fields into one buffer allocated up front for the answer's bound. */
export class WireWriter {
  readonly #buf: Buffer;
  #pos = 0;

  constructor(bound: number) {
    this.#buf = Buffer.allocUnsafe(bound);
  }

  done(): Buffer {
    return this.#buf.subarray(0, this.#pos);
  }

  /** A string field, left out when empty (its default) unless `always`. */
  string(field: number, text: string | undefined, always = false): void {
    if (text === undefined || (text === '' && !always)) return;
    this.#tag(field, 2);
    // ASCII, the usual case, takes a byte a unit: no separate measuring pass then.
    const length = Buffer.byteLength(text);
    this.#uint(length);
    this.#pos += this.#buf.write(text, this.#pos, length, 'utf8');
  }

  bytes(field: number, data: Uint8Array): void {
    this.#tag(field, 2);
    this.#uint(data.byteLength);
    this.#buf.set(data, this.#pos);
    this.#pos += data.byteLength;
  }

  varint(field: number, value: number): void {
    this.#tag(field, 0);
    this.#uint(value);
  }

  int64(field: number, value: number | string | bigint): void {
    this.#tag(field, 0);
    this.#int64(value);
  }

  double(field: number, value: number): void {
    this.#tag(field, 1);
    this.#pos = this.#buf.writeDoubleLE(value, this.#pos);
  }

  packedInt64(field: number, values: readonly number[] | undefined): void {
    if (values === undefined || values.length === 0) return;
    const start = this.open(field);
    for (const value of values) this.#int64(value);
    this.close(start);
  }

  /** Starts an embedded message: its tag, and room for its length. Returns where its content starts. */
  open(field: number): number {
    this.#tag(field, 2);
    this.#pos += LENGTH_BOUND;
    return this.#pos;
  }

  /** Ends the embedded message that started at `start`: its length, then its content moved up to it. */
  close(start: number): void {
    const length = this.#pos - start;
    const room = start - LENGTH_BOUND;
    this.#pos = room;
    this.#uint(length);
    if (this.#pos !== start) this.#buf.copyWithin(this.#pos, start, start + length);
    this.#pos += length;
  }

  #tag(field: number, wire: number): void {
    this.#uint((field << 3) | wire);
  }

  /** An unsigned varint of a number below 2^53. */
  #uint(value: number): void {
    const buf = this.#buf;
    let pos = this.#pos;
    let rest = value;
    while (rest >= 0x80) {
      buf[pos++] = (rest & 0x7f) | 0x80;
      rest = rest >= TWO_32 ? Math.floor(rest / 128) : rest >>> 7;
    }
    buf[pos++] = rest;
    this.#pos = pos;
  }

  /** A 64-bit integer as a varint: two's complement for a negative one (ten bytes), as protobuf writes int64. */
  #int64(value: number | string | bigint): void {
    if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) {
      this.#uint(value);
      return;
    }
    let rest = BigInt.asUintN(64, BigInt(value));
    const buf = this.#buf;
    while (rest >= 0x80n) {
      buf[this.#pos++] = Number(rest & 0x7fn) | 0x80;
      rest >>= 7n;
    }
    buf[this.#pos++] = Number(rest);
  }
}
