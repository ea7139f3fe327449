import protobuf from 'protobufjs';
import type { FieldBase, MapField, Type } from 'protobufjs';
import { INT_RANGES, TEXT_FORMAT_LIMITS } from './pbtxt.js';
import { modelConfigType, type TritonModelConfig } from './triton-config.js';

/**
 * Triton's ModelConfig in its JSON form, as the repository extension's `load` takes it (the `config`
 * parameter, tritonclient's `load_model(config=...)`), read strictly against the schema into the same
 * form as a config.pbtxt (pbtxt.ts): field names as in the .proto, repeated fields as arrays, maps as
 * objects, enums as their names, 64-bit integers as numbers (refused past 2^53), bytes as Buffers,
 * fields left out (or null) absent. So one mapping (triton-config.ts `planFromConfig`) reads both.
 *
 * The rules are protobuf's JSON mapping as Triton parses it (JsonToModelConfig in its core:
 * `JsonStringToMessage` with case-insensitive enums and unknown fields refused): a field by its
 * .proto name or its lowerCamelCase JSON name; integers as numbers or decimal strings; floats as
 * numbers or "NaN"/"Infinity"/"-Infinity"; enums by name (any case) or number; bytes as base64;
 * `null` is the field left out; one member of a oneof at most.
 *
 * The text comes from a client, so its size, nesting and value count are bounded as a
 * config.pbtxt's are (TEXT_FORMAT_LIMITS). Every problem is a ConfigJsonError naming the field.
 */

export class ConfigJsonError extends Error {
  override name = 'ConfigJsonError';
  readonly code = 'ERR_CONFIG_JSON';
}

type Field = FieldBase;
const isMap = (field: Field): field is MapField => (field as { map?: boolean }).map === true;
const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** protobuf's JSON name of a field: lowerCamelCase of its .proto name. */
const jsonName = (name: string): string => name.replace(/_(.)/g, (_, c: string) => c.toUpperCase());

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/;
const show = (value: unknown): string => {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
};

class Reader {
  #values = 0;

  #count(where: string): void {
    if (++this.#values > TEXT_FORMAT_LIMITS.maxValues)
      throw new ConfigJsonError(`more than ${TEXT_FORMAT_LIMITS.maxValues} values (at \`${where}\`)`);
  }

