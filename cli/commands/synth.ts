/**
 * `mesh-llm synth`: a synthetic model of a known geometry (seeded random weights, lib/llm/synth.ts)
 * written as a llama2.c checkpoint, a GGUF file or a Hugging Face folder.
 */
import * as fs from 'node:fs';
import { UsageError, choiceOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { ModelConfig } from '../../lib/llm/config';
import { locateModelFile } from '../../lib/llm/resolve';
import { SYNTH_TYPES, SynthFormat, writeSynthModel } from '../../lib/llm/synth';
import { Tokenizer } from '../../lib/llm/tokenizer';
import { MODEL_PRESETS, PRESET_NAMES, PresetName } from '../../lib/radio/presets';

export const usage = `mesh-llm synth --preset tinyllama|stories260k --out PATH [--format llama2c|gguf|hf] [--type T]
                 [--seed S] [--layers N] [--context N] [--tokenizer PATH] [--json]

  --preset NAME      the geometry: tinyllama (22 layers, dim 2048, 32 heads, 4 kv heads, hidden 5632,
                     vocab 32000) or stories260k
  --out PATH         the file to write (a folder for --format hf)
  --format F         llama2c (version 1, float32), gguf or hf (default gguf)
  --type T           gguf: F32, F16, Q8_0 or Q4_0 (default Q8_0; norms stay F32); hf: F32, F16 or BF16
                     (default BF16); llama2c: F32
  --seed S           the weights' seed (default 1)
  --layers N         fewer layers than the preset (a smaller model of the same width)
  --context N        the context length written (default the preset's)
  --tokenizer PATH   the vocabulary written into a GGUF file or tokenizer.json (default tokenizer.bin for
                     32000 tokens, tok512.bin for 512, by the model resolution order)
  --json             print one JSON object {out, format, type, config, bytes}`;

const optionSpec = {
  preset: { type: 'string' },
  out: { type: 'string' },
  format: { type: 'string' },
  type: { type: 'string' },
  seed: { type: 'string' },
  layers: { type: 'string' },
  context: { type: 'string' },
  tokenizer: { type: 'string' },
  json: { type: 'boolean' },
} as const;

function bytesOf(p: string): number {
  const st = fs.statSync(p);
  if (!st.isDirectory()) return st.size;
  return fs.readdirSync(p).reduce((n, f) => n + fs.statSync(`${p}/${f}`).size, 0);
}

export async function run(argv: string[]): Promise<number> {
  const values = parseOptions(argv, optionSpec, 'synth');
  if (values.preset === undefined) throw new UsageError('synth: --preset NAME is required (tinyllama or stories260k)');
  if (values.out === undefined) throw new UsageError('synth: --out PATH is required');
  const preset = choiceOption('preset', values.preset, PRESET_NAMES[0], PRESET_NAMES) as PresetName;
  const format = choiceOption('format', values.format, 'gguf', ['llama2c', 'gguf', 'hf'] as const) as SynthFormat;
  const type = choiceOption('type', values.type, format === 'gguf' ? 'Q8_0' : format === 'hf' ? 'BF16' : 'F32', SYNTH_TYPES[format]);
  const base: ModelConfig = MODEL_PRESETS[preset];
  const config: ModelConfig = {
    ...base,
    nLayers: intOption('layers', values.layers, base.nLayers, 1, base.nLayers),
    seqLen: intOption('context', values.context, base.seqLen, 1, 1 << 20),
  };
  const seed = intOption('seed', values.seed, 1, 0, 0xffffffff);
  const vocab = format === 'llama2c' ? undefined : Tokenizer.load(values.tokenizer ?? locateModelFile(config.vocabSize === 512 ? 'tok512.bin' : 'tokenizer.bin'), config.vocabSize);
  let shown = -1;
  const progress = (done: number, total: number): void => {
    const pct = Math.floor((100 * done) / total);
    if (pct !== shown && (pct % 10 === 0 || done === total)) {
      shown = pct;
      process.stderr.write(`synth: ${values.out} ${pct}% (${done}/${total} tensors)\n`);
    }
  };
  writeSynthModel({ config, seed, format, out: values.out, type, vocab, progress });
  const summary = { out: values.out, format, type, seed, config, bytes: bytesOf(values.out) };
  if (values.json) printJson(summary);
  else process.stdout.write(`wrote ${values.out}: ${format} ${type}, ${config.nLayers} layers, dim ${config.dim}, ${summary.bytes} bytes\n`);
  return 0;
}
