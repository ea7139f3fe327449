/**
 * KServe v2 datatypes we can carry, and the typed arrays that hold them. FP16 and BF16 are kept as
 * their 16-bit patterns (Uint16Array; model/half.ts converts them to and from numbers).
 */
export type NumericDatatype =
  | 'FP16'
  | 'BF16'
  | 'FP32'
  | 'FP64'
  | 'INT8'
  | 'INT16'
  | 'INT32'
  | 'INT64'
  | 'UINT8'
  | 'UINT16'
  | 'UINT32'
  | 'UINT64'
  | 'BOOL';
/** BYTES: variable-length byte strings (text), served to JS models; ONNX STRING tensors are not served. */
export type Datatype = NumericDatatype | 'BYTES';

/** Every datatype, for checking a name read from a model's declaration. */
export const DATATYPES: ReadonlySet<string> = new Set<Datatype>([
  ...(['FP16', 'BF16', 'FP32', 'FP64', 'INT8', 'INT16', 'INT32', 'INT64'] as const),
  ...(['UINT8', 'UINT16', 'UINT32', 'UINT64', 'BOOL', 'BYTES'] as const),
]);

/** Whether a string names a datatype we carry. */
export const isDatatype = (name: unknown): name is Datatype => typeof name === 'string' && DATATYPES.has(name);

export interface TensorSpec {
  name: string;
  datatype: Datatype;
  /** -1 for a dimension the model leaves open (the batch dimension, for one). */
  shape: number[];
}

export interface ModelSignature {
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}
