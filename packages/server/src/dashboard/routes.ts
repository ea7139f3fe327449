import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ServerMetrics } from '../metrics/metrics.js';
import type { ModelRegistry } from '../repository/registry.js';
import { DashboardCollector, type Snapshot, TICK_MS } from './collector.js';

/** Most pages watching at once: each open feed is a socket held for as long as the page is open. */
export const MAX_FEEDS = 32;
/**
 * Frames a feed may miss in a row (one a second) before it is cut. A frame is skipped while the
 * feed's earlier bytes are still in the process (its socket's buffer is not empty): the page
 * reads too slowly, or not at all, and every snapshot is whole, so only the newest one matters.
 * Without the skip, a page that never read kept about 3 KB a second in memory for as long as it
 * stayed open; without the cut, it would hold one of the MAX_FEEDS slots for ever.
 */
export const FEED_MAX_DROPPED = 30;

/** The page's files, shipped in the package's `dashboard/` folder and read once. */
const ASSETS: Record<string, { type: string; body: string }> = Object.fromEntries(
  [
    ['index.html', 'text/html; charset=utf-8'],
    ['app.js', 'text/javascript; charset=utf-8'],
    ['style.css', 'text/css; charset=utf-8'],
    ['favicon.svg', 'image/svg+xml'],
  ].map(([file, type]) => [
    file,
    { type: type as string, body: readFileSync(new URL(`../../dashboard/${file}`, import.meta.url), 'utf8') },
  ]),
);

/** Only the page's own files, no inline script, no framing, no outside connections. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export interface DashboardOptions {
  registry: ModelRegistry;
  metrics: ServerMetrics;
}

/**
 * The live dashboard: `GET /dashboard` (one page, no build step, nothing from a CDN) and
 * `GET /dashboard/feed`, a server-sent event stream with one snapshot a second while any page
 * watches. Read-only: only GET routes, on the server's own host and port.
 */
export async function dashboardPlugin(app: FastifyInstance, options: DashboardOptions): Promise<void> {
  const collector = new DashboardCollector(options.registry, options.metrics);
  /** Each open feed, and the frames it has missed in a row. */
  const feeds = new Map<FastifyReply, number>();
  let timer: NodeJS.Timeout | undefined;
  let last: Snapshot | undefined;

  const broadcast = (): void => {
    last = collector.snapshot();
    const event = `data: ${JSON.stringify(last)}\n\n`;
    for (const [reply, dropped] of feeds) {
      if (reply.raw.writableLength === 0) {
        feeds.set(reply, 0);
        reply.raw.write(event);
      } else if (dropped + 1 < FEED_MAX_DROPPED) feeds.set(reply, dropped + 1);
      else {
        // Its bytes have not moved for FEED_MAX_DROPPED ticks: free the socket and the slot.
        reply.raw.destroy();
        stopFeed(reply);
      }
    }
  };
  const stopFeed = (reply: FastifyReply): void => {
    feeds.delete(reply);
    if (feeds.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  const page = (file: string) => async (_request: unknown, reply: FastifyReply) => {
    const asset = ASSETS[file] as { type: string; body: string };
    return reply.headers({ ...SECURITY_HEADERS, 'content-type': asset.type }).send(asset.body);
  };
  app.get('/dashboard', page('index.html'));
  app.get('/dashboard/app.js', page('app.js'));
  app.get('/dashboard/style.css', page('style.css'));
  app.get('/dashboard/favicon.svg', page('favicon.svg'));
  // Browsers ask for /favicon.ico on their own: the same icon (an SVG; they read its type, not its name).
  app.get('/favicon.ico', page('favicon.svg'));

  app.get('/dashboard/feed', async (request, reply) => {
    if (feeds.size >= MAX_FEEDS)
      return reply
        .code(503)
        .header('retry-after', '5')
        .send({ error: `The dashboard already has ${MAX_FEEDS} pages watching` });
    reply.hijack();
    // No `connection` header: Node takes an explicit one over the request's own `Connection: close`.
    reply.raw.writeHead(200, { ...SECURITY_HEADERS, 'content-type': 'text/event-stream; charset=utf-8' });
    // The first numbers at once: the last snapshot if pages are already watching, else a fresh one.
    if (timer === undefined) collector.snapshot();
    reply.raw.write(
      `retry: 2000\n\n${last === undefined || timer === undefined ? '' : `data: ${JSON.stringify(last)}\n\n`}`,
    );
    feeds.set(reply, 0);
    timer ??= setInterval(broadcast, TICK_MS).unref();
    request.raw.once('close', () => stopFeed(reply));
  });

  // Open feeds never end by themselves: close them before the server waits for its connections.
  app.addHook('preClose', async () => {
    for (const reply of [...feeds.keys()]) {
      reply.raw.end();
      stopFeed(reply);
    }
    collector.stop();
  });
}
