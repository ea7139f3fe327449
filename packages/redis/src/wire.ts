import { deserialize, serialize } from 'node:v8';
import type { BatchInfo, DispatchReason } from 'batched-fn';
import { DISPATCH_REASONS, type SerializedError } from 'batched-fn/adapter';

/**
 * Payloads cross Redis in V8's structured-clone format: binary, and typed
 * arrays (tensors) go as raw bytes instead of JSON arrays of numbers.
 */
export const encode = (value: unknown): Buffer => serialize(value);
export const decode = <T>(buffer: Buffer): T => deserialize(buffer) as T;

/** Request entry field names; short, since every request carries them. */
export const FIELD = {
  id: 'i',
  reply: 'r',
  deadline: 'd',
  rows: 'n',
  priority: 'q',
  payload: 'p',
  trace: 't',
} as const;

/** One caller's outcome inside a reply. */
export type WireResult = [id: string, ok: true, value: unknown] | [id: string, ok: false, error: SerializedError];

/** What a worker says about the batch a reply comes from, for the frontend's metrics. */
export interface WireBatch {
  rows: number;
  items: number;
  reason: string;
  execMs: number;
  maxWaitMs: number;
}

export interface WireReply {
  batch: WireBatch | undefined;
  results: WireResult[];
}

const KNOWN_REASONS = new Set<string>(DISPATCH_REASONS);
const count = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value) && value >= 0;

/** The batch figures a worker reported, if every one is sane; its reason must be one the core knows. */
export function validBatch(batch: WireReply['batch']): Omit<BatchInfo, 'name' | 'ok'> | undefined {
  if (typeof batch !== 'object' || batch === null) return undefined;
  const { rows, items, reason, execMs, maxWaitMs } = batch;
  if (!count(rows) || !count(items) || !count(execMs) || !count(maxWaitMs) || !KNOWN_REASONS.has(reason))
    return undefined;
  return { rows, items, reason: reason as DispatchReason, execMs, maxWaitMs };
}
