import { ProtoWriter } from './protobuf.js';

/** ONNX TensorProto.DataType codes. */
export const ONNX_FLOAT = 1;
export const ONNX_INT32 = 6;
export const ONNX_INT64 = 7;
export const ONNX_FLOAT16 = 10;
export const ONNX_BFLOAT16 = 16;

/** Field numbers from onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto...). */
const MODEL = { irVersion: 1, producerName: 2, graph: 7, opsetImport: 8 } as const;
const OPSET = { domain: 1, version: 2 } as const;
const GRAPH = { node: 1, name: 2, initializer: 5, input: 11, output: 12 } as const;
const NODE = { input: 1, output: 2, name: 3, opType: 4, attribute: 5 } as const;
const ATTRIBUTE = { name: 1, i: 3, type: 20 } as const;
const ATTRIBUTE_INT = 2;
const TENSOR = { dims: 1, dataType: 2, name: 8, rawData: 9 } as const;
const VALUE_INFO = { name: 1, type: 2 } as const;
const TYPE = { tensorType: 1 } as const;
const TENSOR_TYPE = { elemType: 1, shape: 2 } as const;
const SHAPE = { dim: 1 } as const;
const DIM = { value: 1, param: 2 } as const;

export interface OnnxNode {
  opType: string;
  inputs: string[];
  outputs: string[];
  name: string;
  /** Integer attributes, such as Cast's `to`. */
  attributes?: Record<string, number>;
}

export interface OnnxInitializer {
  name: string;
  dims: number[];
  data: Float32Array;
}

export interface OnnxValueInfo {
  name: string;
  /** ONNX element type; FLOAT when left out. */
  elemType?: number;
  /** A string is a symbolic dimension, such as the batch dimension. */
  shape: (number | string)[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxInitializer[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  opset: number;
}

function valueInfo(w: ProtoWriter, info: OnnxValueInfo): void {
  w.string(VALUE_INFO.name, info.name);
  w.message(VALUE_INFO.type, (type) =>
    type.message(TYPE.tensorType, (tensor) => {
      tensor.int(TENSOR_TYPE.elemType, info.elemType ?? ONNX_FLOAT);
      tensor.message(TENSOR_TYPE.shape, (shape) => {
        for (const dim of info.shape) {
          shape.message(SHAPE.dim, (d) => (typeof dim === 'string' ? d.string(DIM.param, dim) : d.int(DIM.value, dim)));
        }
      });
    }),
  );
}

/** Encodes a float32 graph as an ONNX ModelProto. Weights go in `raw_data`, little-endian. */
export function encodeModel(graph: OnnxGraph): Uint8Array {
  const model = new ProtoWriter();
  model.int(MODEL.irVersion, 8);
  model.string(MODEL.producerName, 'batched-fn');
  model.message(MODEL.opsetImport, (opset) => opset.string(OPSET.domain, '').int(OPSET.version, graph.opset));
  model.message(MODEL.graph, (g) => {
    for (const node of graph.nodes) {
      g.message(GRAPH.node, (n) => {
        for (const input of node.inputs) n.string(NODE.input, input);
        for (const output of node.outputs) n.string(NODE.output, output);
        n.string(NODE.name, node.name);
        n.string(NODE.opType, node.opType);
        for (const [name, value] of Object.entries(node.attributes ?? {})) {
          n.message(NODE.attribute, (a) =>
            a.string(ATTRIBUTE.name, name).int(ATTRIBUTE.i, value).int(ATTRIBUTE.type, ATTRIBUTE_INT),
          );
        }
      });
    }
    g.string(GRAPH.name, graph.name);
    for (const init of graph.initializers) {
      g.message(GRAPH.initializer, (t) => {
        for (const dim of init.dims) t.int(TENSOR.dims, dim);
        t.int(TENSOR.dataType, ONNX_FLOAT);
        t.string(TENSOR.name, init.name);
        // Float32Array is little-endian on every platform Node runs on; x86 and ARM alike.
        t.bytes(TENSOR.rawData, new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength));
      });
    }
    for (const input of graph.inputs) g.message(GRAPH.input, (v) => valueInfo(v, input));
    for (const output of graph.outputs) g.message(GRAPH.output, (v) => valueInfo(v, output));
  });
  return model.finish();
}
