/**
 * `mesh-llm generate`: text from the model. Streams text as it is produced; with --json
 * prints one object {"tokens", "text", "tokensPerSecond"} on stdout instead.
 */
import { choiceOption, floatOption, intOption, parseOptions, seedOption } from '../args';
import { Engine, GenerateOptions, GenerationResult, TEMPERATURE_RANGE } from '../../lib/llm/engine';
import { resolveOrFetchModelPaths } from '../../lib/llm/provide';
import { TextStream, printJson } from '../output';
import { meshOptionSpec, meshUsage, runMeshCommand, wantsMesh } from './mesh-options';
import { radioOptionSpec, radioUsage, runRadioCommand, wantsRadio } from './radio-options';
import { runSteeredCommand, steeringOptionSpec, steeringUsage, wantsSteering } from './steer-options';

export const usage = `mesh-llm generate [--prompt TEXT] [--steps N] [--temperature T] [--top-p P] [--seed S]
                  [--model PATH] [--tokenizer PATH] [--groups G] [--quant f32|int8] [--json]
                  [--scenario NAME | --sensors FILE] [--alpha A]
                  [--mesh N [--native] | --broker URL [--username U --password P] [--nodes K]]
                  [--mesh-id ID] [--gather-timeout MS]
                  [--radio sim [--nodes N] [--region R] [--sf S] [--bw B] [--channels C] [--loss P] [--time-scale X]]

  --prompt TEXT      text to continue (default: none, start from BOS)
  --steps N          positions to run, prompt included, like llama2.c's -n (default 256; 0 = the model's
                     whole context; more than the context, or fewer than the prompt's tokens, is refused)
  --temperature T    0 = greedy, up to ${TEMPERATURE_RANGE.max} (default 1.0)
  --top-p P          nucleus sampling threshold in [0, 1] (default 0.9; 0 or 1 = off)
  --seed S           sampling seed (default: from the clock)
  --model PATH       llama2.c checkpoint (default: found by the model resolution order, see README)
  --tokenizer PATH   llama2.c tokenizer file (default: beside the model, then the resolution order)
  --groups G         cut the heads into G groups, or sizes such as 2+3+3 (default 1); the tokens do not change
  --quant f32|int8   int8: int8 head weights and int8 transport of broadcasts and head outputs (default f32)
  --json             print one JSON object instead of streaming text${steeringUsage}${meshUsage}${radioUsage}`;

export const generateOptionSpec = {
  prompt: { type: 'string' },
  steps: { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  groups: { type: 'string' },
  quant: { type: 'string' },
  json: { type: 'boolean' },
  ...meshOptionSpec,
  ...radioOptionSpec,
  ...steeringOptionSpec,
} as const;

export interface GenerateCommand {
  generate: GenerateOptions;
  model?: string;
  tokenizer?: string;
  groups: string;
  quant: 'f32' | 'int8';
  json: boolean;
}

export function parseGenerate(values: ReturnType<typeof parseOptions<typeof generateOptionSpec>>): GenerateCommand {
  return {
    generate: {
      prompt: values.prompt ?? '',
      steps: intOption('steps', values.steps, 256, 0, 1 << 20),
      temperature: floatOption('temperature', values.temperature, 1.0, TEMPERATURE_RANGE.min, TEMPERATURE_RANGE.max),
      topP: floatOption('top-p', values['top-p'], 0.9, 0, 1),
      seed: seedOption(values.seed),
    },
    model: values.model,
    tokenizer: values.tokenizer,
    groups: values.groups ?? '1',
    quant: choiceOption('quant', values.quant, 'f32', ['f32', 'int8'] as const),
    json: values.json ?? false,
  };
}

/** Prints a finished generation: the JSON object, or the closing newline and a rate on stderr. */
export function reportGeneration(result: GenerationResult, json: boolean, stream: TextStream): void {
  if (json) {
    const failovers = (result as { failovers?: unknown[] }).failovers; // a mesh run's degraded state, if any
    printJson({ tokens: result.tokens, text: result.text, tokensPerSecond: result.tokensPerSecond, ...(failovers && failovers.length > 0 ? { failovers } : {}) });
  } else {
    stream.end();
    process.stderr.write(`achieved tok/s: ${result.tokensPerSecond.toFixed(1)}\n`);
  }
}

export async function run(argv: string[]): Promise<number> {
  const values = parseOptions(argv, generateOptionSpec, 'generate');
  const cmd = parseGenerate(values);
  const paths = await resolveOrFetchModelPaths({ model: cmd.model, tokenizer: cmd.tokenizer });
  const stream = new TextStream(process.stdout);
  if (wantsRadio(values)) return runRadioCommand(values, cmd, paths, stream);
  if (wantsSteering(values)) return runSteeredCommand(values, cmd, paths, stream);
  const onToken = cmd.json ? undefined : (_t: number, piece: Buffer) => stream.write(piece);
  const result = wantsMesh(values)
    ? await runMeshCommand(values, cmd, paths, onToken)
    : await Engine.load({ modelPath: paths.model, tokenizerPath: paths.tokenizer, groups: cmd.groups, quant: cmd.quant }).generate(cmd.generate, onToken);
  reportGeneration(result, cmd.json, stream);
  return 0;
}
