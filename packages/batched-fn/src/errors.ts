/**
 * Every error the batcher creates derives from `BatchedFnError` and carries a
 * stable `code`, so servers can map it to a status without string matching.
 */
export type BatchedFnErrorCode =
  | 'ERR_QUEUE_FULL'
  | 'ERR_CLOSED'
  | 'ERR_TIMEOUT'
  | 'ERR_BATCH_SIZE_MISMATCH'
  | 'ERR_ITEM_TOO_LARGE'
  | 'ERR_WORKER_EXITED'
  | 'ERR_UNAVAILABLE'
  | 'ERR_BATCH_TIMEOUT'
  | 'ERR_INVALID_PAD'
  | 'ERR_INVALID_OUTPUT';

export class BatchedFnError extends Error {
  /** Each subclass narrows it to its own literal (`declare`: a type only, so no class field resets it after super()). */
  readonly code: BatchedFnErrorCode;

  constructor(code: BatchedFnErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BatchedFnError';
    this.code = code;
  }
}

/** The queue already holds `channelCap` items. Servers answer it with 503. */
export class QueueFullError extends BatchedFnError {
  declare readonly code: 'ERR_QUEUE_FULL';
  readonly capacity: number;

  constructor(capacity: number) {
    super('ERR_QUEUE_FULL', `Queue is full: it already holds channelCap=${capacity} waiting items`);
    this.name = 'QueueFullError';
    this.capacity = capacity;
  }
}

/** The batcher was closed or destroyed before the call could be served. */
export class ClosedError extends BatchedFnError {
  declare readonly code: 'ERR_CLOSED';
  constructor(message = 'The batcher is closed and accepts no new calls') {
    super('ERR_CLOSED', message);
    this.name = 'ClosedError';
  }
}

/**
 * The call's deadline passed, or (with `predicted: true`) the scheduler could
 * already tell it would pass before an answer could be produced.
 */
export class TimeoutError extends BatchedFnError {
  declare readonly code: 'ERR_TIMEOUT';
  readonly timeout: number;
  readonly predicted: boolean;

  constructor(timeout: number, predicted = false) {
    super(
      'ERR_TIMEOUT',
      predicted
        ? `Call rejected early: its predicted completion is past its ${timeout} ms deadline`
        : `Call timed out after ${timeout} ms`,
    );
    this.name = 'TimeoutError';
    this.timeout = timeout;
    this.predicted = predicted;
  }
}

/** The handler returned something other than one output per input. */
export class BatchSizeMismatchError extends BatchedFnError {
  declare readonly code: 'ERR_BATCH_SIZE_MISMATCH';
  readonly expected: number;
  readonly received: number | undefined;

  constructor(expected: number, received: number | undefined) {
    super(
      'ERR_BATCH_SIZE_MISMATCH',
      received === undefined
        ? `Handler must return an array of ${expected} outputs, got a non-array value`
        : `Handler returned ${received} outputs for a batch of ${expected} inputs`,
    );
    this.name = 'BatchSizeMismatchError';
    this.expected = expected;
    this.received = received;
  }
}

/** One input's `size` is larger than `maxBatchSize`, so no batch can ever hold it. */
export class ItemTooLargeError extends BatchedFnError {
  declare readonly code: 'ERR_ITEM_TOO_LARGE';
  readonly size: number;
  readonly maxBatchSize: number;

  constructor(size: number, maxBatchSize: number) {
    super('ERR_ITEM_TOO_LARGE', `Input has size ${size}, larger than maxBatchSize=${maxBatchSize}`);
    this.name = 'ItemTooLargeError';
    this.size = size;
    this.maxBatchSize = maxBatchSize;
  }
}

/** The worker thread running this call's batch died before answering. */
export class WorkerExitedError extends BatchedFnError {
  declare readonly code: 'ERR_WORKER_EXITED';
  readonly exitCode: number | undefined;
  readonly workerId: number;

  constructor(workerId: number, exitCode: number | undefined, cause?: unknown) {
    super(
      'ERR_WORKER_EXITED',
      `Worker ${workerId} exited${exitCode === undefined ? '' : ` with code ${exitCode}`} while running this call's batch`,
      cause === undefined ? undefined : { cause },
    );
    this.name = 'WorkerExitedError';
    this.exitCode = exitCode;
    this.workerId = workerId;
  }
}

/** The backend that runs batches (a broker, a remote worker pool) cannot be reached right now. */
export class UnavailableError extends BatchedFnError {
  declare readonly code: 'ERR_UNAVAILABLE';
  constructor(message: string, options?: ErrorOptions) {
    super('ERR_UNAVAILABLE', message, options);
    this.name = 'UnavailableError';
  }
}

/**
 * The batch holding this call ran longer than `batchTimeout`. In worker mode the worker was
 * terminated and restarted; inline, the batch's slot was freed and its late result is dropped.
 */
export class BatchTimeoutError extends BatchedFnError {
  declare readonly code: 'ERR_BATCH_TIMEOUT';
  readonly batchTimeout: number;

  constructor(batchTimeout: number) {
    super('ERR_BATCH_TIMEOUT', `The batch holding this call ran longer than batchTimeout=${batchTimeout} ms`);
    this.name = 'BatchTimeoutError';
    this.batchTimeout = batchTimeout;
  }
}

/**
 * `pad` returned something other than the batch's own inputs, in order, followed by filler.
 * Running it would hand callers other callers' outputs, so the batch is refused instead.
 */
export class InvalidPadError extends BatchedFnError {
  declare readonly code: 'ERR_INVALID_PAD';
  constructor(detail: string) {
    super('ERR_INVALID_PAD', `pad() must return the batch's inputs, in order, followed by filler: ${detail}`);
    this.name = 'InvalidPadError';
  }
}

/**
 * A batchedStream's `step` put something other than `{ value?, done? }` or an Error in one slot (a
 * bare number or string, null, a `done` that is not a boolean). Only that slot's stream ends with
 * it; the other streams of the step go on.
 */
export class InvalidOutputError extends BatchedFnError {
  declare readonly code: 'ERR_INVALID_OUTPUT';
  /** The slot of the step's outputs that was malformed. */
  readonly index: number;

  constructor(index: number, detail: string) {
    super(
      'ERR_INVALID_OUTPUT',
      `step() must return \`{ value?, done? }\` or an Error for each state: output ${index} ${detail}`,
    );
    this.name = 'InvalidOutputError';
    this.index = index;
  }
}

/**
 * How a failed call is counted in `stats.failures`, by every front alike (batchedFn, the Redis
 * frontend's PendingCalls, batchedStream's `ended`): the code of an error the library made,
 * `'aborted'` for a caller's AbortSignal, or `'handler'` for anything the user's code threw.
 */
export type FailureKey = BatchedFnErrorCode | 'aborted' | 'handler';

/** The keys of the one cancel path (see CallHandle): the caller's signal, or the call's own timeout. */
export type CancelKey = 'aborted' | 'ERR_TIMEOUT';

/** The key of a failure: its code when the library made it, else 'handler'. */
export function failureKey(error: unknown): FailureKey {
  return error instanceof BatchedFnError ? error.code : 'handler';
}

/** Whether a failure came through the cancel path (the caller gave up), not from the batch. */
export function isCancelKey(key: string): key is CancelKey {
  return key === 'aborted' || key === 'ERR_TIMEOUT';
}
