import { Redis, type RedisOptions } from 'ioredis';

/** A Redis URL (`redis://`, `rediss://` for TLS, with password), ioredis options, or an existing client to copy settings from. */
export type RedisTarget = string | RedisOptions | Redis;

/**
 * Opens a new connection. Commands must fail fast while Redis is down (no
 * offline queue), so a caller gets ERR_UNAVAILABLE instead of waiting for a
 * reconnect that may never come; ioredis keeps reconnecting in the background.
 */
export function connect(target: RedisTarget, name: string): Redis {
  const overrides: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectionName: name,
    lazyConnect: true,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 2000),
  };
  if (target instanceof Redis) return target.duplicate(overrides);
  if (typeof target === 'string') return new Redis(target, overrides);
  return new Redis({ ...target, ...overrides });
}

/** Resolves once the connection is ready, or rejects on the first error. */
export async function ready(client: Redis): Promise<void> {
  if (client.status === 'ready') return;
  if (client.status === 'wait') {
    await client.connect();
    return;
  }
  await new Promise<void>((resolve, reject) => {
    const onReady = (): void => {
      client.off('error', onError);
      resolve();
    };
    const onError = (error: Error): void => {
      client.off('ready', onReady);
      reject(error);
    };
    client.once('ready', onReady);
    client.once('error', onError);
  });
}

/** Creates the consumer group from the start of the stream (entries are deleted once answered). */
export async function ensureGroup(client: Redis, stream: string, group: string): Promise<void> {
  try {
    await client.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
  } catch (error) {
    if (!String((error as Error).message).includes('BUSYGROUP')) throw error;
  }
}
