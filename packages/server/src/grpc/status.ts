import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import type { ProtocolStatus } from '../protocol/errors.js';
import { messageFor, refusalFor } from '../protocol/status.js';

/** Each protocol status as gRPC answers it (REST's HTTP statuses are rest/http-status.ts's). */
export const GRPC_CODE: Readonly<Record<ProtocolStatus, GrpcStatus>> = {
  'invalid-argument': GrpcStatus.INVALID_ARGUMENT,
  'permission-denied': GrpcStatus.PERMISSION_DENIED,
  'not-found': GrpcStatus.NOT_FOUND,
  conflict: GrpcStatus.FAILED_PRECONDITION,
  'too-large': GrpcStatus.INVALID_ARGUMENT,
  'unsupported-media-type': GrpcStatus.INVALID_ARGUMENT,
  'failed-precondition': GrpcStatus.FAILED_PRECONDITION,
  cancelled: GrpcStatus.CANCELLED,
  internal: GrpcStatus.INTERNAL,
  unavailable: GrpcStatus.UNAVAILABLE,
  'resource-exhausted': GrpcStatus.RESOURCE_EXHAUSTED,
  'deadline-exceeded': GrpcStatus.DEADLINE_EXCEEDED,
};

/**
 * Every error as a gRPC status: the protocol's decision and the same text as REST
 * (protocol/status.ts), mapped onto gRPC's codes. A full queue is RESOURCE_EXHAUSTED here, where
 * REST says 503 with Retry-After.
 */
export function grpcStatusFor(error: unknown): { code: GrpcStatus; details: string } {
  const refusal = refusalFor(error);
  return { code: GRPC_CODE[refusal.status], details: messageFor(error, refusal) };
}

/** The error a unary handler's callback takes. */
export function toServiceError(error: unknown): Partial<ServiceError> {
  const { code, details } = grpcStatusFor(error);
  return { code, details, message: details };
}
