/**
 * A minimal protocol-buffers writer: enough of the wire format (varints, length-delimited
 * fields, fixed32) to serialise an ONNX ModelProto. Fields are written in call order.
 */
export class ProtoWriter {
  private readonly chunks: Buffer[] = [];

  private tag(field: number, wireType: 0 | 2 | 5): void {
    this.varint(BigInt(field * 8 + wireType));
  }

  private varint(v: bigint): void {
    let n = BigInt.asUintN(64, v);
    const bytes: number[] = [];
    do {
      let b = Number(n & 0x7fn);
      n >>= 7n;
      if (n !== 0n) b |= 0x80;
      bytes.push(b);
    } while (n !== 0n);
    this.chunks.push(Buffer.from(bytes));
  }

  /** int32/int64/enum field. */
  int(field: number, v: number | bigint): this {
    this.tag(field, 0);
    this.varint(BigInt(v));
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.chunks.push(b);
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2);
    this.varint(BigInt(data.length));
    this.chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, Buffer.from(s, 'utf8'));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
