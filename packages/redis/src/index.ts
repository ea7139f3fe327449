export type { RedisTarget } from './connection.js';
export {
  type RemoteBatchedFn,
  remoteBatchedFn,
  type RemoteBatchedFnOptions,
  type RemoteFrontendStats,
} from './frontend.js';
export { DEFAULT_PREFIX, streamKeys } from './keys.js';
export { RemoteWorker, type RemoteWorkerOptions, type RemoteWorkerStats, startRemoteWorker } from './worker.js';
