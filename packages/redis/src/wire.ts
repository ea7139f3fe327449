import { deserialize, serialize } from 'node:v8';
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
}

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
  return { name: error.name, message: error.message, ...(typeof code === 'string' ? { code } : {}) };
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
      const error = new Error(wire.message);
      error.name = wire.name;
      if (wire.code !== undefined) Object.assign(error, { code: wire.code });
      return error;
    }
  }
}
