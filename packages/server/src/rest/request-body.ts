import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { createGunzip, createInflate, createInflateRaw, type Gunzip, type Inflate, type InflateRaw } from 'node:zlib';
import { invalidArgument, ProtocolError } from '../protocol/errors.js';
import { clip } from '../protocol/status.js';
import { BODY_TYPES, closingWith, RestRefusal, unsupportedType } from './http-status.js';

/**
 * Reading a request body, for every POST route: its type, its Content-Encoding, and the body
 * limit, which bounds the body as the routes see it (inflated, for a compressed one).
 *
 * Why not fastify's own reader: it refuses a body over the limit and closes the connection
 * without reading the rest, so a client that writes its whole request before reading the answer
 * (tritonclient, Python's http.client, curl) gets a broken pipe instead of the 413. Here a
 * refused body (413, and the 415 and 403 that come before reading it) is read on and discarded
 * up to drainLimitFor(limit) bytes on the wire, so such a client reads the answer; past that
 * the connection is closed, since a client sending that much more than the limit is not owed
 * the bandwidth. Nothing refused is kept: at most `limit` bytes of body are ever held.
 */

const MIB = 1024 * 1024;

/** A limit as the flag says it: `64 MiB`, `1 KiB`, or a count of bytes. */
export function formatBytes(bytes: number): string {
  if (bytes >= MIB && bytes % MIB === 0) return `${bytes / MIB} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** How many wire bytes of a refused body are read and discarded before the connection is closed: twice the limit, and at least 1 MiB past it. */
export const drainLimitFor = (limit: number): number => limit + Math.max(limit, MIB);

export const tooLarge = (limit: number): ProtocolError =>
  new ProtocolError('too-large', `Request body is larger than the server's limit (--body-limit ${formatBytes(limit)})`);
const inflatesTooLarge = (limit: number, coding: string): ProtocolError =>
  new ProtocolError(
    'too-large',
    `Request body inflates (Content-Encoding: ${coding}) to more than the server's limit (--body-limit ${formatBytes(limit)}); stopped there`,
  );

type Coding = 'identity' | 'gzip' | 'deflate';

/** The request's Content-Encoding, or undefined for one this server does not read (a 415). */
export function contentCoding(header: string | string[] | undefined): Coding | undefined {
  const value = (Array.isArray(header) ? header.join(',') : (header ?? '')).trim().toLowerCase();
  if (value === '' || value === 'identity') return 'identity';
  if (value === 'gzip' || value === 'x-gzip') return 'gzip';
  if (value === 'deflate') return 'deflate';
  return undefined;
}

/** The media type of a Content-Type header, lower case, without parameters; undefined when there is none. */
export function mediaType(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  // The two types clients send, as they send them: no splitting and lower-casing for every request.
  if (header === 'application/json' || header === 'application/octet-stream') return header;
  return (header.split(';')[0] ?? '').trim().toLowerCase();
}

/** Whether the request says it has a body at all (fastify runs no parser for one that does not). */
function announcesBody(headers: IncomingHttpHeaders): boolean {
  return (
    headers['transfer-encoding'] !== undefined ||
    (headers['content-length'] !== undefined && headers['content-length'] !== '0')
  );
}

/**
 * Reads and discards what is left of a body, up to `drainTo` wire bytes in all; resolves true when
 * the body ended within that (the client has sent everything and will read the answer), false when
 * it did not (the answer should close the connection). Holds nothing.
 */
export function discardBody(stream: Readable, headers: IncomingHttpHeaders, drainTo: number): Promise<boolean> {
  if (stream.readableEnded || !announcesBody(headers)) return Promise.resolve(true);
  const declared = Number(headers['content-length']);
  if (declared > drainTo) return Promise.resolve(false);
  return new Promise((resolve) => {
    let read = 0;
    const finish = (ended: boolean): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onFail);
      stream.off('close', onFail);
      if (!ended) stream.pause();
      resolve(ended);
    };
    const onData = (chunk: Buffer): void => {
      read += chunk.length;
      if (read > drainTo) finish(false);
    };
    const onEnd = (): void => finish(true);
    const onFail = (): void => finish(false);
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onFail);
    stream.once('close', onFail);
    stream.resume();
  });
}

/**
 * Refuses a request the server will not read, after reading (and discarding) its body within the
 * drain bound: the error to answer, with `Connection: close` when the body did not end in time.
 */
export async function refuseAfterDrain(
  stream: Readable,
  headers: IncomingHttpHeaders,
  limit: number,
  error: ProtocolError,
): Promise<ProtocolError> {
  const ended = await discardBody(stream, headers, drainLimitFor(limit));
  return ended ? error : closingWith(error);
}

/** How readBody answers, once: the body, or the refusal. */
export type BodyDone = (body: Buffer | ProtocolError) => void;

/**
 * The body of a POST, as the routes read it: checked for its type (JSON, the binary extension, or
 * none), inflated when it says gzip or deflate, and held to `limit` bytes after inflating. Calls
 * `done` once: with the body, or with a ProtocolError (415, 413, 400) only once the body has been
 * drained within its bound. A callback, not a promise: every request reads a body, and a plain one
 * (most are) makes no closure for inflating, no promise and no `once` wrappers.
 */
