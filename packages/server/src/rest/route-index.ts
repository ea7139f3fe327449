import type { FastifyInstance } from 'fastify';

/**
 * The routes an app has, recorded as they are added (fastify's `onRoute`), so that a request no
 * route takes can be answered with what would have taken it: the methods of its path (a 405 with
 * `Allow`), or a model's routes (a 404 that names them).
 */
export class RouteIndex {
  readonly #routes: { pattern: string; match: RegExp; methods: Set<string> }[] = [];

  /** Records every route `app` (and the plugins registered on it later) adds. Call it before adding any. */
  static of(app: FastifyInstance): RouteIndex {
    const index = new RouteIndex();
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      index.add(route.url, methods);
    });
    return index;
  }

  add(pattern: string, methods: readonly string[]): void {
    let route = this.#routes.find((r) => r.pattern === pattern);
    if (route === undefined) {
      // `:param` is one path segment, `*` the rest of the path.
      const source = pattern
        .split('/')
        .map((part) =>
          part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
        )
        .join('/');
      route = { pattern, match: new RegExp(`^${source}$`), methods: new Set() };
      this.#routes.push(route);
    }
    for (const method of methods) route.methods.add(method.toUpperCase());
  }

  /**
   * The methods some route takes on `path`, sorted; empty when none does. Catch-all routes (the
   * CORS preflight's `OPTIONS /v2/*`) count only for a path some other route takes.
   */
  methodsFor(path: string): string[] {
    const matching = this.#routes.filter((r) => r.match.test(path));
    const exact = matching.filter((r) => !r.pattern.endsWith('*'));
    if (exact.length === 0) return [];
    const methods = new Set(matching.flatMap((r) => [...r.methods]));
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods].sort();
  }

  /** The patterns under `prefix` (`/v2/models/:name/`) and their methods: `POST /v2/models/:name/infer`. */
  routesUnder(prefix: string): string[] {
    return this.#routes
      .filter((r) => r.pattern.startsWith(prefix) && !r.pattern.endsWith('*'))
      .flatMap((r) => [...r.methods].filter((m) => m !== 'HEAD').map((m) => `${m} ${r.pattern}`));
  }
}
