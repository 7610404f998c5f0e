/** The steering options of `mesh-llm generate`: --scenario NAME | --sensors FILE, --alpha A. */
import { ModelPaths } from '../../lib/llm/resolve';
import { attributionSummary, runSteeredGenerate } from '../../lib/steering/run';
import { UsageError, floatOption } from '../args';
import { TextStream } from '../output';
import type { GenerateCommand } from './generate';

export const steeringOptionSpec = {
  scenario: { type: 'string' },
  sensors: { type: 'string' },
  alpha: { type: 'string' },
} as const;

export const steeringUsage = `
  --scenario NAME    steer by simulated sensors: calm, explosion, bright-flash or earthquake (every head
                     group is a node node-1..node-G; docs/STEERING.md)
  --sensors FILE     steer by a CSV sensor trace (at,node,<channels>), calibrated on its first minute
  --alpha A          steering strength (default: steering/steering.json)`;

type SteeringValues = { [K in keyof typeof steeringOptionSpec]?: string } & { mesh?: string; broker?: string; radio?: string };

export function wantsSteering(values: SteeringValues): boolean {
  return values.scenario !== undefined || values.sensors !== undefined || values.alpha !== undefined;
}

/** A steered generation on the monolithic engine; prints like generate, plus the attribution. */
export async function runSteeredCommand(values: SteeringValues, cmd: GenerateCommand, paths: ModelPaths, stream: TextStream): Promise<number> {
  if (values.scenario !== undefined && values.sensors !== undefined) throw new UsageError('generate: give --scenario or --sensors, not both');
  if (values.mesh !== undefined || values.broker !== undefined || values.radio !== undefined) throw new UsageError('generate: steering runs on the monolithic engine; over MQTT it is driven by lib/steering/mesh.ts (see docs/STEERING.md)');
  const result = await runSteeredGenerate({
    generate: cmd.generate,
    modelPath: paths.model,
    tokenizerPath: paths.tokenizer,
    groups: cmd.groups,
    quant: cmd.quant,
    scenario: values.scenario,
    sensors: values.sensors,
    alpha: values.alpha === undefined ? undefined : floatOption('alpha', values.alpha, 0, -100, 100),
    onPiece: cmd.json ? undefined : (_t, piece) => stream.write(piece),
  });
  if (cmd.json) {
    const { tokens, text, tokensPerSecond, alpha, readings, attributions } = result;
    process.stdout.write(`${JSON.stringify({ tokens, text, tokensPerSecond, alpha, readings, attributions })}\n`);
  } else {
    stream.end();
    process.stderr.write(`steering alpha ${result.alpha}; tokens attributed to: ${attributionSummary(result.attributions) || 'none'}\n`);
  }
  return 0;
}
