import { type ClientUnaryCall, credentials, loadPackageDefinition, Metadata, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { PROTO_OPTIONS, PROTO_PATH } from '@batched-fn/server';

/** A client generated at run time from the server's own .proto, as any KServe or Triton user would. */
export function grpcClient(url: string) {
  const pkg = loadPackageDefinition(loadSync(PROTO_PATH, PROTO_OPTIONS)) as any;
  const client = new pkg.inference.GRPCInferenceService(url.replace('grpc://', ''), credentials.createInsecure());
  /** Starts a call; `done` settles with its answer or its ServiceError. */
  const start = (
    method: string,
    request: object,
    deadlineMs?: number,
    metadata = new Metadata(),
  ): { call: ClientUnaryCall; done: Promise<any> } => {
    let call!: ClientUnaryCall;
    const done = new Promise<any>((resolve, reject) => {
      const options = deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs };
      call = client[method](request, metadata, options, (error: ServiceError | null, response: unknown) =>
        error === null ? resolve(response) : reject(error),
      );
    });
    done.catch(() => {});
    return { call, done };
  };
  return {
    start,
    call: (method: string, request: object = {}, deadlineMs?: number): Promise<any> =>
      start(method, request, deadlineMs).done,
    /** The error a call ends with: its gRPC code and details. */
    fails: async (
      method: string,
      request: object = {},
      deadlineMs?: number,
    ): Promise<{ code: number; details: string }> => {
      try {
        await start(method, request, deadlineMs).done;
      } catch (error) {
        const { code, details } = error as ServiceError;
        return { code, details };
      }
      throw new Error(`${method} succeeded`);
    },
    close: () => client.close(),
    /** The generated client itself. */
    raw: client,
  };
}

/** Raw little-endian bytes of a typed array, as raw_input_contents carries them. */
export const rawOf = (array: ArrayBufferView): Buffer => Buffer.from(array.buffer, array.byteOffset, array.byteLength);

/** A raw_output_contents entry as a Float32Array (copied: the Buffer's offset need not be aligned). */
export const floatsOf = (buffer: Buffer): Float32Array => new Float32Array(Uint8Array.from(buffer).buffer);
