import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ProtocolError } from '../protocol/errors.js';
import { refuseAfterDrain } from './request-body.js';
import {
  HTTP_RESTRICTED,
  refusedBy,
  type RestrictedGroup,
  restrictedMessage,
  type Restrictions,
} from '../protocol/restricted.js';
import { clip } from '../protocol/status.js';

/**
 * What every REST request passes before its route runs, decided once for every route of the
 * protocol (today's and later ones), not per route:
 *
 * - Cross-site requests. A browser lets any page POST to any server, localhost included, and a
 *   body without a Content-Type (what tritonclient sends, so now accepted) or with a JSON one can
 *   be sent by a page too. What a browser cannot hide is where the request comes from: it sends
 *   `Origin` on every cross-origin POST and `Sec-Fetch-Site` on every request. So a request that
 *   changes something (any method but GET, HEAD and OPTIONS) is refused (403) when its Origin is
 *   not the server's own (compared with the Host it was sent to) or it says `Sec-Fetch-Site:
 *   cross-site`, unless its origin was let in with `--cors ORIGIN`. Clients that are not browsers
 *   send neither header and are not affected.
 * - CORS for the origins let in: their answers carry Access-Control-Allow-Origin, and their
 *   preflights (OPTIONS) are answered.
 * - `--http-restricted-api`: Triton's protocol groups served only to requests carrying a header
 *   and value (restricted.ts), refused as Triton refuses them: 403 "This API is restricted,
 *   expecting header '<key>'".
 */

/** Checks `--cors` origins: each a serialized origin (`https://app.example.com`, `http://localhost:3000`). */
export function parseCorsOrigins(values: string | readonly string[] | undefined): ReadonlySet<string> {
  const origins = new Set<string>();
  for (const value of values === undefined ? [] : typeof values === 'string' ? [values] : values) {
    if (typeof value !== 'string') throw new TypeError(`Expected \`cors\` origins to be strings, got ${typeof value}`);
    let url: URL | undefined;
    try {
      url = /^https?:\/\/[^/?#@\s]+\/?$/i.test(value) ? new URL(value) : undefined;
    } catch {
      url = undefined;
    }
    if (url === undefined)
      throw new RangeError(
        `Expected \`cors\` origins like https://app.example.com (http or https, a host and an optional port, no path), got ${JSON.stringify(value)}`,
      );
    // Stored as a browser serializes it (lower case, no default port), which is what its Origin header says.
    origins.add(url.origin);
  }
  return origins;
}

/** Triton's REST paths (its http_server.cc regexes) → their group; a route pattern (`:name`) matches as a name does. */
const MODEL = '/v2/models/[^/]+(?:/versions/[^/]+)?';
const GROUPS: readonly (readonly [RegExp, RestrictedGroup])[] = [
  [/^\/v2$/, 'metadata'],
  [/^\/v2\/health\/(?:live|ready)$/, 'health'],
  // Before the model routes: Triton matches these paths first, or `stats` would read as a model's name.
  [/^\/v2\/models\/stats$/, 'statistics'],
  [/^\/v2\/logging$/, 'logging'],
  [/^\/v2\/trace\/setting$/, 'trace'],
  [/^\/v2\/(?:system|cuda)sharedmemory(?:\/region\/[^/]+)?\/(?:status|register|unregister)$/, 'shared-memory'],
  [/^\/v2\/repository(?:\/[^/]+)?\/(?:index|models\/[^/]+\/(?:load|unload))$/, 'model-repository'],
  [new RegExp(`^${MODEL}$`), 'metadata'],
  [new RegExp(`^${MODEL}/ready$`), 'health'],
  [new RegExp(`^${MODEL}/(?:infer|generate|generate_stream)$`), 'inference'],
  [new RegExp(`^${MODEL}/config$`), 'model-config'],
  [new RegExp(`^${MODEL}/stats$`), 'statistics'],
  [new RegExp(`^${MODEL}/trace/setting$`), 'trace'],
];

/** The restricted group a REST path (or route pattern) belongs to; undefined for paths outside the protocol (/metrics, /dashboard). */
export function restGroupOf(path: string): RestrictedGroup | undefined {
  for (const [pattern, group] of GROUPS) if (pattern.test(path)) return group;
  return undefined;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

const first = (value: string | string[] | undefined): string | undefined => (Array.isArray(value) ? value[0] : value);

/** Whether `origin` is the origin the request was sent to: its host and port are the Host header's (default ports as its scheme has them). */
function isOwnOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    const url = new URL(origin);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
    return new URL(`${url.protocol}//${host}`).host === url.host;
  } catch {
    return false;
  }
}

