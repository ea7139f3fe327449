import {
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceError,
  status as GrpcStatus,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { ProtocolError } from '../protocol/errors.js';
import {
  cudaError,
  disabledError,
  type SharedMemoryGrpcCode,
  SharedMemoryError,
  type SharedMemoryRegistry,
} from '../protocol/shared-memory.js';
import { RefusedRequest } from './guards.js';
import { int64Value } from './proto.js';
import { toServiceError } from './status.js';

/** Triton's gRPC code for each refusal whose code is not what its HTTP status maps to. */
const CODES: Record<SharedMemoryGrpcCode, GrpcStatus> = {
  UNIMPLEMENTED: GrpcStatus.UNIMPLEMENTED,
  ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  RESOURCE_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
};

function serviceError(error: unknown): Partial<ServiceError> {
  if (error instanceof SharedMemoryError && error.grpcCode !== undefined)
    return { code: CODES[error.grpcCode], details: error.message, message: error.message };
  return toServiceError(error);
}

/** A synchronous unary RPC: a request the wire guard refused, or whatever the handler throws, is the call's status. */
function unary<Req, Res>(handler: (request: Req) => Res) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    let response: Res;
    try {
      const request: unknown = call.request;
      if (request instanceof RefusedRequest) throw request.error;
      response = handler(call.request);
    } catch (error) {
      callback(serviceError(error));
      return;
    }
    callback(null, response);
  };
}

/** A uint64 field as the server reads it (a decimal string): a number where exact, else a BigInt the registry refuses. */
const uint64 = (value: string | number | undefined): number | bigint | undefined =>
  value === undefined ? undefined : int64Value(value);

/**
 * The shared-memory RPCs of Triton's GRPCInferenceService, over the registry REST uses
 * (protocol/shared-memory.ts): system shared memory for real; CUDA lists no region,
 * unregisters none, and answers a registration UNIMPLEMENTED.
 */
export function sharedMemoryHandlers(registry: SharedMemoryRegistry): UntypedServiceImplementation {
  return {
    SystemSharedMemoryStatus: unary((request: { name?: string }) => ({
      regions: Object.fromEntries(registry.status(request.name).map((region) => [region.name, region])),
    })),
    SystemSharedMemoryRegister: unary(
      (request: { name?: string; key?: string; offset?: string; byte_size?: string }) => {
        registry.register(request.name, request.key, uint64(request.offset), uint64(request.byte_size));
        return {};
      },
    ),
    SystemSharedMemoryUnregister: unary((request: { name?: string }) => {
      registry.unregister(request.name);
      return {};
    }),
    CudaSharedMemoryStatus: unary((request: { name?: string }) => {
      if (request.name !== undefined && request.name !== '')
        throw new ProtocolError(
          'not-found',
          `Unable to find cuda shared memory region: '${request.name.slice(0, 100)}'`,
        );
      return { regions: {} };
    }),
    CudaSharedMemoryRegister: unary(() => {
      throw registry.enabled ? cudaError() : disabledError();
    }),
    CudaSharedMemoryUnregister: unary(() => {
      if (!registry.enabled) throw disabledError();
      return {};
    }),
  };
}
