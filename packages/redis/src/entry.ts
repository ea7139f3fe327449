import { type SerializedError, serializeError } from 'batched-fn/adapter';
import { parseTraceparent, type RemoteSpanContext } from './trace-context.js';
import { FIELD } from './wire.js';

/**
 * A request entry as a worker reads it from the stream. Whoever can write to
 * the stream can write anything, so no field is trusted: what is malformed is
 * noted and answered as an error, never run.
 */
export interface Entry {
  entryId: string;
  id: string;
  reply: string;
  deadline: number;
  rows: number;
  /** Orders calls inside the worker's batcher (within what the worker has read). */
  priority: number;
  payload: Buffer;
  /** The caller's trace context, when the frontend traced the call and sent a well-formed one. */
  trace: RemoteSpanContext | undefined;
  /** Why the entry cannot run, when its fields are malformed; it is answered with this. */
  invalid: string | undefined;
}

/** Request ids are `{frontend uuid}:{sequence}`; anything longer is not from a frontend. */
const MAX_ID_LENGTH = 128;

/** Milliseconds since the epoch at which Redis appended the entry: the first half of its ID. */
export const arrivalOf = (entryId: string): number => Number(entryId.slice(0, entryId.indexOf('-')));

/** Reads an entry's fields, trusting none: what is malformed is noted, to be answered as an error. */
export function parseEntry(entryId: Buffer | string, fields: Buffer[]): Entry {
  const values = new Map<string, Buffer>();
  for (let i = 0; i + 1 < fields.length; i += 2) values.set((fields[i] as Buffer).toString(), fields[i + 1] as Buffer);
  const id = values.get(FIELD.id)?.toString() ?? '';
  const deadline = Number(values.get(FIELD.deadline)?.toString() ?? 0);
  const rows = Number(values.get(FIELD.rows)?.toString() ?? 1);
  const priority = Number(values.get(FIELD.priority)?.toString() ?? 0);
  let invalid: string | undefined;
  if (id.length === 0 || id.length > MAX_ID_LENGTH) invalid = `request id must have 1 to ${MAX_ID_LENGTH} characters`;
  else if (!(Number.isFinite(deadline) && deadline >= 0)) invalid = 'deadline must be a finite epoch time in ms, or 0';
  else if (!(Number.isFinite(rows) && rows > 0)) invalid = 'rows must be a finite number above 0';
  else if (!Number.isFinite(priority)) invalid = 'priority must be a finite number';
  else if (!values.has(FIELD.payload)) invalid = 'the entry has no payload';
  return {
    entryId: entryId.toString(),
    id,
    reply: values.get(FIELD.reply)?.toString() ?? '',
    deadline,
    rows,
    priority,
    payload: values.get(FIELD.payload) ?? Buffer.alloc(0),
    trace: parseTraceparent(values.get(FIELD.trace)?.toString()),
    invalid,
  };
}

/** A malformed entry's answer: a client error (400) for whoever sent it. */
export const invalidEntry = (reason: string): SerializedError =>
  serializeError(
    Object.assign(new Error(`Invalid request: ${reason}`), { name: 'InvalidEntryError', statusCode: 400 }),
  );
