import type { IncomingMessage, ServerResponse } from 'node:http';
import { mkdirSync, symlinkSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, expect, test, vi } from 'vitest';
import { ensureMlpModel, type RunningServer, startServer } from '@batched-fn/server';
import { TEST_CACHE } from './helpers.js';
import { scratchDir } from './scratch.js';

// Attacks on the dashboard's feed: a page that never reads, and one that asked to close.
let server: RunningServer | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await server?.close();
  server = undefined;
});

async function tinyServer(): Promise<RunningServer> {
  const dir = scratchDir('bfn-dash-hard-');
  mkdirSync(join(dir, 'tiny'));
  symlinkSync(
    ensureMlpModel({ inputs: 256, hidden: [], classes: 16, seed: 1 }, TEST_CACHE),
    join(dir, 'tiny', 'model.onnx'),
  );
  return startServer({ modelRepository: dir, port: 0, threads: 1 });
}

/** The server's side of the next request to `path`: its response, whose writableLength is what the process buffers for it. */
function serverSide(running: RunningServer, path: string): Promise<ServerResponse> {
  return new Promise((resolve) => {
    const onRequest = (req: IncomingMessage, res: ServerResponse) => {
      if (req.url !== path) return;
      running.app.server.off('request', onRequest);
      resolve(res);
    };
    running.app.server.on('request', onRequest);
  });
}

/** A raw client that sends one GET, reads the first bytes, then never reads again. */
async function stalledFeed(url: string): Promise<{ socket: Socket; closed: () => boolean }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  let closed = false;
  socket.on('close', () => {
    closed = true;
  });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(`GET /dashboard/feed HTTP/1.1\r\nHost: ${hostname}:${port}\r\n\r\n`);
  await new Promise<void>((resolve) => socket.once('data', () => resolve()));
  socket.pause();
  return { socket, closed: () => closed };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

test('a feed that never reads: frames are dropped while its socket is full, the process buffers at most about one frame for it, and it is cut after 30 missed frames', async () => {
  server = await tinyServer();
  // The feed's ticks are driven by hand: thousands of seconds of snapshots in a few.
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  const response = serverSide(server, '/dashboard/feed');
  const client = await stalledFeed(server.url);
  const res = await response;
  let most = 0;
  let ticks = 0;
  let cutAt = -1;
  let firstBlocked = -1;
  // The kernel takes the first few MB (a paused loopback reader here held about 4 MB); only then
  // does the process itself start to hold bytes. 4,000 one-second ticks is enough to get there.
  for (; ticks < 4000 && cutAt < 0; ticks++) {
    vi.advanceTimersByTime(1000);
    most = Math.max(most, res.writableLength);
    if (res.destroyed) cutAt = ticks;
    // A loop turn per tick, as a real second has: a chunked write is corked until the next tick.
    await turn();
    if (firstBlocked < 0 && res.writableLength > 0) firstBlocked = ticks;
  }
  console.log(
    `stalled feed: blocked from tick ${firstBlocked}, ${cutAt < 0 ? 'not cut' : 'cut'} after ${ticks} ticks; the process held at most ${most} bytes for it (${res.writableLength} at the end)`,
  );
  // Before: never cut, and it held every frame the kernel would not take (MBs after 4,000 ticks).
  expect(cutAt).toBeGreaterThan(0);
  expect(cutAt - firstBlocked).toBeLessThanOrEqual(31);
  expect(most).toBeLessThan(64 * 1024);
  // The server closed its end: once the client reads again, it finds the end of the stream.
  vi.useRealTimers();
  client.socket.resume();
  for (let i = 0; i < 200 && !client.closed(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(client.closed()).toBe(true);
  // Its slot is free: a new page gets in.
  const again = await fetch(`${server.url}/dashboard/feed`);
  expect(again.status).toBe(200);
  await again.body?.cancel();
}, 60_000);

test('a feed that reads keeps getting every frame: nothing is dropped while its socket drains', async () => {
  server = await tinyServer();
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  const { hostname, port } = new URL(server.url);
  const socket = connect(Number(port), hostname);
  let text = '';
  socket.on('data', (chunk) => {
    text += chunk.toString('utf8');
  });
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(`GET /dashboard/feed HTTP/1.1\r\nHost: ${hostname}:${port}\r\n\r\n`);
  while (!text.includes('retry: 2000')) await turn();
  for (let i = 0; i < 40; i++) {
    vi.advanceTimersByTime(1000);
    // A reader that keeps up: each frame has left the process before the next tick.
    for (let j = 0; j < 20 && (text.match(/\ndata: /g)?.length ?? 0) < i + 1; j++)
      await new Promise((resolve) => setTimeout(resolve, 5));
  }
  expect(text.match(/\ndata: /g)?.length).toBe(40);
  socket.destroy();
}, 60_000);

test('a feed requested with Connection: close is answered with Connection: close', async () => {
  server = await tinyServer();
  const { hostname, port } = new URL(server.url);
  const socket = connect(Number(port), hostname);
  let head = '';
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(`GET /dashboard/feed HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\n\r\n`);
  await new Promise<void>((resolve) =>
    socket.on('data', (chunk) => {
      head += chunk.toString('utf8');
      if (head.includes('\r\n\r\n')) resolve();
    }),
  );
  socket.destroy();
  // Before: `Connection: keep-alive`, whatever the client asked.
  expect(head.toLowerCase()).toContain('\r\nconnection: close\r\n');
  expect(head.toLowerCase()).not.toContain('keep-alive');
});
