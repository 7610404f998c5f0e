/**
 * `mesh-llm plan`: will a model fit a LoRa mesh of ESP32-S3 head nodes, and how long does a
 * token take? Prints the budget and a verdict per module variant; with --json, one object.
 */
import { UsageError, choiceOption, floatOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { Checkpoint } from '../../lib/llm/checkpoint';
import { ModelConfig } from '../../lib/llm/config';
import { MeshLlmError } from '../../lib/llm/errors';
import { BANDWIDTHS_KHZ, BandwidthKHz, SpreadingFactor } from '../../lib/radio/airtime';
import { MODEL_PRESETS, PRESET_NAMES, PresetName } from '../../lib/radio/presets';
import { Plan, PlanOptions, WEIGHT_FORMATS, WeightFormat, formatPlan, plan } from '../../lib/radio/planner';
import { REGION_NAMES } from '../../lib/radio/regions';
import { CHANNEL_PLAN_NAMES, namedChannelPlan } from '../../lib/radio/channel-plans';
import { SX1262_TX_MA } from '../../lib/radio/power';
import { TRANSPORT_ENCODINGS } from '../../lib/llm/quant';

export const usage = `mesh-llm plan (--model PATH | --preset tinyllama|stories260k) --nodes N [--quant f32|int8|int4|int2]
                [--region EU868|US915] [--sf S] [--bw B] [--channels 1|8 | --channel-plan P] [--context 512]
                [--transport f32|int8|int7|int7h|int4] [--min-top1 0.99] [--tx-power 14] [--tokens-per-hour R]
                [--battery-mah 3000] [--sun-hours 4] [--json]

  --model PATH        model file whose header gives the geometry (llama2.c, GGUF, or a Hugging Face folder)
  --preset NAME       a known geometry instead: tinyllama or stories260k
  --nodes N           head nodes, 1 to the model's head count; heads are split as evenly as they go
  --quant F           weight storage on the nodes' flash: f32, int8, int4 or int2 (default int8; docs/QUANTISATION.md)
  --region R          EU868 or US915 (default EU868)
  --sf S              spreading factor 5..12 (default 7); with --bw it must be a data rate of the region
  --bw B              bandwidth in kHz: 125, 250 or 500 (default 125)
  --channels 1|8      receive channels of the gateway (default 1)
  --channel-plan P    a region's full plan instead: us915-500, eu868-split, eu868-wide or eu868-fsk (docs/RADIO.md); sets the region
  --context N         positions the KV cache holds (default 512)
  --transport T       how vectors cross the radio: f32, int8, int7, int7h or int4 groups (default int8)
  --min-top1 X        fidelity floor of the fastest combination: measured top-1 agreement with float32 (default 0.99)
  --tx-power D        the nodes' SX1262 output power, dBm: 14, 17, 20 or 22 (default 14; docs/POWER.md)
  --tokens-per-hour R token rate for the battery life (default: back to back)
  --battery-mah C     a node's battery, mAh (default 3000)
  --sun-hours H       daily insolation, peak-sun hours, for the solar sizing (default 4)
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
  'channel-plan': { type: 'string' },
  'min-top1': { type: 'string' },
  'tx-power': { type: 'string' },
  'tokens-per-hour': { type: 'string' },
  'battery-mah': { type: 'string' },
  'sun-hours': { type: 'string' },
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
  const channelPlan = values['channel-plan'] === undefined ? undefined : choiceOption('channel-plan', values['channel-plan'], CHANNEL_PLAN_NAMES[0], CHANNEL_PLAN_NAMES);
  const planRegion = channelPlan === undefined ? undefined : namedChannelPlan(channelPlan).region.name;
  if (planRegion && values.region !== undefined && values.region !== planRegion) throw new UsageError(`plan: --channel-plan ${channelPlan} is a ${planRegion} plan, not --region ${values.region}`);
  const region = planRegion ?? choiceOption('region', values.region, 'EU868', REGION_NAMES);
  const sf = intOption('sf', values.sf, 7, 5, 12) as SpreadingFactor;
  const bw = Number(choiceOption('bw', values.bw, '125', BANDWIDTHS_KHZ.map(String))) as BandwidthKHz;
  const channels = Number(choiceOption('channels', values.channels, '1', ['1', '8'] as const)) as 1 | 8;
  const transport = choiceOption('transport', values.transport, 'int8', TRANSPORT_ENCODINGS);
  const minTop1 = floatOption('min-top1', values['min-top1'], 0.99, 0, 1);
  const txDbm = Number(choiceOption('tx-power', values['tx-power'], '14', Object.keys(SX1262_TX_MA)));
  const power = {
    txDbm,
    tokensPerHour: values['tokens-per-hour'] === undefined ? undefined : floatOption('tokens-per-hour', values['tokens-per-hour'], 1, 1e-6, 1e9),
    batteryMah: floatOption('battery-mah', values['battery-mah'], 3000, 1, 1e9),
    sunHoursPerDay: floatOption('sun-hours', values['sun-hours'], 4, 0.1, 24),
  };
  const nodes = intOption('nodes', values.nodes, 1, 1, 255);
  const context = intOption('context', values.context, 512, 1, 1 << 20);
  const model = modelFrom(values);
  return {
    options: { model: model.config, modelName: model.name, nodes, quant, transport, region, sf, bandwidthKHz: bw, channels, context, channelPlan, minTop1, power },
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
