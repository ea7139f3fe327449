import protobuf from 'protobufjs';
import type { FieldBase, MapField, Type } from 'protobufjs';

type Field = FieldBase;
const isMap = (field: FieldBase): field is MapField => (field as { map?: boolean }).map === true;

/**
 * Protocol Buffers text format (`config.pbtxt`), read strictly against a message's schema.
 *
 * Why our own: no maintained npm library parses text format. `prototxt-parser` (0.1.5, the only
 * candidate) is a Caffe-era grammar without a schema: it refuses the list form `input [ {...} ]`
 * and `dims: [ 2 ]` that nearly every Triton config uses, decodes only the first escape of a
 * string, and returns a repeated field given once as a scalar, so a reader could not tell `dims: 3`
 * from `dims: [3]`. protobufjs (already installed for gRPC) reads .proto files and JSON but not
 * text format; it gives us the schema, and this file walks it.
 *
 * What is read (the text format's grammar, as protobuf's own parser takes it):
 * - `field: scalar`, `field: [a, b]` for repeated scalars, `field { ... }`, `field: { ... }`,
 *   `field < ... >`, and `field [ { ... }, { ... } ]` for repeated messages; `,` or `;` may end a field;
 * - `# comments` to the end of the line;
 * - strings in double or single quotes, adjacent ones joined, with C escapes (`\n`, `\"`, octal
 *   `\101`, hex `\x41`, `\u00e9`, `\U0001F600`);
 * - integers in decimal, hex (`0x1F`) and octal (`017`), floats with an optional `f`, `inf`, `nan`;
 *   booleans `true`/`false`/`True`/`False`/`t`/`f`/`1`/`0`; enums by name or number;
 * - map fields as repeated `{ key: ... value: ... }` entries.
 * Every field name is checked against the message it is in, every value against the field's type
 * and range; a field that is not repeated may appear once, and one member of a oneof at most.
 * Extensions and `Any` (`[type.googleapis.com/...]`) are refused.
 *
 * The result is the message's JSON form as proto-loader writes it with `keepCase`: field names as
 * in the .proto, repeated fields as arrays, maps as objects, enums as their names, 64-bit integers
 * as numbers (refused past 2^53), bytes as Buffers. Fields left out are absent (no defaults).
 *
 * The file may come from elsewhere (a repository copied from another team), so its size, the
 * nesting of its messages and the count of its values are bounded before anything large is built.
 */

export interface TextFormatLimits {
  /** Largest text read, in bytes (UTF-8). @default 1 MiB */
  maxBytes: number;
  /** Deepest nesting of messages. @default 32 */
  maxDepth: number;
  /** Most fields and values in all. @default 100000 */
  maxValues: number;
}

/** A Triton config is a few kilobytes; the largest in Triton's own tests (long `dims`, many warmups) are far below these. */
export const TEXT_FORMAT_LIMITS: Readonly<TextFormatLimits> = Object.freeze({
  maxBytes: 1024 * 1024,
  maxDepth: 32,
  maxValues: 100_000,
});

/** Text that is not valid text format for the message, or exceeds a limit; the message names the line and column. */
export class TextFormatError extends Error {
  override name = 'TextFormatError';
  readonly code = 'ERR_TEXT_FORMAT';
  readonly line: number;
  readonly column: number;
  constructor(message: string, line: number, column: number) {
    super(`line ${line}, column ${column}: ${message}`);
    this.line = line;
    this.column = column;
  }
}

type TokenKind = 'ident' | 'number' | 'string' | 'symbol' | 'eof';

interface Token {
  kind: TokenKind;
  /** The identifier, the number's text, the symbol; a string's bytes are in `bytes`. */
  text: string;
  bytes?: Uint8Array;
  line: number;
  column: number;
}