export function readBody(stream: Readable, headers: IncomingHttpHeaders, limit: number, done: BodyDone): void {
  const type = mediaType(headers['content-type']);
  if (type !== undefined && !BODY_TYPES.includes(type)) {
    void refuseAfterDrain(
      stream,
      headers,
      limit,
      new ProtocolError('unsupported-media-type', unsupportedType(headers['content-type'])),
    ).then(done);
    return;
  }
  const coding = contentCoding(headers['content-encoding']);
  if (coding === undefined) {
    const error = new RestRefusal(
      'unsupported-media-type',
      `Content-Encoding must be gzip, deflate or identity, got ${clip(JSON.stringify(headers['content-encoding']))}`,
      { 'accept-encoding': 'gzip, deflate' },
    );
    void refuseAfterDrain(stream, headers, limit, error).then(done);
    return;
  }
  if (Number(headers['content-length']) > limit) {
    void refuseAfterDrain(stream, headers, limit, tooLarge(limit)).then(done);
    return;
  }
  const drainTo = drainLimitFor(limit);
  /** What the routes will see (inflated when coded), kept while under the limit. */
  let chunks: Buffer[] = [];
  let size = 0;
  let wire = 0;
  let refused: ProtocolError | undefined;
  let inflater: Gunzip | Inflate | InflateRaw | undefined;
  let streamEnded = false;
  let settled = false;

  const settle = (error: ProtocolError | undefined, close = false): void => {
    if (settled) return;
    settled = true;
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('error', onAbort);
    stream.off('close', onAbort);
    inflater?.destroy();
    if (error === undefined) {
      // Always a copy: a chunk can be a view of a 64 KiB socket read, which a queued request would keep alive.
      done(Buffer.concat(chunks, size));
      return;
    }
    chunks = [];
    if (close) stream.pause();
    done(close ? closingWith(error) : error);
  };
  /** From here on the body is only drained: the answer waits for its end (or the drain bound). */
  const refuse = (error: ProtocolError): void => {
    if (refused !== undefined) return;
    refused = error;
    chunks = [];
    size = 0;
    inflater?.destroy();
    inflater = undefined;
    if (stream.isPaused()) stream.resume();
    if (streamEnded) settle(error);
  };
  /** Compressed bodies only: built when the body says gzip or deflate, so a plain one pays for none of it. */
  let feed: ((chunk: Buffer) => void) | undefined;
  if (coding !== 'identity') {
    /** deflate: the first bytes, until there are two to tell a zlib stream (RFC 9110) from a raw one. */
    let head: Buffer | undefined;
    const startInflater = (first: Buffer): void => {
      // RFC 9110's deflate is the zlib format (what tritonclient sends); some clients send raw deflate.
      const zlibWrapped =
        coding === 'gzip' ||
        (((first[0] as number) & 0x0f) === 8 && (((first[0] as number) << 8) | (first[1] as number)) % 31 === 0);
      inflater = coding === 'gzip' ? createGunzip() : zlibWrapped ? createInflate() : createInflateRaw();
      inflater.on('data', (out: Buffer) => {
        if (refused !== undefined) return;
        size += out.length;
        // Stop inflating as soon as the limit is passed: a small bomb never grows past it.
        if (size > limit) refuse(inflatesTooLarge(limit, coding));
        else chunks.push(out);
      });
      inflater.once('error', (error: Error) =>
        refuse(invalidArgument(`Request body is not valid ${coding} (Content-Encoding): ${error.message}`)),
      );
      inflater.once('end', () => {
        if (refused === undefined) settle(undefined);
      });
    };
    feed = (chunk: Buffer): void => {
      if (inflater === undefined) {
        head = head === undefined ? chunk : Buffer.concat([head, chunk]);
        if (head.length < 2 && !streamEnded) return;
        chunk = head;
        head = undefined;
        startInflater(chunk);
      }
      const current = inflater as Gunzip;
      // Back pressure: the wire waits while zlib works, so unread compressed bytes do not pile up.
      if (!current.write(chunk)) {
        stream.pause();
        current.once('drain', () => {
          if (!settled) stream.resume();
        });
      }
    };
  }
  const onData = (chunk: Buffer): void => {
    wire += chunk.length;
    if (refused !== undefined) {
      if (wire > drainTo) settle(refused, true);
      return;
    }
    if (wire > limit) {
      refuse(tooLarge(limit));
      return;
    }
    if (feed === undefined) {
      chunks.push(chunk);
      size += chunk.length;
    } else feed(chunk);
  };
  const onEnd = (): void => {
    streamEnded = true;
    if (refused !== undefined) settle(refused);
    else if (feed === undefined) settle(undefined);
    else {
      // A body shorter than the two bytes that tell deflate's formats apart (or empty) starts it now.
      if (inflater === undefined) feed(Buffer.alloc(0));
      inflater?.end();
    }
  };
  const onAbort = (): void => {
    if (!streamEnded) settle(invalidArgument('The request body was cut short'), true);
  };
  // `on`, not `once`: settle takes all four off, and `once` wraps each in two more objects a request.
  stream.on('data', onData);
  stream.on('end', onEnd);
  stream.on('error', onAbort);
  stream.on('close', onAbort);
  stream.resume();
}
