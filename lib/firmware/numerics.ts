/**
 * The firmware core's head step as a HeadRunner, through its pipe build (firmware/test/head_serve.cpp):
 * teacher forcing through the bit-exact build (head-serve) or the float32-accumulation build
 * (head-serve-f32acc, what the ESP32-S3's FPU does); bench/firmware-numerics.ts and
 * test/firmware-numerics.test.ts compare them.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { Checkpoint } from '../llm/checkpoint';
import { Geometry, geometry } from '../llm/config';
import { HeadRunner, forward } from '../llm/engine';
import { Gateway } from '../llm/gateway';
import { Encoding } from '../llm/quant';
import { firmwareBinary } from './build';

/** The two numerics of the head step: double accumulation (bit-identical to the TypeScript) and float32. */
export type Accumulation = 'exact' | 'f32';

/** Every head of the model in one head-serve process, driven one step at a time. */
export class PipeHeads implements HeadRunner {
  private readonly child: ChildProcess;
  private pending: Buffer = Buffer.alloc(0);
  private want = 0;
  private resolve: ((b: Buffer) => void) | null = null;

  constructor(binary: string, model: string, private readonly g: Geometry, weights: Encoding) {
    const heads = Array.from({ length: g.nHeads }, (_, i) => i).join(',');
    this.child = spawn(binary, [model, heads, weights], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.stdout?.on('data', (d: Buffer) => {
      this.pending = Buffer.concat([this.pending, d]);
      if (this.resolve && this.pending.length >= this.want) {
        const r = this.resolve;
        this.resolve = null;
        const out = this.pending.subarray(0, this.want);
        this.pending = this.pending.subarray(this.want);
        r(Buffer.from(out));
      }
    });
  }

  async run(xb: Float32Array, pos: number, layer: number, out: Float32Array): Promise<void> {
    const rec = Buffer.alloc(12 + 4 * xb.length);
    rec.writeInt32LE(1, 0);
    rec.writeInt32LE(pos, 4);
    rec.writeInt32LE(layer, 8);
    Buffer.from(xb.buffer, xb.byteOffset, xb.byteLength).copy(rec, 12);
    this.want = 4 * this.g.dim;
    const got = new Promise<Buffer>((r) => (this.resolve = r));
    this.child.stdin?.write(rec);
    const b = await got;
    out.set(new Float32Array(b.buffer, b.byteOffset, this.g.dim));
  }

  reset(): void {
    const rec = Buffer.alloc(4);
    rec.writeInt32LE(3, 0);
    this.child.stdin?.write(rec);
  }

  close(): void {
    this.child.stdin?.end();
  }
}

/** Logits at every position of `ids` fed in order, the heads computed by the firmware build of that accumulation. */
export async function teacherForceNative(model: string, accumulation: Accumulation, weights: Encoding, ids: readonly number[]): Promise<Float32Array[]> {
  const ckpt = Checkpoint.open(model);
  const g = geometry(ckpt.info.config);
  const gateway = Gateway.load(ckpt);
  ckpt.close();
  const heads = new PipeHeads(firmwareBinary(accumulation === 'f32' ? 'head-serve-f32acc' : 'head-serve'), model, g, weights);
  const headOut = new Float32Array(g.dim);
  const out: Float32Array[] = [];
  heads.reset();
  for (let pos = 0; pos < ids.length; pos++) out.push(((await forward(gateway, heads, ids[pos], pos, headOut)) as Float32Array).slice());
  heads.close();
  return out;
}