const SIMPLE_ESCAPES: Record<string, number> = {
  a: 7,
  b: 8,
  f: 12,
  n: 10,
  r: 13,
  t: 9,
  v: 11,
  '\\': 92,
  "'": 39,
  '"': 34,
  '?': 63,
};
const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;
// Decimal, hex and octal integers, and floats (`1.`, `.5`, `1e-3`, an `f` suffix): text format's number forms.
const NUMBER = /(?:0[xX][0-9A-Fa-f]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fF]?)/y;
const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/** Splits the text into tokens, one at a time; linear in the text (sticky regexps, no backtracking across tokens). */
class Tokenizer {
  readonly #text: string;
  #pos = 0;
  #line = 1;
  #lineStart = 0;

  constructor(text: string) {
    this.#text = text;
  }

  error(message: string, at?: { line: number; column: number }): TextFormatError {
    return new TextFormatError(message, at?.line ?? this.#line, at?.column ?? this.#pos - this.#lineStart + 1);
  }

  next(): Token {
    this.#skipSpace();
    const text = this.#text;
    const line = this.#line;
    const column = this.#pos - this.#lineStart + 1;
    if (this.#pos >= text.length) return { kind: 'eof', text: '', line, column };
    const c = text[this.#pos] as string;
    if (c === '"' || c === "'") return { kind: 'string', text: c, bytes: this.#string(c), line, column };
    IDENT.lastIndex = this.#pos;
    const ident = IDENT.exec(text);
    if (ident !== null) {
      this.#pos += ident[0].length;
      return { kind: 'ident', text: ident[0], line, column };
    }
    NUMBER.lastIndex = this.#pos;
    const number = NUMBER.exec(text);
    if (number !== null) {
      this.#pos += number[0].length;
      // `12abc` is not a number followed by a name: protobuf's tokenizer refuses it too.
      IDENT.lastIndex = this.#pos;
      if (IDENT.test(text))
        throw this.error(`malformed number \`${text.slice(this.#pos - number[0].length, this.#pos + 1)}...\``, {
          line,
          column,
        });
      return { kind: 'number', text: number[0], line, column };
    }
    if ('{}[]<>:,;-'.includes(c)) {
      this.#pos++;
      return { kind: 'symbol', text: c, line, column };
    }
    throw this.error(`unexpected character ${JSON.stringify(c)}`);
  }

  #skipSpace(): void {
    const text = this.#text;
    while (this.#pos < text.length) {
      const c = text[this.#pos];
      if (c === '\n') {
        this.#pos++;
        this.#line++;
        this.#lineStart = this.#pos;
      } else if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
        this.#pos++;
      } else if (c === '#') {
        const end = text.indexOf('\n', this.#pos);
        this.#pos = end === -1 ? text.length : end;
      } else {
        return;
      }
    }
  }

  /** One quoted string, escapes decoded, as bytes (octal and hex escapes are bytes, not characters). */
  #string(quote: string): Uint8Array {
    const text = this.#text;
    // Runs of plain text as encoded chunks, escapes as single bytes: a megabyte-long string costs a megabyte.
    const chunks: Uint8Array[] = [];
    const bytes = { push: (byte: number): void => void chunks.push(Uint8Array.of(byte)) };
    const start = { line: this.#line, column: this.#pos - this.#lineStart + 1 };
    this.#pos++;
    for (;;) {
      if (this.#pos >= text.length || text[this.#pos] === '\n') throw this.error('unterminated string', start);
      const c = text[this.#pos] as string;
      if (c === quote) {
        this.#pos++;
        return Buffer.concat(chunks);
      }
      if (c !== '\\') {
        // A run of plain characters at once: most strings have no escapes at all.
        let end = this.#pos;
        while (end < text.length && text[end] !== quote && text[end] !== '\\' && text[end] !== '\n') end++;
        chunks.push(encoder.encode(text.slice(this.#pos, end)));
        this.#pos = end;
        continue;
      }
      const e = text[this.#pos + 1];
      if (e === undefined) throw this.error('unterminated string', start);
      const simple = SIMPLE_ESCAPES[e];
      if (simple !== undefined) {
        bytes.push(simple);
        this.#pos += 2;
      } else if (e >= '0' && e <= '7') {
        const digits = /[0-7]{1,3}/y;
        digits.lastIndex = this.#pos + 1;
        const octal = digits.exec(text)?.[0] as string;
        const value = Number.parseInt(octal, 8);
        if (value > 255) throw this.error(`octal escape \\${octal} is past 255`);
        bytes.push(value);
        this.#pos += 1 + octal.length;
      } else if (e === 'x' || e === 'X') {
        const digits = /[0-9A-Fa-f]{1,2}/y;
        digits.lastIndex = this.#pos + 2;
        const hex = digits.exec(text)?.[0];
        if (hex === undefined) throw this.error('\\x must be followed by hex digits');
        bytes.push(Number.parseInt(hex, 16));
        this.#pos += 2 + hex.length;
      } else if (e === 'u' || e === 'U') {
        const length = e === 'u' ? 4 : 8;
        const hex = text.slice(this.#pos + 2, this.#pos + 2 + length);
        if (!new RegExp(`^[0-9A-Fa-f]{${length}}$`).test(hex))
          throw this.error(`\\${e} must be followed by ${length} hex digits`);
        const code = Number.parseInt(hex, 16);
        if (code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
          throw this.error(`\\${e}${hex} is not a Unicode scalar value`);
        chunks.push(encoder.encode(String.fromCodePoint(code)));
        this.#pos += 2 + length;
      } else {
        throw this.error(`unknown escape \\${e}`);
      }
    }
  }
}

/** The range of each protobuf integer type, shared by the text-format reader and the JSON config reader. */
export const INT_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

/** Reads text format against one message type; one instance per text. */
class Parser {
  readonly #tokens: Tokenizer;
  readonly #limits: TextFormatLimits;
  #token: Token;
  #values = 0;

  constructor(text: string, limits: TextFormatLimits) {
    this.#tokens = new Tokenizer(text);
    this.#limits = limits;
    this.#token = this.#tokens.next();
  }

  parse(type: Type): Record<string, unknown> {
    const message = this.#message(type, type.name, 1, 'eof');
    return message;
  }

  #advance(): Token {
    const token = this.#token;
    this.#token = this.#tokens.next();
    return token;
  }

  #is(text: string): boolean {
    return this.#token.kind === 'symbol' && this.#token.text === text;
  }

  #expect(text: string, what: string): void {
    if (!this.#is(text)) throw this.#unexpected(what);
    this.#advance();
  }

  #unexpected(what: string): TextFormatError {
    const t = this.#token;
    const got = t.kind === 'eof' ? 'the end of the file' : t.kind === 'string' ? 'a string' : `\`${t.text}\``;
    return this.#tokens.error(`expected ${what}, got ${got}`, t);
  }

  #count(): void {
    this.#values++;
    if (this.#values > this.#limits.maxValues)
      throw this.#tokens.error(`more than ${this.#limits.maxValues} fields and values`, this.#token);
  }

  /** The fields of one message, up to `end` (`}`, `>`, or the end of the text for the top message). */
  #message(type: Type, path: string, depth: number, end: '}' | '>' | 'eof'): Record<string, unknown> {
    if (depth > this.#limits.maxDepth)
      throw this.#tokens.error(`messages nested deeper than ${this.#limits.maxDepth}`, this.#token);
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    const seen = new Set<string>();
    const oneofs = new Map<string, string>();
    for (;;) {
      const token = this.#token;
      if (end === 'eof' ? token.kind === 'eof' : this.#is(end)) {
        this.#advance();
        // A plain object from here on, so the result serializes and compares like any other.
        return { ...out };
      }
      if (token.kind === 'eof') throw this.#unexpected(`\`${end}\` to close ${path}`);
      if (this.#is('[')) throw this.#tokens.error(`extensions and Any (\`[...]\`) are not supported in ${path}`, token);
      if (token.kind !== 'ident') throw this.#unexpected(`a field name of ${path}`);
      this.#advance();
      const field = type.fields[token.text];
      if (field === undefined) {
        const names = Object.keys(type.fields);
        const near = names.find((name) => editDistance(name, token.text) <= 2);
        const hint =
          near !== undefined
            ? `did you mean \`${near}\`?`
            : `its fields: ${names.map((name) => `\`${name}\``).join(', ')}`;
        throw this.#tokens.error(`unknown field \`${token.text}\` in ${path} (${hint})`, token);
      }
      this.#count();
      const where = `${path}.${field.name}`;
      if (!field.repeated && !isMap(field) && seen.has(field.name))
        throw this.#tokens.error(`\`${where}\` is given twice; it is not a repeated field`, token);
      seen.add(field.name);
      const oneof = field.partOf;
      if (oneof !== null && oneof !== undefined) {
        const other = oneofs.get(oneof.name);
        if (other !== undefined && other !== field.name)
          throw this.#tokens.error(
            `\`${where}\` and \`${path}.${other}\` are both given; they are alternatives (oneof \`${oneof.name}\`)`,
            token,
          );
        oneofs.set(oneof.name, field.name);
      }
      this.#field(field, where, depth, out);
      // A field may end with `,` or `;`.
      if (this.#is(',') || this.#is(';')) this.#advance();
    }
  }

  #field(field: Field, where: string, depth: number, out: Record<string, unknown>): void {
    field.resolve();
    const map = isMap(field);
    const isMessage = map || field.resolvedType instanceof protobuf.Type;
    if (isMessage) {
      // `field { }`, `field: { }`, `field < >`, or a list `field: [ { }, { } ]`.
      if (this.#is(':')) this.#advance();
      const read = (): void => this.#messageValue(field, where, depth, out, map);
      if (this.#is('[')) {
        if (!field.repeated && !map)
          throw this.#tokens.error(`\`${where}\` is not a repeated field: give it as { ... }, not a list`, this.#token);
        this.#list(read);
      } else {
        read();
      }
      return;
    }
    this.#expect(':', `\`:\` after \`${where}\``);
    if (this.#is('[')) {
      if (!field.repeated)
        throw this.#tokens.error(`\`${where}\` is not a repeated field: give it one value, not a list`, this.#token);
      const values: unknown[] = [];
      this.#list(() => values.push(this.#scalar(field, where)));
      out[field.name] = [...((out[field.name] as unknown[] | undefined) ?? []), ...values];
      return;
    }
    const value = this.#scalar(field, where);
    out[field.name] = field.repeated ? [...((out[field.name] as unknown[] | undefined) ?? []), value] : value;
  }

  /** `[ item, item ]`, possibly empty; each item read by `read`. */
  #list(read: () => void): void {
    this.#expect('[', '`[`');
    if (this.#is(']')) {
      this.#advance();
      return;
    }
    for (;;) {
      read();
      if (this.#is(']')) {
        this.#advance();
        return;
      }
      this.#expect(',', '`,` or `]` in a list');
    }
  }

  #messageValue(field: Field, where: string, depth: number, out: Record<string, unknown>, map: boolean): void {
    let end: '}' | '>';
    if (this.#is('{')) end = '}';
    else if (this.#is('<')) end = '>';
    else throw this.#unexpected(`\`{\` to open \`${where}\``);
    this.#advance();
    if (map) {
      const { key, value } = this.#mapEntry(field as MapField, where, depth + 1, end);
      const entries =
        (out[field.name] as Record<string, unknown> | undefined) ?? (Object.create(null) as Record<string, unknown>);
      if (Object.hasOwn(entries, key))
        throw this.#tokens.error(`\`${where}\` has key ${JSON.stringify(key)} twice`, this.#token);
      entries[key] = value;
      out[field.name] = entries;
      return;
    }
    const message = this.#message(field.resolvedType as Type, where, depth + 1, end);
    out[field.name] = field.repeated ? [...((out[field.name] as unknown[] | undefined) ?? []), message] : message;
  }

  /** One `{ key: K value: V }` entry of a map field; both must be given. */
  #mapEntry(field: MapField, where: string, depth: number, end: '}' | '>'): { key: string; value: unknown } {
    if (depth > this.#limits.maxDepth)
      throw this.#tokens.error(`messages nested deeper than ${this.#limits.maxDepth}`, this.#token);
    let key: string | undefined;
    let value: unknown;
    let hasValue = false;
    const keyField = { name: 'key', type: field.keyType, repeated: false, resolvedType: null } as unknown as Field;
    for (;;) {
      const token = this.#token;
      if (this.#is(end)) {
        this.#advance();
        break;
      }
      if (token.kind !== 'ident' || (token.text !== 'key' && token.text !== 'value'))
        throw this.#unexpected(`\`key\` or \`value\` in an entry of \`${where}\``);
      this.#advance();
      this.#count();
      if (token.text === 'key') {
        if (key !== undefined) throw this.#tokens.error(`an entry of \`${where}\` gives \`key\` twice`, token);
        this.#expect(':', '`:` after `key`');
        key = String(this.#scalar(keyField, `${where}.key`));
      } else {
        if (hasValue) throw this.#tokens.error(`an entry of \`${where}\` gives \`value\` twice`, token);
        hasValue = true;
        const holder: Record<string, unknown> = {};
        const valueField =
          field.resolvedType instanceof protobuf.Type || field.resolvedType instanceof protobuf.Enum
            ? field
            : ({
                name: 'value',
                type: field.type,
                repeated: false,
                resolvedType: null,
                resolve() {},
              } as unknown as Field);
        // The value is the map's value type: a message (`value { }`) or a scalar (`value: 1`).
        if (field.resolvedType instanceof protobuf.Type) {
          if (this.#is(':')) this.#advance();
          let close: '}' | '>';
          if (this.#is('{')) close = '}';
          else if (this.#is('<')) close = '>';
          else throw this.#unexpected(`\`{\` to open the value of \`${where}\``);
          this.#advance();
          holder.value = this.#message(field.resolvedType, `${where}.value`, depth + 1, close);
        } else {
          this.#expect(':', '`:` after `value`');
          holder.value = this.#scalar(valueField, `${where}.value`);
        }
        value = holder.value;
      }
      if (this.#is(',') || this.#is(';')) this.#advance();
    }
    if (key === undefined) throw this.#tokens.error(`an entry of \`${where}\` has no \`key\``, this.#token);
    if (!hasValue)
      throw this.#tokens.error(`the entry ${JSON.stringify(key)} of \`${where}\` has no \`value\``, this.#token);
    return { key, value };
  }

  /** One scalar or enum value for `field`, checked against its type. */
  #scalar(field: Field, where: string): unknown {
    this.#count();
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Enum) {
      const token = this.#token;
      if (token.kind === 'ident') {
        this.#advance();
        if (!Object.hasOwn(resolved.values, token.text))
          throw this.#tokens.error(
            `\`${where}\` cannot be ${token.text}; it is one of ${Object.keys(resolved.values).join(', ')}`,
            token,
          );
        return token.text;
      }
      const number = Number(this.#integer(where, INT_RANGES.int32 as readonly [bigint, bigint]));
      const name = resolved.valuesById[number];
      if (name === undefined)
        throw this.#tokens.error(
          `\`${where}\` cannot be ${number}; it is one of ${Object.keys(resolved.values).join(', ')}`,
          token,
        );
      return name;
    }
    switch (field.type) {
      case 'string':
      case 'bytes': {
        const token = this.#token;
        if (token.kind !== 'string') throw this.#unexpected(`a quoted string for \`${where}\``);
        const parts: Uint8Array[] = [];
        // Adjacent literals are one string ("a" "b" is "ab").
        while (this.#token.kind === 'string') parts.push(this.#advance().bytes as Uint8Array);
        const bytes = Buffer.concat(parts);
        if (field.type === 'bytes') return bytes;
        try {
          return utf8.decode(bytes);
        } catch {
          throw this.#tokens.error(`\`${where}\` is not valid UTF-8`, token);
        }
      }
      case 'bool': {
        const token = this.#advance();
        if (token.kind === 'ident' && ['true', 'True', 't'].includes(token.text)) return true;
        if (token.kind === 'ident' && ['false', 'False', 'f'].includes(token.text)) return false;
        if (token.kind === 'number' && (token.text === '1' || token.text === '0')) return token.text === '1';
        throw this.#tokens.error(`\`${where}\` must be true or false, got \`${token.text}\``, token);
      }
      case 'double':
      case 'float':
        return this.#float(where);
      default: {
        const range = INT_RANGES[field.type];
        if (range === undefined)
          throw this.#tokens.error(`\`${where}\` has type ${field.type}, which this reader does not know`, this.#token);
        const value = this.#integer(where, range);
        if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER))
          throw this.#tokens.error(
            `\`${where}\` is ${value}, past 2^53, which this server does not read exactly`,
            this.#token,
          );
        return Number(value);
      }
    }
  }

  /** An integer with an optional minus sign, in decimal, hex or octal, within `range`. */
  #integer(where: string, range: readonly [bigint, bigint]): bigint {
    const start = this.#token;
    const negative = this.#is('-');
    if (negative) this.#advance();
    const token = this.#token;
    if (token.kind !== 'number') throw this.#unexpected(`an integer for \`${where}\``);
    this.#advance();
    const text = token.text;
    let value: bigint;
    if (/^0[xX][0-9A-Fa-f]+$/.test(text)) value = BigInt(text);
    else if (/^0[0-7]+$/.test(text)) value = BigInt(`0o${text.slice(1)}`);
    else if (/^(0|[1-9][0-9]*)$/.test(text)) value = BigInt(text);
    else throw this.#tokens.error(`\`${where}\` must be an integer, got \`${negative ? '-' : ''}${text}\``, start);
    if (negative) value = -value;
    const [min, max] = range;
    if (value < min || value > max)
      throw this.#tokens.error(`\`${where}\` must be from ${min} to ${max}, got ${value}`, start);
    return value;
  }

  #float(where: string): number {
    const start = this.#token;
    const negative = this.#is('-');
    if (negative) this.#advance();
    const token = this.#advance();
    let value: number;
    if (token.kind === 'ident' && /^(inf|infinity)$/i.test(token.text)) value = Number.POSITIVE_INFINITY;
    else if (token.kind === 'ident' && /^nan$/i.test(token.text)) value = Number.NaN;
    else if (token.kind === 'number' && !/^0[xX]/.test(token.text)) value = Number(token.text.replace(/[fF]$/, ''));
    else throw this.#tokens.error(`\`${where}\` must be a number, got \`${token.text}\``, start);
    return negative ? -value : value;
  }
}

/** Levenshtein distance, for a "did you mean" on a misspelt field name (names are short). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(
        (previous[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    previous = row;
  }
  return previous[b.length] as number;
}

/**
 * Parses `text` as a text-format `type` message into its JSON form (see the top of this file);
 * throws TextFormatError naming the line, the column and what is wrong.
 */
export function parseTextFormat(
  text: string,
  type: Type,
  limits: TextFormatLimits = TEXT_FORMAT_LIMITS,
): Record<string, unknown> {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > limits.maxBytes)
    throw new TextFormatError(`the text is ${bytes} bytes, more than ${limits.maxBytes}`, 1, 1);
  return new Parser(text, limits).parse(type);
}