/** The 403 for a request a browser sent from another site, or undefined when it may be served. */
export function crossSiteRefusal(
  method: string,
  headers: FastifyRequest['headers'],
  allowed: ReadonlySet<string>,
): ProtocolError | undefined {
  if (SAFE_METHODS.has(method)) return undefined;
  const origin = first(headers.origin);
  if (origin !== undefined && allowed.has(origin)) return undefined;
  const hint = origin !== undefined && /^https?:\/\/[^/]+$/.test(origin) ? `--cors ${clip(origin)}` : '--cors ORIGIN';
  if (origin !== undefined && !isOwnOrigin(origin, first(headers.host))) {
    return new ProtocolError(
      'permission-denied',
      `Cross-origin request refused: Origin ${clip(JSON.stringify(origin))} is not this server's own; start the server with ${hint} to let that site call it`,
    );
  }
  if (first(headers['sec-fetch-site']) === 'cross-site') {
    return new ProtocolError(
      'permission-denied',
      `Cross-site request refused (Sec-Fetch-Site: cross-site); start the server with ${hint} to let that site call it`,
    );
  }
  return undefined;
}

const EXPOSED = 'Inference-Header-Content-Length, Retry-After';
/** Header names a preflight may ask for: a list of tokens, echoed back (only origins let in get that far). */
const HEADER_LIST = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/;

export interface RestGuardOptions {
  /** Origins let in (`--cors`): their requests pass the cross-site check and get CORS headers. */
  cors: ReadonlySet<string>;
  /** `--http-restricted-api`. */
  restrictions: Restrictions;
  /** The body limit, which also bounds how much of a refused body is drained (request-body.ts). */
  bodyLimit: number;
}

/** Registers the checks on every route of `app` (the protocol's plugin), and the preflight answers. */
export function registerRestGuards(app: FastifyInstance, options: RestGuardOptions): void {
  const { cors, restrictions, bodyLimit } = options;
  // A callback hook: the common case (nothing refused) answers at once, with no promise per request.
  app.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => {
    const origin = first(request.headers.origin);
    if (origin !== undefined && cors.has(origin)) {
      void reply.headers({
        'access-control-allow-origin': origin,
        'access-control-expose-headers': EXPOSED,
        vary: 'Origin',
      });
    }
    let refusal = crossSiteRefusal(request.method, request.headers, cors);
    if (refusal === undefined && restrictions.size > 0 && request.method !== 'OPTIONS') {
      const group = restGroupOf(request.routeOptions.url ?? '');
      const refused =
        group === undefined ? undefined : refusedBy(restrictions, group, (name) => first(request.headers[name]));
      if (refused !== undefined)
        refusal = new ProtocolError('permission-denied', restrictedMessage(HTTP_RESTRICTED, refused));
    }
    if (refusal === undefined) {
      done();
      return;
    }
    // Read (and discard) what the client is still sending, so it reads this answer (request-body.ts).
    void refuseAfterDrain(request.raw, request.headers, bodyLimit, refusal).then(done);
  });

  // CORS preflights for the protocol's paths: answered for the origins let in, refused for others.
  const preflight = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const origin = first(request.headers.origin);
    const method = first(request.headers['access-control-request-method']);
    if (origin === undefined || method === undefined) {
      await reply.code(404).send({ error: `No route for OPTIONS ${request.url.slice(0, 200)}` });
      return;
    }
    if (!cors.has(origin)) {
      throw new ProtocolError(
        'permission-denied',
        `Cross-origin request refused: Origin ${clip(JSON.stringify(origin))} is not let in; start the server with --cors ${clip(origin)} to let that site call it`,
      );
    }
    const asked = first(request.headers['access-control-request-headers']);
    await reply
      .code(204)
      .headers({
        'access-control-allow-origin': origin,
        'access-control-allow-methods': 'GET, HEAD, POST, OPTIONS',
        ...(asked !== undefined && HEADER_LIST.test(asked) ? { 'access-control-allow-headers': asked } : {}),
        'access-control-max-age': '600',
        vary: 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers',
      })
      .send();
  };
  app.options('/v2', preflight);
  app.options('/v2/*', preflight);
}
