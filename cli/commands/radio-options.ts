/** The radio options of `mesh-llm generate`: --radio sim generates through the LoRa bridge and the simulated channel. */
import { ModelPaths } from '../../lib/llm/resolve';
import { BANDWIDTHS_KHZ, BandwidthKHz, SPREADING_FACTORS, SpreadingFactor } from '../../lib/radio/airtime';
import { REGION_NAMES } from '../../lib/radio/regions';
import { CHANNEL_PLAN_NAMES, namedChannelPlan } from '../../lib/radio/channel-plans';
import { RadioFault, RadioGenerationResult, runRadioGenerate } from '../../gateway-bridge/run';
import { TokenRadioReport } from '../../gateway-bridge/radio-mesh';
import { TextStream, printJson, withEventLog } from '../output';
import { UsageError, choiceOption, floatOption, intOption } from '../args';
import type { GenerateCommand } from './generate';
import { attributionSummary, readingsFor } from '../../lib/steering/run';

export const radioOptionSpec = {
  radio: { type: 'string' },
  region: { type: 'string' },
  sf: { type: 'string' },
  bw: { type: 'string' },
  channels: { type: 'string' },
  'channel-plan': { type: 'string' },
  loss: { type: 'string' },
  'time-scale': { type: 'string' },
} as const;

/** generate --radio only: spare radio nodes and simulated faults, for failover on the radio. */
export const radioFailoverOptionSpec = {
  spares: { type: 'string' },
  fail: { type: 'string' },
} as const;

export const radioUsage = `
  --radio sim        run the heads on radio head nodes behind the LoRa bridge, on the simulated channel
  --nodes N          with --radio: radio head nodes (default 4), one head group each
  --region R         EU868 or US915 (default EU868)
  --sf S             spreading factor 7..12 (default 7)
  --bw B             bandwidth 125, 250 or 500 kHz (default 125)
  --channels C       gateway receive channels, 1 or 8 (default 1)
  --channel-plan P   a region's full channel plan instead: us915-500 (500 kHz broadcast, 8 x 125 + 1 x 500 kHz
                     replies), eu868-split (broadcast over EU868's sub-bands), eu868-wide (SF7/250 in all six) or
                     eu868-fsk (eu868-wide with g3 at FSK 50 kbps, broadcast and replies); sets the region (docs/RADIO.md)
  --loss P           probability that any one reception is lost, 0..0.9 (default 0)
  --time-scale X     pace simulated time at X times the wall clock (1 = true airtime; default: as fast as possible)
  --spares K         with --radio: K more radio nodes, flashed with the head groups of nodes 1..K, idle until a
                     failover gives one the heads of a lost node of the same group (default 0)
  --fail N@P,...     with --radio: simulated faults, radio node N goes silent after position P (e.g. radio-1@10);
                     --json then gives "failovers", each with its replay's airtime and simulated time
  --native           with --radio: the head nodes are the firmware's radio node built for the host (C++), each
                     loading its weight shard and joining the simulated channel through its socket
  With --radio, --json adds "simulatedSecondsPerToken", "boundSecondsPerToken" and "airtimeSeconds"
  (per token, by kind of frame) and "radio" (the run's totals); without --json the closing
  stderr line gives the per-token times and the run's total airtime.`;

type RadioValues = { [K in keyof typeof radioOptionSpec | keyof typeof radioFailoverOptionSpec]?: string } & { nodes?: string; mesh?: string; broker?: string; native?: boolean; scenario?: string; sensors?: string; alpha?: string };

export function wantsRadio(values: RadioValues): boolean {
  return values.radio !== undefined;
}

/** The radio's settings from --region, --sf, --bw, --channels, --channel-plan, --nodes, --loss, --time-scale (generate, start and bridge). */
export function parseRadioSettings(values: Omit<RadioValues, 'radio'>, defaultTimeScale?: number) {
  const channelPlan = values['channel-plan'] === undefined ? undefined : choiceOption('channel-plan', values['channel-plan'], CHANNEL_PLAN_NAMES[0], CHANNEL_PLAN_NAMES);
  const planRegion = channelPlan === undefined ? undefined : namedChannelPlan(channelPlan).region.name;
  if (planRegion && values.region !== undefined && values.region !== planRegion) throw new UsageError(`--channel-plan ${channelPlan} is a ${planRegion} plan, not --region ${values.region}`);
  return {
    region: planRegion ?? choiceOption('region', values.region, 'EU868', REGION_NAMES),
    channelPlan,
    sf: Number(choiceOption('sf', values.sf, '7', SPREADING_FACTORS.filter((s) => s >= 7).map(String))) as SpreadingFactor,
    bandwidthKHz: Number(choiceOption('bw', values.bw, '125', BANDWIDTHS_KHZ.map(String))) as BandwidthKHz,
    channels: Number(choiceOption('channels', values.channels, '1', ['1', '8'] as const)),
    nodes: intOption('nodes', values.nodes, 4, 1, 254),
    loss: floatOption('loss', values.loss, 0, 0, 0.9),
    timeScale: values['time-scale'] === undefined ? defaultTimeScale : floatOption('time-scale', values['time-scale'], 1, 1e-3, 1e9),
  };
}

/** How often progress goes to stderr (wall ms). */
const PROGRESS_EVERY_MS = 2000;

