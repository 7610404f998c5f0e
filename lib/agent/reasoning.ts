/**
 * The reasoning role's work: the project's model (in this process, its heads cut into one group
 * per head so the sensing role's per-node readings steer it as `generate --scenario --groups 8`
 * does) writes a draft after a prompt made of the retrieved passages and the request's prompt.
 * The filter's feedback on earlier drafts changes the sampling of the next (see samplingFor).
 */
import { Engine, GenerateOptions, Generation, GenerationResult, HeadRunner, forward } from '../llm/engine';
import { Tokenizer } from '../llm/tokenizer';
import { CounterfactualHeads } from '../steering/attribution';
import { SteeringData, loadSteering } from '../steering/directions';
import { Steering, clearSteering, localNodes } from '../steering/steer';
import { AgentSteeringMessage, DraftMessage, DraftSteering, Passage, ReasonMessage } from './messages';

export interface ReasonerOptions {
  modelPath: string;
  tokenizerPath: string;
  /** Head groups of the model, each a steering node node-1.. (default: one per head). */
  groups?: number;
  /** steering/ folder (default: the package's). */
  steeringDir?: string;
}

/**
 * How the next draft is sampled after the filter's reasons: a new seed every attempt, per
 * reason a change of temperature, and the safety words found never written again (generateAvoiding).
 */
export const RETRY = {
  /** Seed of attempt a: seed + (a - 1) * seedStep. */
  seedStep: 7919,
  /** A degenerate draft (loops): sample hotter, at least `degenerationFloor`, at most `max`. */
  degenerationStep: 0.2,
  degenerationFloor: 0.8,
  /** An incoherent draft (perplexity too high): sample colder. */
  coherenceFactor: 0.75,
  max: 1.2,
} as const;

/** The temperature and seed of a request's attempt, from the filter's feedback on the attempts before it. */
export function samplingFor(req: Pick<ReasonMessage, 'attempt' | 'feedback' | 'temperature' | 'seed'>): { temperature: number; seed: number } {
  let t = req.temperature;
  for (const f of req.feedback) {
    if (f.check === 'degeneration') t = Math.min(RETRY.max, Math.max(t + RETRY.degenerationStep, RETRY.degenerationFloor));
    else if (f.check === 'coherence') t = t * RETRY.coherenceFactor;
  }
  return { temperature: Math.round(t * 1e6) / 1e6, seed: req.seed + (req.attempt - 1) * RETRY.seedStep };
}

/** Each word as the model writes it after a space and capitalised: the token sequences a draft may not complete. */
export function bannedSequences(tokenizer: Tokenizer, words: readonly string[]): number[][] {
  const forms = [...new Set(words.flatMap((w) => [w, w[0].toUpperCase() + w.slice(1)]))];
  return forms.map((w) => tokenizer.encode(w, false, false));
}

/** Sets -Infinity on every token that would complete a banned sequence after `tokens`. */
export function maskBanned(logits: Float32Array, tokens: readonly number[], bans: readonly number[][]): void {
  for (const seq of bans) {
    const prefix = seq.length - 1;
    let match = tokens.length >= prefix;
    for (let i = 0; match && i < prefix; i++) match = tokens[tokens.length - prefix + i] === seq[i];
    if (match) logits[seq[prefix]] = -Infinity;
  }
}

/** run.c's loop (engine.ts generate) on `heads`, never completing a banned token sequence. */
export async function generateAvoiding(engine: Engine, heads: HeadRunner, options: GenerateOptions, bans: readonly number[][]): Promise<GenerationResult> {
  const headOut = new Float32Array(engine.g.dim);
  await heads.reset();
  const gen = new Generation(engine.tokenizer, options, engine.g.seqLen);
  while (!gen.done) {
    const logits = await forward(engine.gateway, heads, gen.token, gen.pos, headOut, gen.needsLogits);
    if (logits && bans.length > 0) maskBanned(logits, gen.tokens, bans);
    gen.advance(logits);
  }
  return gen.result();
}

