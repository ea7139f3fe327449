/**
 * Why a request to a stateful (sequence) model is refused: each with a stable `code` and the
 * transport-neutral status protocol/status.ts reads (`protocolStatus`), so REST and gRPC answer
 * alike. Own fields, so they survive the error codec from a worker thread.
 */
export type SequenceErrorCode =
  /** `sequence_id` absent, 0, empty, or not a uint64 or string; a control flag not a boolean. */
  | 'ERR_SEQUENCE_ID'
  /** No live sequence of that id: never started, ended, or freed after its idle timeout. */
  | 'ERR_SEQUENCE_UNKNOWN'
  /** Its state was lost with the worker thread that held it (a crash). */
  | 'ERR_SEQUENCE_LOST'
  /** The model holds its most live sequences (`maxSequences`). */
  | 'ERR_SEQUENCES_FULL';

const STATUS: Record<SequenceErrorCode, string> = {
  ERR_SEQUENCE_ID: 'invalid-argument',
  ERR_SEQUENCE_UNKNOWN: 'invalid-argument',
  ERR_SEQUENCE_LOST: 'failed-precondition',
  ERR_SEQUENCES_FULL: 'resource-exhausted',
};

export class SequenceError extends Error {
  override name = 'SequenceError';
  readonly code: SequenceErrorCode;
  readonly protocolStatus: string;
  /** Seconds after which trying again may succeed (a full model: REST's Retry-After). */
  readonly retryAfter: number | undefined;

  constructor(code: SequenceErrorCode, message: string) {
    super(message);
    this.code = code;
    this.protocolStatus = STATUS[code];
    this.retryAfter = code === 'ERR_SEQUENCES_FULL' ? 1 : undefined;
  }
}

/** The code of a sequence error (from this thread or rebuilt by the codec), else undefined. */
export function sequenceErrorCode(error: unknown): SequenceErrorCode | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code in STATUS ? (code as SequenceErrorCode) : undefined;
}
