/**
 * Building ONNX models in memory (onnx.proto field numbers), for onnxruntime-node to run.
 * Only what mesh-llm's graphs need: float32, int8 and uint8 tensors, nodes with int/float/ints
 * attributes, in the default domain or onnxruntime's contrib domain (com.microsoft).
 */
import { ProtoWriter } from './protobuf';

const ONNX_FLOAT = 1;
const ONNX_UINT8 = 2;
const ONNX_INT8 = 3;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;
/** ONNX IR version 8 with opset 13: supported by every current onnxruntime. */
const IR_VERSION = 8;
const OPSET = 13;
/** onnxruntime's contrib operators (MatMulNBits), version 1. */
export const MS_DOMAIN = 'com.microsoft' as const;

export type Attribute = number | number[] | { float: number };

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, Attribute>;
  /** The operator's domain; absent: the ONNX default domain. */
  domain?: typeof MS_DOMAIN;
}

export interface OnnxTensor {
  name: string;
  dims: number[];
  data: Float32Array | Int8Array | Uint8Array;
}

export interface OnnxValue {
  name: string;
  /** Dimensions; a string is a symbolic dimension such as "batch". */
  dims: (number | string)[];
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValue[];
  outputs: OnnxValue[];
}

function writeAttribute(w: ProtoWriter, name: string, a: Attribute): void {
  w.string(1, name);
  if (Array.isArray(a)) {
    for (const v of a) w.int(8, v);
    w.int(20, ATTR_INTS);
  } else if (typeof a === 'number') {
    w.int(3, a);
    w.int(20, ATTR_INT);
  } else {
    w.float(2, a.float);
    w.int(20, ATTR_FLOAT);
  }
}

function writeValueInfo(w: ProtoWriter, v: OnnxValue): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, ONNX_FLOAT);
      tensor.message(2, (shape) => {
        for (const d of v.dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}

function writeTensor(w: ProtoWriter, t: OnnxTensor): void {
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.data instanceof Int8Array ? ONNX_INT8 : t.data instanceof Uint8Array ? ONNX_UINT8 : ONNX_FLOAT);
  w.string(8, t.name);
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}

/** Serialises a graph as an ONNX ModelProto. */
export function encodeModel(g: OnnxGraph): Uint8Array {
  const w = new ProtoWriter();
  w.int(1, IR_VERSION);
  w.string(2, 'mesh-llm');
  w.message(7, (graph) => {
    g.nodes.forEach((n, i) =>
      graph.message(1, (node) => {
        for (const x of n.inputs) node.string(1, x);
        for (const y of n.outputs) node.string(2, y);
        node.string(3, `${n.op.toLowerCase()}_${i}`);
        node.string(4, n.op);
        if (n.domain) node.string(7, n.domain);
        for (const [name, a] of Object.entries(n.attributes ?? {})) node.message(5, (attr) => writeAttribute(attr, name, a));
      }),
    );
    graph.string(2, g.name);
    for (const t of g.initializers) graph.message(5, (tensor) => writeTensor(tensor, t));
    for (const v of g.inputs) graph.message(11, (vi) => writeValueInfo(vi, v));
    for (const v of g.outputs) graph.message(12, (vi) => writeValueInfo(vi, v));
  });
  w.message(8, (opset) => {
    opset.string(1, '');
    opset.int(2, OPSET);
  });
  if (g.nodes.some((n) => n.domain === MS_DOMAIN))
    w.message(8, (opset) => {
      opset.string(1, MS_DOMAIN);
      opset.int(2, 1);
    });
  return w.finish();
}

/** W [rows, cols] row-major -> W^T [cols, rows], for MatMul(x [1, cols], W^T). */
export function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
  return t;
}
