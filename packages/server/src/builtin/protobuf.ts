/**
 * The few protobuf wire-format pieces ONNX files need: varints, tags and
 * length-delimited fields. Writing them by hand keeps a protobuf runtime and
 * a generated schema out of the dependency tree for two small jobs: writing
 * the default model and reading a model's input/output signature.
 */
export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_BYTES = 2;
export const WIRE_FIXED32 = 5;

/** Accumulates encoded fields; `finish()` joins them into one buffer. */
export class ProtoWriter {
  readonly #parts: Uint8Array[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  #push(bytes: Uint8Array): void {
    this.#parts.push(bytes);
    this.#length += bytes.length;
  }

  #varint(value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    const bytes: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      bytes.push(byte);
    } while (v !== 0n);
    this.#push(Uint8Array.from(bytes));
  }

  #tag(field: number, wire: number): void {
    this.#varint((field << 3) | wire);
  }

  int(field: number, value: number | bigint): this {
    this.#tag(field, WIRE_VARINT);
    this.#varint(value);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, WIRE_BYTES);
    this.#varint(value.length);
    this.#push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (writer: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.#length);
    let offset = 0;
    for (const part of this.#parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return out;
  }
}

export interface ProtoField {
  field: number;
  wire: number;
  /** Varint value (as bigint) for WIRE_VARINT. */
  value: bigint;
  /** Payload for WIRE_BYTES; a view into the source, never a copy. */
  bytes: Uint8Array;
}

/** Iterates the top-level fields of one message, skipping payloads it is not asked about. */
export function* readFields(buffer: Uint8Array): Generator<ProtoField> {
  let offset = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (offset >= buffer.length) throw new Error('Truncated protobuf varint');
      const byte = buffer[offset++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  const empty = new Uint8Array(0);
  while (offset < buffer.length) {
    const tag = Number(varint());
    const field = tag >>> 3;
    const wire = tag & 7;
    if (wire === WIRE_VARINT) {
      yield { field, wire, value: varint(), bytes: empty };
    } else if (wire === WIRE_BYTES) {
      const length = Number(varint());
      if (offset + length > buffer.length) throw new Error('Truncated protobuf field');
      const bytes = buffer.subarray(offset, offset + length);
      offset += length;
      yield { field, wire, value: 0n, bytes };
    } else if (wire === WIRE_FIXED64) {
      offset += 8;
    } else if (wire === WIRE_FIXED32) {
      offset += 4;
    } else {
      throw new Error(`Unsupported protobuf wire type ${wire}`);
    }
  }
}
