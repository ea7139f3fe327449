import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  constants,
  type IncomingHttpHeaders,
} from 'node:http2';

// gRPC calls over a raw HTTP/2 connection, as an attacker (or a client outside grpc-js) makes them:
// for the tests that send bytes no client library would.

/** A connection to `grpcUrl` (`grpc://HOST:PORT`), kept in `sessions` for the caller's afterEach to destroy. */
export async function rawSession(grpcUrl: string, sessions: ClientHttp2Session[]): Promise<ClientHttp2Session> {
  const session = connect(`http://${grpcUrl.replace('grpc://', '')}`);
  session.on('error', () => {});
  sessions.push(session);
  await new Promise((resolve) => session.once('remoteSettings', resolve));
  return session;
}

export interface RawAnswer {
  /** grpc-status and grpc-message of the answer, once it came (headers-only or trailers). */
  answer: Promise<{ code: number; details: string }>;
  /** Resolves when the stream is closed on both sides (released by the server). */
  closed: Promise<void>;
  /** Resets the stream with CANCEL, as a grpc-js client does when the caller cancels or its deadline passes. */
  cancel(): void;
}

/** A call's grpc-status and grpc-message, once they come: in a headers-only answer or in its trailers. */
export function grpcStatusOf(stream: ClientHttp2Stream): Promise<{ code: number; details: string }> {
  return new Promise((resolve) => {
    const read = (headers: IncomingHttpHeaders) => {
      if (headers['grpc-status'] !== undefined)
        resolve({
          code: Number(headers['grpc-status']),
          details: decodeURIComponent(String(headers['grpc-message'] ?? '')),
        });
    };
    stream.on('response', read);
    stream.on('trailers', read);
  });
}

/** Sends a call's headers and `body` (a framed message, or part of one), without ending the stream unless `end`. */
export function rawCall(
  session: ClientHttp2Session,
  method: string,
  body: Buffer,
  options: { end?: boolean; headers?: Record<string, string> } = {},
): RawAnswer {
  const stream = session.request({
    ':method': 'POST',
    ':path': `/inference.GRPCInferenceService/${method}`,
    'content-type': 'application/grpc',
    te: 'trailers',
    ...options.headers,
  });
  stream.on('error', () => {});
  stream.on('data', () => {});
  const answer = grpcStatusOf(stream);
  const closed = new Promise<void>((resolve) => stream.once('close', resolve));
  if (options.end === false) stream.write(body);
  else stream.end(body);
  return { answer, closed, cancel: () => stream.close(constants.NGHTTP2_CANCEL) };
}

/** A gRPC length-prefixed message. */
export const frame = (message: Buffer): Buffer =>
  Buffer.concat([Buffer.from([0, ...[24, 16, 8, 0].map((shift) => (message.length >>> shift) & 0xff)]), message]);
