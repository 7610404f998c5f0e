import { main } from '../cli/mesh-llm';
import { parsePlan, planFromOptions } from '../cli/commands/plan';
import { UsageError } from '../cli/args';
import { timeOnAirMs } from '../lib/radio/airtime';
import { MODEL_PRESETS } from '../lib/radio/presets';
import { PlanOptions, plan, weightStorageBytes } from '../lib/radio/planner';
import { modelPaths } from './support/fixtures';

const tinyllama = (o: Partial<PlanOptions> = {}): PlanOptions => ({
  model: MODEL_PRESETS.tinyllama, modelName: 'tinyllama', nodes: 16, quant: 'int8', region: 'US915', sf: 7, bandwidthKHz: 125, channels: 1, ...o,
});
const sf7 = (bytes: number) => timeOnAirMs(bytes, { sf: 7, bandwidthKHz: 125 });

describe('planner: TinyLlama on 16 nodes x 2 heads, int8, SF7/BW125', () => {
  // A broadcast body is 24 + 64 x 4 scales + 2048 int8 = 2328 bytes: 11 frames at 214 body bytes a
  // frame, as even as can be: 10 of 212 + 16 bytes and one of 208 + 16. A result of 2 heads is
  // 24 + 4 x 4 + 128 = 168 bytes: one 184-byte frame.
  const broadcastMs = 10 * sf7(228) + sf7(224);
  const resultMs = sf7(184);

  test('frames per layer and airtime per token come from the frame encoder and the time-on-air formula', () => {
    const p = plan(tinyllama());
    expect(p.framesPerLayer).toEqual({ broadcast: 11, results: 16, resultsPerNode: Array(16).fill(1) });
    expect(p.bytesPerLayer).toEqual({ broadcast: 10 * 228 + 224, results: 16 * 184 });
    expect(p.airtimePerTokenSeconds).toBeCloseTo((22 * (broadcastMs + 16 * resultMs)) / 1000, 9);
    // US915 has no duty cycle: with one channel the token takes exactly its airtime and, per layer, the nodes' 20 ms of compute.
    expect(p.wallPerTokenSeconds).toBeCloseTo(p.airtimePerTokenSeconds + (22 * 20) / 1000, 6);
    expect(p.radio).toMatchObject({ region: 'US915', dataRate: 3, maxFrameBytes: 230, maxDwellMs: 400 });
  });

  test('8 receive channels take the 16 replies in two rounds', () => {
    const p = plan(tinyllama({ channels: 8 }));
    expect(p.wallPerTokenSeconds).toBeCloseTo((22 * (broadcastMs + 20 + 2 * resultMs)) / 1000, 6);
    expect(p.channelBoundPerTokenSeconds).toBeCloseTo(p.wallPerTokenSeconds, 6);
    expect(p.airtimePerTokenSeconds).toBeCloseTo(plan(tinyllama()).airtimePerTokenSeconds, 9);
  });

  test('EU868: the gateway\'s 10% in g3 sets the pace, near the seed\'s 13-15 minutes a token', () => {
    for (const channels of [1, 8] as const) {
      const p = plan(tinyllama({ region: 'EU868', channels }));
      expect(p.radio).toMatchObject({ broadcastSubBand: 'g3', broadcastDutyCycle: 0.1, uplinkDutyCycle: 0.01 });
      expect(p.transmitterBoundPerTokenSeconds).toBeCloseTo((22 * broadcastMs) / 0.1 / 1000, 6);
      expect(p.wallPerTokenSeconds).toBeGreaterThanOrEqual(p.transmitterBoundPerTokenSeconds - 1e-6);
      // At worst each layer adds its replies, one after another, to the broadcast's duty-cycle time.
      expect(p.wallPerTokenSeconds).toBeLessThanOrEqual(p.transmitterBoundPerTokenSeconds + (22 * 16 * resultMs) / 1000);
      expect(p.wallPerTokenSeconds / 60).toBeGreaterThan(13);
      expect(p.wallPerTokenSeconds / 60).toBeLessThan(16);
    }
  });

  test('no schedule beats its bounds: the channels and the busiest radio', () => {
    for (const region of ['EU868', 'US915'] as const) {
      for (const channels of [1, 8] as const) {
        for (const nodes of [1, 5, 16, 32]) {
          const p = plan(tinyllama({ region, channels, nodes }));
          expect(p.wallPerTokenSeconds).toBeGreaterThanOrEqual(Math.max(p.channelBoundPerTokenSeconds, p.transmitterBoundPerTokenSeconds) - 1e-6);
          expect(p.channelBoundPerTokenSeconds).toBeLessThanOrEqual(p.airtimePerTokenSeconds + (22 * 20) / 1000 + 1e-9); // every frame in turn, and the nodes' compute per layer
        }
      }
    }
  });

  test('memory per node: weight slices in flash, KV cache in PSRAM, and a verdict per module', () => {
    const p = plan(tinyllama());
    // W_Q rows of 2 heads + W_K and W_V rows of their one kv head, 64 rows each, 22 layers, int8 rows of 2048 + 64 scales.
    expect(p.largestNode.weightBytes).toBe(22 * (2 + 2 * 1) * 64 * (2048 + 4 * 64));
    expect(p.largestNode.kvCacheBytes).toBe(22 * 1 * 512 * 64 * 2 * 4);
    expect(p.fits).toEqual({ N8R2: false, N8R8: false, N16R8: true });
    expect(p.variants.find((v) => v.module === 'N8R2')!.shortOf.join(' ')).toMatch(/flash.*PSRAM/);
    // int4 halves the values but not the scales: still more than the 6 MiB N8R2 leaves for weights.
    const int4 = plan(tinyllama({ quant: 'int4' }));
    expect(int4.largestNode.weightBytes).toBe(22 * 4 * 64 * (1024 + 4 * 64));
    expect(int4.fits.N8R2).toBe(false);
    expect(int4.fits.N16R8).toBe(true);
    // A longer context grows only the KV cache.
    expect(plan(tinyllama({ context: 2048 })).largestNode.kvCacheBytes).toBe(4 * p.largestNode.kvCacheBytes);
    expect(plan(tinyllama({ context: 2048 })).fits.N16R8).toBe(false);
  });

  test('uneven splits: every node is budgeted for the kv heads its query heads need', () => {
    const p = plan(tinyllama({ nodes: 3 }));
    expect(p.headsPerNode).toEqual([11, 11, 10]);
    expect(p.perNode.map((n) => n.kvHeads)).toEqual([[0, 1], [1, 2], [2, 3]]);
    expect(p.framesPerLayer.resultsPerNode).toEqual([4, 4, 4]);
    expect(p.largestNode.weightBytes).toBe(22 * (11 + 4) * 64 * weightStorageBytes(2048, 'int8'));
  });
});

