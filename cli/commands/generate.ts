/**
 * `mesh-llm generate`: text from the model. Streams text as it is produced; with --json
 * prints one object {"tokens", "text", "tokensPerSecond"} on stdout instead.
 */
import { UsageError, choiceOption, floatOption, intOption, parseOptions, seedOption } from '../args';
import { Engine, GenerateOptions, GenerationResult, TEMPERATURE_RANGE } from '../../lib/llm/engine';
import { resolveOrFetchModelPaths } from '../../lib/llm/provide';
import { Encoding, TRANSPORT_ENCODINGS, WEIGHT_FORMATS, WeightFormat } from '../../lib/llm/quant';
import { TextStream, printJson } from '../output';
import { trustCaFile } from '../../lib/mesh/mqtt';
import { followJob, gatewayOnline } from '../../lib/runs/bus';
import { DEFAULT_MESH_ID } from '../../lib/mesh/run';
import { meshOptionSpec, meshUsage, runMeshCommand, wantsMesh, withBrokerLogin } from './mesh-options';
import { radioFailoverOptionSpec, radioOptionSpec, radioUsage, runRadioCommand, wantsRadio } from './radio-options';
import { runSteeredCommand, steeringOptionSpec, steeringUsage, wantsSteering } from './steer-options';

export const usage = `mesh-llm generate [--prompt TEXT] [--steps N] [--temperature T] [--top-p P] [--seed S]
                  [--model PATH] [--tokenizer PATH] [--groups G] [--quant f32|int8|int4|int2] [--transport f32|int8|int7|int7h|int4] [--json]
                  [--scenario NAME | --sensors FILE] [--alpha A]
                  [--mesh N [--native [--shards DIR]] | --broker URL [--username U --password P | --data DIR] [--ca FILE] [--nodes K]]
                  [--mesh-id ID] [--gather-timeout MS] [--events FILE]
                  [--radio sim [--nodes N] [--region R] [--sf S] [--bw B] [--channels C] [--channel-plan P] [--loss P] [--time-scale X] [--spares K] [--fail N@P]]

  --prompt TEXT      text to continue (default: none, start from BOS)
  --steps N          positions to run, prompt included, like llama2.c's -n (default 256; 0 = the model's
                     whole context; more than the context, or fewer than the prompt's tokens, is refused)
  --temperature T    0 = greedy, up to ${TEMPERATURE_RANGE.max} (default 1.0)
  --top-p P          nucleus sampling threshold in [0, 1] (default 0.9; 0 or 1 = off)
  --seed S           sampling seed (default: from the clock)
  --model PATH       llama2.c checkpoint, GGUF file (F32/F16/BF16/Q8_0/Q4_0/Q4_1) or Hugging Face folder
                     (config.json + model.safetensors + tokenizer.json); default: the model resolution order
  --tokenizer PATH   llama2.c tokenizer file, GGUF file or tokenizer.json (default: a GGUF file's own
                     vocabulary, a Hugging Face folder's tokenizer.json, tok512.bin beside the model, then
                     the resolution order)
  --groups G         cut the heads into G groups, or sizes such as 2+3+3 (default 1); the tokens do not change
  --quant f32|int8|int4|int2   head weights: int8, int4 or int2 groups (docs/QUANTISATION.md), each with int8
                     transport of broadcasts and head outputs unless --transport says otherwise (default f32)
  --transport T      how vectors cross between gateway and heads: f32, int8, int7, int7h (int7 of Walsh-Hadamard-rotated groups) or int4 groups (engine and --mesh/--broker)
  --json             print one JSON object instead of streaming text
  --events FILE      with --mesh, --broker or --radio: append every mesh event (schemas/event.json,
                     also published on mesh-llm/{mesh}/events) to FILE as a JSON line; - for stderr${steeringUsage}${meshUsage}${radioUsage}`;

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
  transport: { type: 'string' },
  json: { type: 'boolean' },
  events: { type: 'string' },
  ...meshOptionSpec,
  ...radioOptionSpec,
  ...radioFailoverOptionSpec,
  ...steeringOptionSpec,
} as const;

