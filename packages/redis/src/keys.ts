/** Where everything lives in Redis. One prefix per deployment keeps several apart on one server. */
export interface StreamKeys {
  /** Requests for one model; workers read it through the consumer group. */
  requests: string;
  /** The model's input/output signature, published by its workers for the HTTP frontends. */
  signature: string;
  /** Replies for one frontend. */
  reply: (frontendId: string) => string;
}

export const DEFAULT_PREFIX = 'bfn';
export const GROUP = 'workers';

export function streamKeys(prefix: string, model: string): StreamKeys {
  return {
    requests: `${prefix}:${model}:requests`,
    signature: `${prefix}:${model}:signature`,
    reply: (frontendId) => `${prefix}:reply:${frontendId}`,
  };
}

/** A frontend's reply key under `prefix`: `{prefix}:reply:{uuid}`. Nothing else is ever written to. */
export function replyKeyPattern(prefix: string): RegExp {
  const escaped = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${escaped}:reply:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`);
}
