/**
 * `mesh-llm provision`: an ESP32 head node's join record (lib/firmware/join-record.ts): its
 * mesh id, radio address, the mesh's network key and its part of the gateway MAC's plan, as a
 * binary image for the node's `join` data partition (docs/FIRMWARE.md, "Provisioning").
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError, choiceOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { Checkpoint } from '../../lib/llm/checkpoint';
import { geometry } from '../../lib/llm/config';
import { resolveModelPaths } from '../../lib/llm/resolve';
import { encodeJoinRecord } from '../../lib/firmware/join-record';
import { nodeJoinPlan } from '../../lib/radio/sim-socket';
import { SimulatedRadioMesh } from '../../gateway-bridge/radio-mesh';
import { parseRadioSettings, radioOptionSpec } from './radio-options';

export const usage = `mesh-llm provision --node K --key HEX --out FILE [--nodes N] [--mesh-id M] [--quant f32|int8]
                   [--region R] [--sf S] [--bw B] [--channels C] [--channel-plan P] [--model PATH] [--json]

  --node K           the node's radio address, 1..N (its shard is node-K.shard of mesh-llm shard --nodes N)
  --key HEX          the mesh's network key: 32 hexadecimal digits (16 bytes, AES-128-CMAC of every frame)
  --out FILE         the record, a binary image for the node's join partition (docs/FIRMWARE.md)
  --nodes N          radio head nodes in the mesh (default 4): the heads and slots are split as the gateway splits them
  --mesh-id M        the radio mesh id in every frame header, 0..255 (default 1)
  --quant Q          the mesh's weights and transport, f32 or int8 (default int8): the result encoding
  --region, --sf, --bw, --channels, --channel-plan   the radio settings of generate --radio (same defaults)
  --model PATH       llama2.c checkpoint whose geometry the mesh runs (default: stories260K.bin where the model files are)
  --json             print one JSON object (the record's fields and its plan)`;

const spec = {
  node: { type: 'string' },
  key: { type: 'string' },
  out: { type: 'string' },
  nodes: { type: 'string' },
  'mesh-id': { type: 'string' },
  quant: { type: 'string' },
  model: { type: 'string' },
  json: { type: 'boolean' },
  region: radioOptionSpec.region,
  sf: radioOptionSpec.sf,
  bw: radioOptionSpec.bw,
  channels: radioOptionSpec.channels,
  'channel-plan': radioOptionSpec['channel-plan'],
} as const;

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(argv, spec, 'provision');
  if (v.node === undefined) throw new UsageError('provision: --node K is required');
  if (v.key === undefined) throw new UsageError('provision: --key HEX is required (the mesh\'s 16-byte network key)');
  if (v.out === undefined) throw new UsageError('provision: --out FILE is required');
  if (!/^[0-9a-fA-F]{32}$/.test(v.key)) throw new UsageError('provision: --key: expected 32 hexadecimal digits (16 bytes)');
  const settings = parseRadioSettings({ region: v.region, sf: v.sf, bw: v.bw, channels: v.channels, 'channel-plan': v['channel-plan'], nodes: v.nodes });
  const node = intOption('node', v.node, 1, 1, 254);
  if (node > settings.nodes) throw new UsageError(`provision: --node ${node} is not one of the mesh's ${settings.nodes} nodes (--nodes)`);
  const meshId = intOption('mesh-id', v['mesh-id'], 1, 0, 255);
  const quant = choiceOption('quant', v.quant, 'int8', ['f32', 'int8'] as const);
  const { model } = resolveModelPaths({ model: v.model });
  const ckpt = Checkpoint.open(model);
  const g = geometry(ckpt.info.config);
  ckpt.close();
  // the gateway's plan for this mesh, computed as the bridge computes it (no weights loaded)
  const mesh = new SimulatedRadioMesh({ geometry: g, nodes: settings.nodes, quant, region: settings.region, sf: settings.sf, bandwidthKHz: settings.bandwidthKHz, channels: settings.channels, channelPlan: settings.channelPlan, loss: 0, nodesOnChannel: false });
  const info = mesh.infos.find((i) => i.address === node);
  const plan = nodeJoinPlan(mesh.layout, mesh.g, node, info?.heads);
  if (typeof plan === 'string') throw new UsageError(`provision: ${plan}`);
  const record = encodeJoinRecord({ meshId, key: Buffer.from(v.key, 'hex'), plan });
  fs.mkdirSync(path.dirname(path.resolve(v.out)), { recursive: true });
  fs.writeFileSync(v.out, record);
  if (v.json) printJson({ file: v.out, bytes: record.length, meshId, address: node, heads: plan.heads, plan });
  else process.stderr.write(`provision: node ${node}/${settings.nodes} heads [${plan.heads.join(', ')}], mesh id ${meshId}, ${settings.region}: ${record.length} bytes -> ${v.out}\n`);
  return 0;
}
