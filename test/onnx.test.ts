import { Checkpoint } from '../lib/llm/checkpoint';
import { geometry } from '../lib/llm/config';
import { Gateway, loadGatewayWeights } from '../lib/llm/gateway';
import { OnnxFfn } from '../lib/onnx/ffn';
import { ProtoWriter } from '../lib/onnx/protobuf';
import { modelPaths } from './support/fixtures';

describe('FFN as an ONNX graph on onnxruntime-node', () => {
  test('matches the gateway FFN of every layer of the real model', async () => {
    const ckpt = Checkpoint.open(modelPaths.model);
    const g = geometry(ckpt.info.config);
    const w = loadGatewayWeights(ckpt);
    ckpt.close();
    const gateway = new Gateway(g, w);
    const ffn = await OnnxFfn.create(w, g.dim, g.hiddenDim);
    for (let layer = 0; layer < g.nLayers; layer++) {
      const x = Float32Array.from({ length: g.dim }, (_, i) => Math.sin(0.37 * i + layer) * 2);
      const expected = x.slice();
      gateway.ffn(expected, layer);
      const got = x.slice();
      await ffn.apply(got, layer);
      expect(got).not.toEqual(x);
      got.forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThan(1e-5));
    }
    await ffn.release();
  });

  test('protobuf varints and nested messages encode as the wire format says', () => {
    expect([...new ProtoWriter().int(1, 300).finish()]).toEqual([0x08, 0xac, 0x02]);
    expect([...new ProtoWriter().int(2, -1).finish()]).toEqual([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    expect([...new ProtoWriter().message(3, (m) => m.string(1, 'hi')).finish()]).toEqual([0x1a, 0x04, 0x0a, 0x02, 0x68, 0x69]);
  });
});