  message(value: unknown, type: Type, where: string, depth: number): Record<string, unknown> {
    if (depth > TEXT_FORMAT_LIMITS.maxDepth)
      throw new ConfigJsonError(`\`${where}\` is nested more than ${TEXT_FORMAT_LIMITS.maxDepth} messages deep`);
    if (!isObject(value))
      throw new ConfigJsonError(
        `${where === '' ? 'the config' : `\`${where}\``} must be a JSON object, got ${show(value)}`,
      );
    const byName = new Map<string, Field>();
    for (const field of type.fieldsArray) {
      byName.set(field.name, field);
      byName.set(jsonName(field.name), field);
    }
    const out: Record<string, unknown> = {};
    const oneofs = new Map<string, string>();
    for (const [key, raw] of Object.entries(value)) {
      const at = where === '' ? key : `${where}.${key}`;
      this.#count(at);
      const field = byName.get(key);
      if (field === undefined) {
        const names = type.fieldsArray.map((f) => `\`${f.name}\``).join(', ');
        throw new ConfigJsonError(`\`${at}\` is not a field of ${type.name} (its fields: ${names})`);
      }
      const path = where === '' ? field.name : `${where}.${field.name}`;
      if (Object.hasOwn(out, field.name))
        throw new ConfigJsonError(`\`${path}\` is given twice (as \`${field.name}\` and \`${jsonName(field.name)}\`)`);
      // null is the field left out, in protobuf's JSON mapping.
      if (raw === null) continue;
      const oneof = field.partOf?.name;
      if (oneof !== undefined) {
        const other = oneofs.get(oneof);
        if (other !== undefined)
          throw new ConfigJsonError(`\`${path}\` and \`${other}\` are both given, but only one of ${oneof} may be`);
        oneofs.set(oneof, path);
      }
      out[field.name] = this.#field(raw, field, path, depth);
    }
    return out;
  }

  #field(raw: unknown, field: Field, path: string, depth: number): unknown {
    if (isMap(field)) {
      if (!isObject(raw)) throw new ConfigJsonError(`\`${path}\` is a map: give it as a JSON object, got ${show(raw)}`);
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(raw)) {
        const at = `${path}[${JSON.stringify(key)}]`;
        this.#count(at);
        if (field.keyType !== 'string' && field.keyType !== 'bool') this.#integer(key, field.keyType, at);
        if (value === null) throw new ConfigJsonError(`\`${at}\` is null`);
        out[key] = this.#single(value, field, at, depth);
      }
      return out;
    }
    if (field.repeated) {
      if (!Array.isArray(raw))
        throw new ConfigJsonError(`\`${path}\` is a repeated field: give it as a JSON array, got ${show(raw)}`);
      return raw.map((value, i) => {
        const at = `${path}[${i}]`;
        this.#count(at);
        if (value === null) throw new ConfigJsonError(`\`${at}\` is null`);
        return this.#single(value, field, at, depth);
      });
    }
    return this.#single(raw, field, path, depth);
  }

  /** One value of `field`'s type (a map's value type, for a map). */
  #single(value: unknown, field: Field, where: string, depth: number): unknown {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type) return this.message(value, resolved, where, depth + 1);
    if (resolved instanceof protobuf.Enum) {
      if (typeof value === 'string') {
        // Triton parses enums case-insensitively (`case_insensitive_enum_parsing`).
        const name = Object.keys(resolved.values).find((n) => n.toUpperCase() === value.toUpperCase());
        if (name === undefined)
          throw new ConfigJsonError(
            `\`${where}\` cannot be ${show(value)}; it is one of ${Object.keys(resolved.values).join(', ')}`,
          );
        return name;
      }
      const name = Number.isInteger(value) ? resolved.valuesById[value as number] : undefined;
      if (name === undefined)
        throw new ConfigJsonError(
          `\`${where}\` cannot be ${show(value)}; it is one of ${Object.keys(resolved.values).join(', ')}`,
        );
      return name;
    }
    switch (field.type) {
      case 'string':
        if (typeof value !== 'string') throw new ConfigJsonError(`\`${where}\` must be a string, got ${show(value)}`);
        return value;
      case 'bytes':
        if (typeof value !== 'string' || !BASE64.test(value))
          throw new ConfigJsonError(`\`${where}\` must be base64 text, got ${show(value)}`);
        return Buffer.from(value, 'base64');
      case 'bool':
        if (typeof value !== 'boolean')
          throw new ConfigJsonError(`\`${where}\` must be true or false, got ${show(value)}`);
        return value;
      case 'double':
      case 'float': {
        if (typeof value === 'number') return value;
        if (value === 'NaN') return Number.NaN;
        if (value === 'Infinity') return Number.POSITIVE_INFINITY;
        if (value === '-Infinity') return Number.NEGATIVE_INFINITY;
        if (typeof value === 'string' && /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$/.test(value))
          return Number(value);
        throw new ConfigJsonError(`\`${where}\` must be a number, got ${show(value)}`);
      }
      default:
        return this.#integer(value, field.type, where);
    }
  }

  /** An integer of protobuf type `type`, as a JSON number or a decimal string, within its range and 2^53. */
  #integer(value: unknown, type: string, where: string): number {
    const range = INT_RANGES[type];
    if (range === undefined)
      throw new ConfigJsonError(`\`${where}\` has type ${type}, which this reader does not know`);
    let big: bigint;
    if (typeof value === 'number' && Number.isInteger(value)) big = BigInt(value);
    else if (typeof value === 'string' && /^-?(?:0|[1-9][0-9]*)$/.test(value)) big = BigInt(value);
    else throw new ConfigJsonError(`\`${where}\` must be an integer, got ${show(value)}`);
    const [min, max] = range;
    if (big < min || big > max) throw new ConfigJsonError(`\`${where}\` must be from ${min} to ${max}, got ${big}`);
    if (big > BigInt(Number.MAX_SAFE_INTEGER) || big < BigInt(Number.MIN_SAFE_INTEGER))
      throw new ConfigJsonError(`\`${where}\` is ${big}, past 2^53, which this server does not read exactly`);
    return Number(big);
  }
}

/** Parses Triton's JSON ModelConfig text into the form planFromConfig reads; throws ConfigJsonError. */
export function readConfigJson(text: string): TritonModelConfig {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > TEXT_FORMAT_LIMITS.maxBytes)
    throw new ConfigJsonError(`the config is ${bytes} bytes, more than ${TEXT_FORMAT_LIMITS.maxBytes}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigJsonError(`not valid JSON: ${(error as Error).message}`);
  }
  return new Reader().message(json, modelConfigType(), '', 0);
}
