export { type RedisTarget } from './connection.js';
export { remoteBatchedFn, type RemoteBatchedFnOptions } from './frontend.js';
export { DEFAULT_PREFIX, streamKeys } from './keys.js';
export { RemoteWorker, type RemoteWorkerOptions, type RemoteWorkerStats, startRemoteWorker } from './worker.js';
