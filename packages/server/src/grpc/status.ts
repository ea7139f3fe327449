import { BatchedFnError } from 'batched-fn';
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { messageFor, statusFor } from '../kserve/status.js';

/**
 * Every error as a gRPC status: the same decision and the same text as REST
 * (kserve/status.ts), mapped onto gRPC's codes. A full queue is
 * RESOURCE_EXHAUSTED here, where REST says 503 with Retry-After.
 */
export function grpcStatusFor(error: unknown): { code: GrpcStatus; details: string } {
  const { status } = statusFor(error);
  const details = messageFor(error, status);
  if (error instanceof BatchedFnError && error.code === 'ERR_QUEUE_FULL') return { code: GrpcStatus.RESOURCE_EXHAUSTED, details };
  return { code: codeForHttp(status), details };
}

function codeForHttp(status: number): GrpcStatus {
  switch (status) {
    case 400:
    case 413:
    case 414:
    case 415:
      return GrpcStatus.INVALID_ARGUMENT;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.NOT_FOUND;
    case 499:
      return GrpcStatus.CANCELLED;
    case 501:
      return GrpcStatus.UNIMPLEMENTED;
    case 503:
      return GrpcStatus.UNAVAILABLE;
    case 504:
      return GrpcStatus.DEADLINE_EXCEEDED;
    default:
      return status >= 400 && status < 500 ? GrpcStatus.FAILED_PRECONDITION : GrpcStatus.INTERNAL;
  }
}

/** The error a unary handler's callback takes. */
export function toServiceError(error: unknown): Partial<ServiceError> {
  const { code, details } = grpcStatusFor(error);
  return { code, details, message: details };
}