export interface GenerateCommand {
  generate: GenerateOptions;
  model?: string;
  tokenizer?: string;
  groups: string;
  quant: WeightFormat;
  /** Overrides the transport the weights imply (engine and MQTT mesh). */
  transport?: Encoding;
  json: boolean;
  /** --events FILE: every mesh event as a JSON line (- for stderr). */
  events?: string;
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
    quant: choiceOption('quant', values.quant, 'f32', WEIGHT_FORMATS),
    transport: values.transport === undefined ? undefined : choiceOption('transport', values.transport, 'int8', TRANSPORT_ENCODINGS),
    json: values.json ?? false,
    events: values.events,
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

/**
 * `generate --broker URL` with a gateway online on the mesh (mesh-llm start): the request is a
 * durable job on it, followed to its end (lib/runs/bus.ts); a gateway restart mid-job is
 * survived (the job resumes there). The gateway runs its own mesh and model.
 */
async function runJobCommand(address: { url: string; username?: string; password?: string; meshId: string }, cmd: GenerateCommand, stream: TextStream): Promise<number> {
  if (cmd.generate.seed > BigInt(Number.MAX_SAFE_INTEGER)) throw new UsageError(`--seed ${cmd.generate.seed}: a job on a gateway takes seeds up to ${Number.MAX_SAFE_INTEGER}`);
  let online: boolean | null = null; // the retained presence first, then its changes
  const job = await followJob({
    ...address,
    options: cmd.generate,
    onJob: (id) => process.stderr.write(`job ${id} accepted by the gateway on mesh "${address.meshId}"\n`),
    onGateway: (now) => {
      if (online !== null && now !== online) process.stderr.write(now ? 'the gateway is back; the job goes on\n' : 'the gateway went offline; waiting for it (the job resumes when it starts again)\n');
      online = now;
    },
    onPiece: cmd.json ? undefined : (piece) => stream.write(Buffer.from(piece, 'utf8')),
  });
  if (cmd.json) printJson({ tokens: job.tokens, text: job.text, tokensPerSecond: job.tokensPerSecond, job: job.job });
  else {
    stream.end();
    process.stderr.write(`job ${job.job} done\n`);
  }
  return 0;
}

export async function run(argv: string[]): Promise<number> {
  const values = withBrokerLogin(parseOptions(argv, generateOptionSpec, 'generate'));
  const cmd = parseGenerate(values);
  const paths = await resolveOrFetchModelPaths({ model: cmd.model, tokenizer: cmd.tokenizer });
  const stream = new TextStream(process.stdout);
  if (cmd.events !== undefined && !wantsRadio(values) && !wantsMesh(values)) throw new UsageError('generate: --events tells what happens on a mesh: give it with --mesh, --broker or --radio');
  if (wantsRadio(values)) return runRadioCommand(values, cmd, paths, stream);
  if (wantsSteering(values)) return runSteeredCommand(values, cmd, paths, stream);
  if (values.broker !== undefined && values.mesh === undefined && cmd.events === undefined) {
    trustCaFile(values.ca);  // the gateway's presence is looked up on the broker before the mesh options are read
    const address = { url: values.broker, username: values.username, password: values.password, meshId: values['mesh-id'] ?? DEFAULT_MESH_ID };
    if (await gatewayOnline(address)) return runJobCommand(address, cmd, stream);
  }
  const onToken = cmd.json ? undefined : (_t: number, piece: Buffer) => stream.write(piece);
  const result = wantsMesh(values)
    ? await runMeshCommand(values, cmd, paths, onToken)
    : await Engine.load({ modelPath: paths.model, tokenizerPath: paths.tokenizer, groups: cmd.groups, quant: cmd.quant, transport: cmd.transport }).generate(cmd.generate, onToken);
  reportGeneration(result, cmd.json, stream);
  return 0;
}
