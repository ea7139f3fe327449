import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';

/** The Open Inference Protocol's gRPC service, as shipped in this package (`proto/grpc_service.proto`). */
export const PROTO_PATH = fileURLToPath(new URL('../../proto/grpc_service.proto', import.meta.url));

/**
 * How messages map to JS objects, on the server and in our own client: field names as in the
 * proto (snake_case, as every KServe and Triton client spells them), 64-bit integers as numbers
 * (as JSON carries them in REST), empty fields present, and the name of a oneof's chosen field.
 */
export const PROTO_OPTIONS: Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  arrays: true,
};

/**
 * The server reads 64-bit integers as decimal strings: as numbers, `int64_contents` past 2^53 reached
 * the model rounded. Tensor contents become BigInts, everything else a number (see `int64Value`).
 */
const SERVER_PROTO_OPTIONS: Options = { ...PROTO_OPTIONS, longs: String };

/** A 64-bit integer field as the server reads it: a number where that is exact, else a BigInt. */
export function int64Value(value: string | number): number | bigint {
  const number = Number(value);
  return Number.isSafeInteger(number) ? number : BigInt(value);
}

interface InferencePackage {
  inference: { GRPCInferenceService: { service: ServiceDefinition } & (new (...args: never[]) => unknown) };
}

/** Loads the service definition (for a server) and the package (for a client constructor). */
export function loadInferenceService(): InferencePackage['inference']['GRPCInferenceService'] {
  const definition = loadSync(PROTO_PATH, SERVER_PROTO_OPTIONS);
  return (loadPackageDefinition(definition) as unknown as InferencePackage).inference.GRPCInferenceService;
}

/** `InferParameter` and `ModelRepositoryParameter`: a oneof of typed values. */
export interface GrpcParameter {
  parameter_choice?: string;
  bool_param?: boolean;
  /** Decimal strings as the server reads them (SERVER_PROTO_OPTIONS). */
  int64_param?: string;
  string_param?: string;
  double_param?: number;
  uint64_param?: string;
  bytes_param?: Buffer;
}

/** A parameters map as a plain object of its chosen values (what REST's JSON `parameters` is). */
export function plainParameters(map: Record<string, GrpcParameter> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, parameter] of Object.entries(map ?? {})) {
    const choice = parameter?.parameter_choice;
    if (choice === undefined) continue;
    const value = (parameter as Record<string, unknown>)[choice];
    out[key] = choice === 'int64_param' || choice === 'uint64_param' ? int64Value(value as string) : value;
  }
  return out;
}
