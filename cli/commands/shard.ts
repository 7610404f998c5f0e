/**
 * `mesh-llm shard`: one weight shard per head node (lib/firmware/shard.ts), what a node holds
 * in flash instead of the checkpoint: the host's native radio node reads it from a file, an
 * ESP32-S3 from its `shard` data partition (docs/FIRMWARE.md).
 */
import { UsageError, choiceOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { resolveModelPaths } from '../../lib/llm/resolve';
import { writeShards } from '../../lib/firmware/shard';
import { WEIGHT_FORMATS } from '../../lib/llm/quant';

export const usage = `mesh-llm shard --nodes N [--quant f32|int8|int4|int2] --out DIR [--model PATH] [--json]

  --nodes N          head nodes: heads are split as mesh-llm plan and generate split them
  --quant Q          weight format in the shard (docs/QUANTISATION.md): int8 (default, groups of 32),
                     int4 (groups of 32, two codes a byte), int2 (affine groups of 128, at most the
                     row; four codes a byte) or f32
  --out DIR          where node-1.shard .. node-N.shard go
  --model PATH       llama2.c checkpoint (default: stories260K.bin where the model files are)
  --json             print one JSON object`;

const spec = {
  nodes: { type: 'string' },
  quant: { type: 'string' },
  out: { type: 'string' },
  model: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(argv, spec, 'shard');
  if (v.nodes === undefined) throw new UsageError('shard: --nodes N is required');
  if (v.out === undefined) throw new UsageError('shard: --out DIR is required');
  const nodes = intOption('nodes', v.nodes, 1, 1, 65535);
  const quant = choiceOption('quant', v.quant, 'int8', WEIGHT_FORMATS);
  const { model } = resolveModelPaths({ model: v.model });
  const shards = writeShards(model, nodes, quant, v.out, (s) => {
    if (!v.json) process.stderr.write(`shard: node ${s.node}/${nodes} heads [${s.heads.join(', ')}] kv [${s.kvHeads.join(', ')}]: ${s.bytes} bytes (${s.payloadBytes} of weights) -> ${s.file}\n`);
  });
  if (v.json) printJson({ model, nodes, quant, shards });
  return 0;
}
