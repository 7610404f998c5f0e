/**
 * A minimal protocol-buffers writer: enough of the wire format (varints, length-delimited
 * fields, fixed32) to serialise an ONNX ModelProto. Fields are written in call order; the
 * bytes are joined once, by finish(), so a model's weights are copied once.
 */
export class ProtoWriter {
  private readonly chunks: Buffer[] = [];
  /** Bytes written so far (the sum of the chunks). */
  private length = 0;

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }

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
    this.push(Buffer.from(bytes));
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
    this.push(b);
    return this;
  }

  bytes(field: number, data: Uint8Array): this {
    this.tag(field, 2);
    this.varint(BigInt(data.length));
    this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, Buffer.from(s, 'utf8'));
  }

  /** A nested message: its chunks are taken over, not copied (a weight is copied once, by finish). */
  message(field: number, build: (w: ProtoWriter) => void): this {
    const inner = new ProtoWriter();
    build(inner);
    this.tag(field, 2);
    this.varint(BigInt(inner.length));
    for (const c of inner.chunks) this.push(c);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
