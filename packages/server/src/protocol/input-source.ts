import type { Datatype } from '../model/signature.js';

/**
 * What a transport hands the decoder for each input (protocol/decode.ts `decodeInputs`): REST's
 * JSON or binary body, gRPC's contents or raw bytes, or a shared-memory region.
 */

/**
 * What a protocol reads for one input once its shape is checked: raw bytes, or values (flat or
 * nested as the shape).
 */
export type InputPayload =
  | { bytes: Uint8Array }
  /**
   * `typed`: the values came from a field of their own datatype (gRPC's typed contents), so a NaN or an
   * infinity is what the client sent. JSON has no literal for either, and JSON.parse reads an out-of-range
   * number such as 1e400 as Infinity: that one is an overflow, not a value.
   */
  | { values: unknown; typed?: boolean }
  | { elements: readonly Uint8Array[] };

/** One input as a protocol received it, before any check. */
export interface InputSource {
  name: unknown;
  datatype: unknown;
  shape: unknown;
  /** Called once name, datatype and shape are checked, with the element count the shape needs. */
  read(count: number, name: string, datatype: Datatype): InputPayload;
}
