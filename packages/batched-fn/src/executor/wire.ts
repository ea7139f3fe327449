/**
 * What crosses between the pool and its worker threads. Errors are flattened
 * by hand because structured clone keeps only an Error's message and stack,
 * dropping `code` and other fields servers need to map errors to statuses.
 */
export interface WireError {
  name: string;
  message: string;
  stack: string | undefined;
  fields: Record<string, unknown>;
}

export type ToWorker =
  | { type: 'init' }
  | { type: 'run'; id: number; inputs: unknown[] }
  | { type: 'close' };

export type FromWorker =
  | { type: 'loaded'; interruptible: boolean }
  | { type: 'ready' }
  | { type: 'init-error'; error: WireError }
  | { type: 'result'; id: number; outputs: unknown[]; errors: [number, WireError][] }
  | { type: 'error'; id: number; error: WireError }
  | { type: 'closed' };

export interface WorkerBootData {
  moduleUrl: string;
  data: unknown;
}

export function toWire(error: unknown): WireError {
  if (!(error instanceof Error)) {
    return { name: 'Error', message: `Non-error thrown: ${String(error)}`, stack: undefined, fields: {} };
  }
  const fields: Record<string, unknown> = {};
  for (const key of Object.keys(error)) {
    const value = (error as unknown as Record<string, unknown>)[key];
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) fields[key] = value;
  }
  return { name: error.name, message: error.message, stack: error.stack, fields };
}

export function fromWire(wire: WireError): Error {
  const error = new Error(wire.message);
  Object.assign(error, wire.fields);
  error.name = wire.name;
  if (wire.stack !== undefined) error.stack = wire.stack;
  return error;
}
