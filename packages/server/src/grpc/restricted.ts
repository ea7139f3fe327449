import { type Metadata, ServerInterceptingCall, type ServerInterceptor, status as GrpcStatus } from '@grpc/grpc-js';
import {
  GRPC_RESTRICTED,
  refusedBy,
  type RestrictedGroup,
  restrictedMessage,
  type Restrictions,
} from '../protocol/restricted.js';

/** Each RPC's group, as Triton files it (its grpc_server.cc; health.v1 goes with `health`). */
const GROUP_OF: Record<string, RestrictedGroup> = {
  '/inference.GRPCInferenceService/ServerLive': 'health',
  '/inference.GRPCInferenceService/ServerReady': 'health',
  '/inference.GRPCInferenceService/ModelReady': 'health',
  '/grpc.health.v1.Health/Check': 'health',
  '/grpc.health.v1.Health/Watch': 'health',
  '/grpc.health.v1.Health/List': 'health',
  '/inference.GRPCInferenceService/ServerMetadata': 'metadata',
  '/inference.GRPCInferenceService/ModelMetadata': 'metadata',
  '/inference.GRPCInferenceService/ModelInfer': 'inference',
  '/inference.GRPCInferenceService/ModelStreamInfer': 'inference',
  '/inference.GRPCInferenceService/ModelConfig': 'model-config',
  '/inference.GRPCInferenceService/ModelStatistics': 'statistics',
  '/inference.GRPCInferenceService/RepositoryIndex': 'model-repository',
  '/inference.GRPCInferenceService/RepositoryModelLoad': 'model-repository',
  '/inference.GRPCInferenceService/RepositoryModelUnload': 'model-repository',
  '/inference.GRPCInferenceService/SystemSharedMemoryStatus': 'shared-memory',
  '/inference.GRPCInferenceService/SystemSharedMemoryRegister': 'shared-memory',
  '/inference.GRPCInferenceService/SystemSharedMemoryUnregister': 'shared-memory',
  '/inference.GRPCInferenceService/CudaSharedMemoryStatus': 'shared-memory',
  '/inference.GRPCInferenceService/CudaSharedMemoryRegister': 'shared-memory',
  '/inference.GRPCInferenceService/CudaSharedMemoryUnregister': 'shared-memory',
  '/inference.GRPCInferenceService/TraceSetting': 'trace',
  '/inference.GRPCInferenceService/LogSettings': 'logging',
};

/** The group of an RPC by its path, for the restriction check (undefined: a method no group holds). */
export const restrictedGroupOf = (path: string): RestrictedGroup | undefined => GROUP_OF[path];

/**
 * `--grpc-restricted-protocol`: a call to a restricted group without the header and value it
 * requires is answered UNAVAILABLE "This protocol is restricted, expecting header '...'", as
 * Triton answers, once its metadata has arrived: the handler never runs, and a stream
 * (ModelStreamInfer, Watch) is refused before it starts.
 */
export function restrictedGuard(restrictions: Restrictions): ServerInterceptor {
  return (method, next) => {
    const group = restrictedGroupOf(method.path);
    if (group === undefined || !restrictions.has(group)) return new ServerInterceptingCall(next);
    const call: ServerInterceptingCall = new ServerInterceptingCall(next, {
      start: (startNext) => {
        startNext({
          onReceiveMetadata: (metadata: Metadata, metadataNext) => {
            const refused = refusedBy(restrictions, group, (name) => {
              const value = metadata.get(name)[0];
              return value === undefined ? undefined : String(value);
            });
            // Not passed on: the handler (and a stream's) never starts.
            if (refused !== undefined)
              call.sendStatus({ code: GrpcStatus.UNAVAILABLE, details: restrictedMessage(GRPC_RESTRICTED, refused) });
            else metadataNext(metadata);
          },
        });
      },
    });
    return call;
  };
}
