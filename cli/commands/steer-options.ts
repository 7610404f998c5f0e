/** The steering options of `mesh-llm generate`: --scenario NAME | --sensors FILE, --alpha A. */
import { ModelPaths } from '../../lib/llm/resolve';
import { SteeredGenerationResult, attributionSummary, runSteeredGenerate, steeredOnMesh } from '../../lib/steering/run';
import { UsageError, floatOption } from '../args';
import { TextStream, printJson } from '../output';
import type { GenerateCommand } from './generate';
import { runMeshCommand, wantsMesh } from './mesh-options';

export const steeringOptionSpec = {
  scenario: { type: 'string' },
  sensors: { type: 'string' },
  alpha: { type: 'string' },
} as const;

export const steeringUsage = `
  --scenario NAME    steer by simulated sensors: calm, explosion, bright-flash or earthquake (every head
                     group, or with --mesh/--broker/--radio every head node, is a node; docs/STEERING.md)
  --sensors FILE     steer by a CSV sensor trace (at,node,<channels>), calibrated on its first minute
  --alpha A          steering strength (default: steering/steering.json)`;

type SteeringValues = { [K in keyof typeof steeringOptionSpec]?: string } & Parameters<typeof runMeshCommand>[0] & { radio?: string };

export function wantsSteering(values: SteeringValues): boolean {
  return values.scenario !== undefined || values.sensors !== undefined || values.alpha !== undefined;
}

/** A steered generation on the monolithic engine; prints like generate, plus the attribution. */
export async function runSteeredCommand(values: SteeringValues, cmd: GenerateCommand, paths: ModelPaths, stream: TextStream): Promise<number> {
  if (values.scenario !== undefined && values.sensors !== undefined) throw new UsageError('generate: give --scenario or --sensors, not both');
  const source = { scenario: values.scenario, sensors: values.sensors, alpha: values.alpha === undefined ? undefined : floatOption('alpha', values.alpha, 0, -100, 100) };
  const onPiece = cmd.json ? undefined : (_t: number, piece: Buffer) => stream.write(piece);
  const result = wantsMesh(values)
    ? ((await runMeshCommand(values, cmd, paths, undefined, steeredOnMesh(source, cmd.generate, { onPiece }))) as SteeredGenerationResult)
    : await runSteeredGenerate({ generate: cmd.generate, modelPath: paths.model, tokenizerPath: paths.tokenizer, groups: cmd.groups, quant: cmd.quant, ...source, onPiece });
  if (cmd.json) {
    const { tokens, text, tokensPerSecond, alpha, readings, attributions } = result;
    printJson({ tokens, text, tokensPerSecond, alpha, readings, attributions });
  } else {
    stream.end();
    process.stderr.write(`steering alpha ${result.alpha}; tokens attributed to: ${attributionSummary(result.attributions) || 'none'}\n`);
  }
  return 0;
}
