import { deserialize, serialize } from 'node:v8';
import type { BatchInfo, DispatchReason } from 'batched-fn';
import { DISPATCH_REASONS } from 'batched-fn/adapter';
import {
  BatchedFnError,
  BatchSizeMismatchError,
  ClosedError,
  ItemTooLargeError,
  TimeoutError,
  WorkerExitedError,
} from 'batched-fn';

/**
 * Payloads cross Redis in V8's structured-clone format: binary, and typed
 * arrays (tensors) go as raw bytes instead of JSON arrays of numbers.
 */
export const encode = (value: unknown): Buffer => serialize(value);
export const decode = <T>(buffer: Buffer): T => deserialize(buffer) as T;

/** Request entry field names; short, since every request carries them. */
export const FIELD = { id: 'i', reply: 'r', deadline: 'd', rows: 'n', payload: 'p' } as const;

export interface WireError {
  name: string;
  message: string;
  code?: string;
  /** A client error's HTTP status (400-499), as fastify's `statusCode`: the frontend answers with it. */
  statusCode?: number;
}

const clientStatus = (value: unknown): number | undefined =>
  typeof value === 'number' && Number.isInteger(value) && value >= 400 && value <= 499 ? value : undefined;

/** One caller's outcome inside a reply. */
export type WireResult = [id: string, ok: true, value: unknown] | [id: string, ok: false, error: WireError];

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

export function toWireError(error: unknown): WireError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const code = (error as { code?: unknown }).code;
  const status = clientStatus((error as { status?: unknown }).status) ?? clientStatus((error as { statusCode?: unknown }).statusCode);
  return { name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}), ...(status === undefined ? {} : { statusCode: status }) };
}

/** Rebuilds the batcher's own error classes, so remote callers see the same codes as local ones. */
export function fromWireError(wire: WireError): Error {
  switch (wire.code) {
    case 'ERR_TIMEOUT':
      return Object.assign(new TimeoutError(0), { message: wire.message });
    case 'ERR_ITEM_TOO_LARGE':
      return Object.assign(new ItemTooLargeError(0, 0), { message: wire.message });
    case 'ERR_BATCH_SIZE_MISMATCH':
      return Object.assign(new BatchSizeMismatchError(0, 0), { message: wire.message });
    case 'ERR_WORKER_EXITED':
      return Object.assign(new WorkerExitedError(0, undefined), { message: wire.message });
    case 'ERR_CLOSED':
      return new ClosedError(wire.message);
    default: {
      if (wire.code?.startsWith('ERR_')) return new BatchedFnError(wire.code as never, wire.message);
      const error = new Error(String(wire.message));
      error.name = String(wire.name);
      if (typeof wire.code === 'string') Object.assign(error, { code: wire.code });
      const status = clientStatus(wire.statusCode);
      if (status !== undefined) Object.assign(error, { statusCode: status });
      return error;
    }
  }
}

const KNOWN_REASONS = new Set<string>(DISPATCH_REASONS);
const count = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value) && value >= 0;

/** The batch figures a worker reported, if every one is sane; its reason must be one the core knows. */
export function validBatch(batch: WireReply['batch']): (Omit<BatchInfo, 'name' | 'ok'>) | undefined {
  if (typeof batch !== 'object' || batch === null) return undefined;
  const { rows, items, reason, execMs, maxWaitMs } = batch;
  if (!count(rows) || !count(items) || !count(execMs) || !count(maxWaitMs) || !KNOWN_REASONS.has(reason)) return undefined;
  return { rows, items, reason: reason as DispatchReason, execMs, maxWaitMs };
}