/** --fail radio-1@10,radio-2@12: the simulated faults. */
function parseFaults(text: string | undefined): RadioFault[] | undefined {
  if (text === undefined) return undefined;
  return text.split(',').map((part) => {
    const m = /^([A-Za-z0-9_.-]{1,64})@(\d+)$/.exec(part.trim());
    if (!m) throw new UsageError(`generate: --fail takes NODE@POSITION[,...] (such as radio-1@10), not "${part}"`);
    return { node: m[1], pos: Number(m[2]) };
  });
}

/** `generate --radio sim`: generates, streams or prints the result, and reports the radio on stderr. */
export async function runRadioCommand(values: RadioValues, cmd: GenerateCommand, paths: ModelPaths, stream: TextStream): Promise<number> {
  if (values.mesh !== undefined || values.broker !== undefined) throw new UsageError('generate: --radio runs its own bridge and broker; give --radio or --mesh/--broker, not both');
  if (cmd.quant !== 'f32' && cmd.quant !== 'int8') throw new UsageError(`generate: --radio sim runs f32 or int8 weights with the same transport, not --quant ${cmd.quant} yet`);
  choiceOption('radio', values.radio, 'sim', ['sim'] as const);
  const options = parseRadioSettings(values);
  const spares = values.spares === undefined ? undefined : intOption('spares', values.spares, 0, 0, 250);
  const faults = parseFaults(values.fail);
  // steering (--scenario, --sensors, --alpha): the radio nodes radio-1..radio-N get their steering over the radio
  const steered = values.scenario !== undefined || values.sensors !== undefined || values.alpha !== undefined;
  if (values.scenario !== undefined && values.sensors !== undefined) throw new UsageError('generate: give --scenario or --sensors, not both');
  const steer = steered
    ? {
        readings: readingsFor({ scenario: values.scenario, sensors: values.sensors }, Array.from({ length: options.nodes }, (_, i) => `radio-${i + 1}`)),
        alpha: values.alpha === undefined ? undefined : floatOption('alpha', values.alpha, 0, -100, 100),
      }
    : undefined;
  let lastProgress = performance.now();
  const onProgress = (t: TokenRadioReport) => {
    if (performance.now() - lastProgress < PROGRESS_EVERY_MS && options.timeScale === undefined) return;
    lastProgress = performance.now();
    process.stderr.write(`[radio] position ${t.pos}: ${t.simulatedSeconds.toFixed(1)} s simulated, bound ${t.boundSeconds.toFixed(1)} s (${t.ratio.toFixed(2)}x), ${t.rounds} rounds\n`);
  };
  const result: RadioGenerationResult = await withEventLog(cmd.events, (onEvent) => runRadioGenerate({
    ...options,
    onEvent,
    generate: cmd.generate,
    modelPath: paths.model,
    tokenizerPath: paths.tokenizer,
    quant: cmd.quant as 'f32' | 'int8',
    native: values.native,
    spares,
    faults,
    steer,
    onToken: cmd.json ? undefined : (_t, piece) => stream.write(piece),
    onProgress,
    log: (level, message) => {
      if (level === 'error' || level === 'warn') process.stderr.write(`[radio] ${level}: ${message}\n`);
    },
  }));
  const r = result.radio;
  if (cmd.json) {
    const round = (x: number) => Number(x.toFixed(4));
    const air = Object.fromEntries(Object.entries(r.airtimeSeconds).map(([k, v]) => [k, round(v / Math.max(1, r.positions))]));
    printJson({
      tokens: result.tokens,
      text: result.text,
      tokensPerSecond: result.tokensPerSecond,
      simulatedSecondsPerToken: round(r.simulatedSecondsPerToken),
      boundSecondsPerToken: round(r.boundSecondsPerToken),
      airtimeSeconds: air,
      radio: { ...options, timeScale: options.timeScale ?? null, positions: r.positions, simulatedSeconds: round(r.simulatedSeconds), ratio: round(r.ratio), frames: r.channel.transmissions, lost: r.channel.lost },
      ...(result.failovers ? { failovers: result.failovers } : {}),
      ...(steer ? { alpha: result.alpha, readings: steer.readings, attributions: result.attributions, steeringAirtimeSeconds: result.steeringAirtimeSeconds } : {}),
    });
  } else {
    stream.end();
    const a = r.airtimeSeconds;
    process.stderr.write(`achieved tok/s: ${result.tokensPerSecond.toFixed(1)} (wall clock)\n`);
    process.stderr.write(
      `radio: ${r.simulatedSecondsPerToken.toFixed(1)} s simulated per token, bound ${r.boundSecondsPerToken.toFixed(1)} s (${r.ratio.toFixed(3)}x); ` +
        `airtime ${(a.broadcast + a.result + a.nack + a.resent).toFixed(1)} s (broadcast ${a.broadcast.toFixed(1)}, results ${a.result.toFixed(1)}, NACKs ${a.nack.toFixed(1)}, resent ${a.resent.toFixed(1)}); ` +
        `${r.channel.transmissions} frames, ${r.channel.lost.random} receptions lost\n`,
    );
    if (steer) process.stderr.write(`steering alpha ${result.alpha} (${result.steeringAirtimeSeconds} s of airtime to deliver); tokens attributed to: ${attributionSummary(result.attributions ?? []) || 'none'}\n`);
  }
  return 0;
}