describe('planner: stories260K', () => {
  test('--model reads the geometry from the checkpoint header', () => {
    const { options } = parsePlan(['--model', modelPaths.model, '--nodes', '8', '--region', 'EU868']);
    expect(options.model).toEqual(MODEL_PRESETS.stories260k);
    const p = planFromOptions(options);
    expect(p.framesPerLayer).toEqual({ broadcast: 1, results: 8, resultsPerNode: Array(8).fill(1) });
    expect(Object.values(p.fits)).toEqual([true, true, true]);
  });

  test('f32 transport and small frames need more fragments', () => {
    const stories = { model: MODEL_PRESETS.stories260k, modelName: 'stories260k', nodes: 2, quant: 'int8' as const, region: 'EU868' as const, bandwidthKHz: 125 as const, channels: 1 as const };
    // f32 broadcast: 24 + 256 bytes = 214 + 66 at SF7; 64-byte frames (48 body bytes) at SF12: 6 frames.
    expect(plan({ ...stories, sf: 7, transport: 'f32' }).framesPerLayer.broadcast).toBe(2);
    expect(plan({ ...stories, sf: 12, transport: 'f32' })).toMatchObject({ radio: { maxFrameBytes: 64 }, framesPerLayer: { broadcast: 6 } });
  });
});

describe('mesh-llm plan', () => {
  function capture(): { out: string[]; err: string[]; restore: () => void } {
    const out: string[] = [];
    const err: string[] = [];
    const o = jest.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
    const e = jest.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
    return { out, err, restore: () => (o.mockRestore(), e.mockRestore()) };
  }

  test('--json prints one object with the budget, the radio figures and a verdict per module', async () => {
    const io = capture();
    const code = await main(['plan', '--preset', 'tinyllama', '--nodes', '16', '--quant', 'int8', '--region', 'US915', '--sf', '7', '--bw', '125', '--channels', '1', '--json']);
    io.restore();
    expect(code).toBe(0);
    expect(io.out).toHaveLength(1);
    const p = JSON.parse(io.out[0]);
    expect(p.framesPerLayer).toMatchObject({ broadcast: 11, results: 16 });
    expect(p.airtimePerTokenSeconds).toBeGreaterThan(150);
    expect(p.wallPerTokenSeconds).toBeCloseTo(p.airtimePerTokenSeconds + (22 * 20) / 1000, 6); // and the nodes' compute
    expect(p.fits).toEqual({ N8R2: false, N8R8: false, N16R8: true });
  });

  test('the human-readable plan names each module\'s verdict', async () => {
    const io = capture();
    expect(await main(['plan', '--preset', 'stories260k', '--nodes', '4'])).toBe(0);
    io.restore();
    const text = io.out.join('');
    expect(text).toMatch(/^N8R2 .* fits$/m);
    expect(text).toMatch(/^N16R8 .* fits$/m);
    expect(text).toMatch(/wall time/);
  });

  test.each([
    [['--preset', 'tinyllama', '--nodes', '40'], /--nodes 40: expected a node count from 1 to the model's 32 heads/],
    [['--preset', 'tinyllama', '--nodes', '16', '--region', 'EU868', '--bw', '500'], /EU868 has no data rate SF7\/500/],
    [['--nodes', '4'], /exactly one of --model PATH and --preset NAME/],
    [['--preset', 'tinyllama'], /--nodes N is required/],
    [['--preset', 'gpt5', '--nodes', '4'], /--preset "gpt5": expected one of tinyllama, stories260k/],
    [['--preset', 'tinyllama', '--nodes', '16', '--quant', 'int3'], /--quant "int3"/],
    [['--preset', 'tinyllama', '--nodes', '16', '--channels', '4'], /--channels "4"/],
    [['--preset', 'tinyllama', '--nodes', '16', '--region', 'US915', '--sf', '10'], /291 frames of 24 bytes/],
  ])('bad options %j: one line, exit code 2', async (args, message) => {
    const io = capture();
    const code = await main(['plan', ...args]);
    io.restore();
    expect(code).toBe(2);
    expect(io.out).toEqual([]);
    expect(io.err[0]).toMatch(message);
    expect(io.err.join('')).not.toMatch(/\n\s+at /); // no stack trace
  });

  test('planner option errors surface as usage errors', () => {
    expect(() => planFromOptions(tinyllama({ context: 4096 }))).toThrow(UsageError);
  });
});
