/**
 * `mesh-llm plan`: will a model fit a LoRa mesh of ESP32-S3 head nodes, and how long does a
 * token take? Prints the budget and a verdict per module variant; with --json, one object.
 */
import { UsageError, choiceOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { Checkpoint } from '../../lib/llm/checkpoint';
import { ModelConfig } from '../../lib/llm/config';
import { MeshLlmError } from '../../lib/llm/errors';
import { BANDWIDTHS_KHZ, BandwidthKHz, SpreadingFactor } from '../../lib/radio/airtime';
import { MODEL_PRESETS, PRESET_NAMES, PresetName } from '../../lib/radio/presets';
import { Plan, PlanOptions, WEIGHT_FORMATS, WeightFormat, formatPlan, plan } from '../../lib/radio/planner';
import { REGION_NAMES } from '../../lib/radio/regions';

export const usage = `mesh-llm plan (--model PATH | --preset tinyllama|stories260k) --nodes N [--quant int8|int4]
                [--region EU868|US915] [--sf S] [--bw B] [--channels 1|8] [--context 512]
                [--transport int8|f32] [--json]

  --model PATH        model file whose header gives the geometry (llama2.c, GGUF, or a Hugging Face folder)
  --preset NAME       a known geometry instead: tinyllama or stories260k
  --nodes N           head nodes, 1 to the model's head count; heads are split as evenly as they go
  --quant int8|int4   weight storage on the nodes' flash (default int8)
  --region R          EU868 or US915 (default EU868)
  --sf S              spreading factor 5..12 (default 7); with --bw it must be a data rate of the region
  --bw B              bandwidth in kHz: 125, 250 or 500 (default 125)
  --channels 1|8      receive channels of the gateway (default 1)
  --context N         positions the KV cache holds (default 512)
  --transport T       how vectors cross the radio: int8 groups or f32 (default int8)
  --json              print one JSON object`;

const optionSpec = {
  model: { type: 'string' },
  preset: { type: 'string' },
  nodes: { type: 'string' },
  quant: { type: 'string' },
  region: { type: 'string' },
  sf: { type: 'string' },
  bw: { type: 'string' },
  channels: { type: 'string' },
  context: { type: 'string' },
  transport: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** The model geometry from --model or --preset (exactly one). */
function modelFrom(values: { model?: string; preset?: string }): { name: string; config: ModelConfig } {
  if ((values.model === undefined) === (values.preset === undefined)) throw new UsageError('plan: give exactly one of --model PATH and --preset NAME');
  if (values.preset !== undefined) {
    const name = choiceOption('preset', values.preset, PRESET_NAMES[0], PRESET_NAMES) as PresetName;
    return { name, config: MODEL_PRESETS[name] };
  }
  const ckpt = Checkpoint.open(values.model!);
  try {
    return { name: values.model!, config: ckpt.info.config };
  } finally {
    ckpt.close();
  }
}

export function parsePlan(argv: string[]): { options: PlanOptions; json: boolean } {
  const values = parseOptions(argv, optionSpec, 'plan');
  if (values.nodes === undefined) throw new UsageError('plan: --nodes N is required');
  const quant = choiceOption('quant', values.quant, 'int8', Object.keys(WEIGHT_FORMATS) as WeightFormat[]);
  const region = choiceOption('region', values.region, 'EU868', REGION_NAMES);
  const sf = intOption('sf', values.sf, 7, 5, 12) as SpreadingFactor;
  const bw = Number(choiceOption('bw', values.bw, '125', BANDWIDTHS_KHZ.map(String))) as BandwidthKHz;
  const channels = Number(choiceOption('channels', values.channels, '1', ['1', '8'] as const)) as 1 | 8;
  const transport = choiceOption('transport', values.transport, 'int8', ['int8', 'f32'] as const);
  const nodes = intOption('nodes', values.nodes, 1, 1, 255);
  const context = intOption('context', values.context, 512, 1, 1 << 20);
  const model = modelFrom(values);
  return {
    options: { model: model.config, modelName: model.name, nodes, quant, transport, region, sf, bandwidthKHz: bw, channels, context },
    json: values.json ?? false,
  };
}

/** Builds the plan; its option errors (nodes beyond the heads, a data rate the region lacks) are usage errors. */
export function planFromOptions(o: PlanOptions): Plan {
  try {
    return plan(o);
  } catch (e) {
    if (e instanceof MeshLlmError && !(e instanceof UsageError)) throw new UsageError(`plan: ${e.message}`);
    throw e;
  }
}

export async function run(argv: string[]): Promise<number> {
  const { options, json } = parsePlan(argv);
  const p = planFromOptions(options);
  if (json) printJson(p);
  else process.stdout.write(formatPlan(p));
  return 0;
}