/** What the model is fed: the passages' texts, one a line, then the prompt. */
export function modelPromptOf(passages: readonly Passage[], prompt: string): string {
  return [...passages.map((p) => p.text), prompt].filter((s) => s !== '').join('\n');
}

export class Reasoner {
  readonly engine: Engine;
  readonly steering: Steering;
  readonly steeringData: SteeringData;

  constructor(o: ReasonerOptions) {
    this.engine = Engine.load({ modelPath: o.modelPath, tokenizerPath: o.tokenizerPath, groups: o.groups ?? 8 });
    this.steeringData = loadSteering(this.engine.g.dim, this.engine.g.nLayers, o.steeringDir);
    this.steering = new Steering(this.engine.g, this.engine.gateway, this.steeringData, localNodes(this.engine.heads));
  }

  /** Node ids of the model's head groups (what steering readings are keyed by). */
  get nodes(): string[] {
    return localNodes(this.engine.heads).map((n) => n.node);
  }

  /**
   * The passages that fit in front of the prompt with room for `tokens` sampled tokens, best
   * first: a passage that does not fit is left out (and the draft does not cite it).
   */
  fitPassages(passages: readonly Passage[], prompt: string, tokens: number): Passage[] {
    const room = this.engine.g.seqLen - Math.min(tokens, this.engine.g.seqLen - 1);
    const out: Passage[] = [];
    for (const p of passages) {
      if (this.engine.tokenizer.encode(modelPromptOf([...out, p], prompt), true, false).length <= room) out.push(p);
    }
    return out;
  }

  /**
   * Sets the steering message's readings on the model's head groups (as a steered generation
   * does, with the envelope); the returned runner computes the heads steered. clearSteering
   * (or the end of draft) takes it off again.
   */
  steer(steering: AgentSteeringMessage | null): { runner: HeadRunner; alpha: number; steered: string[] } {
    const readings = steering?.readings ?? {};
    const alpha = steering?.alpha ?? this.steeringData.settings.alpha;
    const steered = Object.keys(readings).filter((n) => this.nodes.includes(n));
    clearSteering(this.engine.heads);
    if (steered.length === 0) return { runner: this.engine.heads, alpha, steered };
    this.steering.apply(this.engine.heads, readings, alpha);
    return { runner: new CounterfactualHeads(this.engine.heads, this.engine.g, this.steering.steeredNodes(readings, alpha)), alpha, steered };
  }

  /** A draft for the request, steered by the sensing role's last readings (null: unsteered). */
  async draft(req: ReasonMessage, steering: AgentSteeringMessage | null): Promise<DraftMessage> {
    const { tokenizer, g } = this.engine;
    const used = this.fitPassages(req.passages, req.prompt, req.tokens);
    const modelPrompt = modelPromptOf(used, req.prompt);
    const promptTokens = tokenizer.encode(modelPrompt, true, false);
    const steps = Math.min(g.seqLen, promptTokens.length + req.tokens);
    const { temperature, seed } = samplingFor(req);
    const { runner, alpha, steered } = this.steer(steering);
    try {
      const bans = bannedSequences(tokenizer, req.feedback.flatMap((f) => f.words ?? []));
      const r = await generateAvoiding(this.engine, runner, { prompt: modelPrompt, steps, temperature, topP: req.topP, seed: BigInt(seed) }, bans);
      const tokens = r.tokens.slice(promptTokens.length);
      const draftSteering: DraftSteering | null = steered.length > 0 ? { source: steering!.source, alpha, nodes: steered.length } : null;
      // the text after the model's prompt (decode's first id is context only)
      const text = tokenizer.decode([promptTokens[promptTokens.length - 1], ...tokens]);
      return { protocol: 1, id: req.id, attempt: req.attempt, prompt: req.prompt, text, tokens, modelPrompt, sources: used.map((p) => p.source), temperature, seed, steering: draftSteering };
    } finally {
      clearSteering(this.engine.heads);
    }
  }
}
