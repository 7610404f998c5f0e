/**
 * The monolithic engine: gateway steps and head groups composed in one process, and the
 * generation loop of llama2.c's run.c. The loop talks to the heads only through HeadRunner,
 * so the MQTT mesh and the radio plug in their own runners and keep the same loop.
 */
import { Checkpoint } from './checkpoint';
import { BOS, Geometry, geometry } from './config';
import { InputError } from './errors';
import { Gateway } from './gateway';
import { gptqInverseFactor } from './gptq';
import { HeadGroup, INT8_GROUP_SIZE, loadHeadSlices, partitionHeads } from './head';
import { Encoding, WeightFormat, alignedGroupSize, transportRoundTrip } from './quant';
import { Sampler } from './sampler';
import { Tokenizer } from './tokenizer';

/** Computes every query head of one layer: xb [dim] in, out [dim] (heads concatenated in head order). */
export interface HeadRunner {
  run(xb: Float32Array, pos: number, layer: number, out: Float32Array): void | Promise<void>;
  /** Starts a new session: every KV cache is emptied. */
  reset(): void | Promise<void>;
}

/** Group size for the int8 and int4 encodings of head outputs: never straddles two heads. */
export function headOutputGroupSize(g: Geometry): number {
  return alignedGroupSize(g.headSize, INT8_GROUP_SIZE);
}

/** int7 groups: a broadcast's scale per 128 values, a result's per head up to 64 (fewer scale bytes; docs/QUANTISATION.md). */
export const INT7_BROADCAST_GROUP_SIZE = 128;
export const INT7_RESULT_GROUP_LIMIT = 64;

/** Group size of a transport's broadcast body (0 for float32): 32, int7 and int7h 128. */
export function broadcastGroupSize(encoding: Encoding): number {
  return encoding === 'f32' ? 0 : encoding === 'int7' || encoding === 'int7h' ? INT7_BROADCAST_GROUP_SIZE : INT8_GROUP_SIZE;
}

/** Group size of a transport's result body (0 for float32): groups aligned to heads (int7: up to 64 values). */
export function resultGroupSize(g: Geometry, encoding: Encoding): number {
  return encoding === 'f32' ? 0 : encoding === 'int7' || encoding === 'int7h' ? alignedGroupSize(g.headSize, INT7_RESULT_GROUP_LIMIT) : headOutputGroupSize(g);
}

/**
 * Applies a transport (int8 unless told otherwise) to a broadcast vector or to a group's head
 * outputs: the values a receiver decodes. Broadcasts use broadcastGroupSize groups; head
 * outputs groups aligned to heads (resultGroupSize), so the encoding does not depend on how
 * heads are partitioned.
 */
export const transportCodec = {
  broadcast(xb: Float32Array, encoding: Encoding = 'int8'): void {
    transportRoundTrip(encoding, xb, broadcastGroupSize(encoding));
  },
  headOutputs(g: Geometry, out: Float32Array, encoding: Encoding = 'int8'): void {
    transportRoundTrip(encoding, out, resultGroupSize(g, encoding));
  },
};

/** Head groups in this process. */
export class LocalHeads implements HeadRunner {
  readonly groups: HeadGroup[];
  private readonly g: Geometry;
  private readonly transport: Encoding;
  private readonly rx: Float32Array;

  constructor(g: Geometry, groups: HeadGroup[], transport: Encoding) {
    this.g = g;
    this.groups = groups;
    this.transport = transport;
    this.rx = new Float32Array(g.dim);
  }

  run(xb: Float32Array, pos: number, layer: number, out: Float32Array): void {
    const hs = this.g.headSize;
    this.rx.set(xb);
    if (this.transport !== 'f32') transportCodec.broadcast(this.rx, this.transport);
    for (const group of this.groups) {
      const y = group.forward(this.rx, pos, layer);
      if (this.transport !== 'f32') transportCodec.headOutputs(this.g, y, this.transport);
      // head i of the group is head h of the model
      for (let i = 0; i < group.heads.length; i++) {
        const h = group.heads[i];
        for (let d = 0; d < hs; d++) out[h * hs + d] = y[i * hs + d];
      }
    }
  }

  reset(): void {
    for (const group of this.groups) group.reset();
  }
}

/** One forward pass at one position: the hidden state through every layer, then (optionally) the logits. */
export async function forward(gateway: Gateway, heads: HeadRunner, token: number, pos: number, headOut: Float32Array, wantLogits = true): Promise<Float32Array | null> {
  const x = gateway.embed(token);
  for (let layer = 0; layer < gateway.g.nLayers; layer++) {
    const xb = gateway.attentionInput(x, layer);
    await heads.run(xb, pos, layer, headOut);
    gateway.aggregate(x, headOut, layer);
    gateway.ffn(x, layer);
  }
  return wantLogits ? gateway.logits(x) : null;
}

export interface GenerateOptions {
  prompt: string;
  /** Positions to run, prompt included, as llama2.c's -n; 0 means seq_len, more is refused. */
  steps: number;
  temperature: number;
  topP: number;
  seed: bigint;
}

export interface GenerationResult {
  /** BOS first, then every token fed or sampled. */
  tokens: number[];
  text: string;
  tokensPerSecond: number;
  seconds: number;
}

/** Called with each new token and the bytes run.c would print for it. */
export type TokenListener = (token: number, piece: Buffer, pos: number, logits?: Float32Array | null) => void;

/** Sampling temperatures a generation takes: 0 is greedy; above 2 the text is noise. */
export const TEMPERATURE_RANGE = { min: 0, max: 2 } as const;

/**
 * The options as a generation runs them, or an InputError naming the value and its range:
 * steps 0 means the whole context; steps beyond the context are refused, not cut.
 */
export function validateGenerateOptions(o: GenerateOptions, seqLen: number): GenerateOptions {
  if (!Number.isInteger(o.steps) || o.steps < 0) throw new InputError(`steps ${o.steps}: expected a whole number from 0 to ${seqLen} (0 = the model's whole context)`);
  if (o.steps > seqLen) throw new InputError(`steps ${o.steps} is beyond the model's context of ${seqLen} positions (0 = all of them)`);
  const { min, max } = TEMPERATURE_RANGE;
  if (!Number.isFinite(o.temperature) || o.temperature < min || o.temperature > max) throw new InputError(`temperature ${o.temperature}: expected a number from ${min} to ${max} (0 = greedy)`);
  if (!Number.isFinite(o.topP) || o.topP < 0 || o.topP > 1) throw new InputError(`top-p ${o.topP}: expected a number from 0 to 1`);
  const steps = o.steps === 0 ? seqLen : o.steps;
  const seed = o.seed > 0n ? o.seed : BigInt(Date.now());
  return { ...o, steps, seed };
}

/** The prompt must fit the positions the generation runs, with room for one sampled token. */
function checkPromptFits(promptTokens: number, steps: number, seqLen: number): void {
  if (promptTokens > seqLen) throw new InputError(`the prompt is ${promptTokens} tokens (BOS included); the model's context is ${seqLen} positions`);
  if (promptTokens > steps) throw new InputError(`the prompt is ${promptTokens} tokens (BOS included), more than the ${steps} steps to run, so nothing would be generated: raise steps (at most ${seqLen})`);
}

/**
 * The state of one generation, advanced one position at a time as run.c does: the prompt is
 * fed token by token, then tokens are sampled; it ends after `steps` positions or when BOS is
 * sampled. The loop below and the Node-RED token loop both drive it.
 */
export class Generation {
  readonly options: GenerateOptions;
  /** Prompt tokens, BOS first. */
  readonly prompt: number[];
  /** BOS first, then every token fed or sampled. */
  readonly tokens: number[];
  /** The token to feed at `pos`. */
  token: number;
  pos = 0;
  done = false;
  private readonly sampler: Sampler;
  private readonly pieces: Buffer[] = [];
  private readonly tokenizer: Tokenizer;
  private readonly startNs = process.hrtime.bigint();

  constructor(tokenizer: Tokenizer, options: GenerateOptions, seqLen: number) {
    this.options = validateGenerateOptions(options, seqLen);
    this.tokenizer = tokenizer;
    this.prompt = tokenizer.encode(this.options.prompt, true, false);
    checkPromptFits(this.prompt.length, this.options.steps, seqLen);
    this.sampler = new Sampler({ temperature: this.options.temperature, topP: this.options.topP, seed: this.options.seed });
    this.token = this.prompt[0];
    this.tokens = [this.token];
    this.done = this.options.steps === 0;
  }

  /** Tokens of positions 1..k recorded by an interrupted run of the same request, fed again (resume). */
  private recorded: readonly number[] = [];

  /** False while the prompt (or a resumed run's recorded tokens) is being fed: the logits of this position are not used. */
  get needsLogits(): boolean {
    return this.pos >= Math.max(this.prompt.length - 1, this.recorded.length);
  }

  /**
   * Resumes an interrupted run: `recorded` are its tokens at positions 1..k (prompt tokens
   * first). They are fed as the prompt is (the KV caches fill again) and the sampler's random
   * stream moves on for each sampled one, so the tokens after them are those of an
   * uninterrupted run. Call before the first advance.
   */
  resume(recorded: readonly number[]): void {
    if (this.pos !== 0) throw new Error('resume() comes before the first position');
    if (recorded.length >= this.options.steps) throw new InputError(`a resumed run has ${recorded.length} recorded tokens; it runs ${this.options.steps} positions`);
    for (let i = 0; i < Math.min(recorded.length, this.prompt.length - 1); i++) {
      if (recorded[i] !== this.prompt[i + 1]) throw new InputError(`the recorded token ${recorded[i]} at position ${i + 1} is not the prompt's ${this.prompt[i + 1]} (the tokenizer changed?)`);
    }
    this.recorded = recorded;
  }

  /**
   * Takes the logits computed at `pos` (null while feeding the prompt) and moves to the next
   * position. Returns the new token and the bytes run.c prints for it, or null at the end.
   */
  advance(logits: Float32Array | null): { token: number; piece: Buffer } | null {
    if (this.done) throw new Error('the generation has ended');
    const next = this.pos < this.recorded.length ? this.replay() : this.needsLogits ? this.sampler.sample(logits as Float32Array) : this.prompt[this.pos + 1];
    this.pos++;
    if (next === BOS) {
      this.done = true;
      return null;
    }
    const piece = this.tokenizer.decodePiece(this.token, next);
    this.pieces.push(piece);
    this.tokens.push(next);
    this.token = next;
    if (this.pos >= this.options.steps) this.done = true;
    return { token: next, piece };
  }

  /** The recorded token of the next position; a sampled one moves the sampler on as sampling it did. */
  private replay(): number {
    if (this.pos >= this.prompt.length - 1) this.sampler.skip();
    return this.recorded[this.pos];
  }

  result(): GenerationResult {
    const seconds = Number(process.hrtime.bigint() - this.startNs) / 1e9;
    const text = Buffer.concat(this.pieces).toString('utf8');
    return { tokens: [...this.tokens], text, tokensPerSecond: seconds > 0 ? (this.tokens.length - 1) / seconds : 0, seconds };
  }
}

/**
 * run.c's generation loop over any HeadRunner. onToken gets every token fed or sampled (with
 * the logits it was sampled from; null while the prompt is fed); onStart the generation, once
 * its session is open and before the first forward pass.
 */
export async function generate(gateway: Gateway, heads: HeadRunner, tokenizer: Tokenizer, options: GenerateOptions, onToken?: TokenListener, onStart?: (gen: Generation) => void): Promise<GenerationResult> {
  const headOut = new Float32Array(gateway.g.dim);
  await heads.reset();
  const gen = new Generation(tokenizer, options, gateway.g.seqLen);
  onStart?.(gen);
  while (!gen.done) {
    const logits = await forward(gateway, heads, gen.token, gen.pos, headOut, gen.needsLogits);
    const out = gen.advance(logits);
    if (out) onToken?.(out.token, out.piece, gen.pos, logits);
  }
  return gen.result();
}

export interface EngineOptions {
  modelPath: string;
  tokenizerPath: string;
  /** Head partition: a group count or sizes such as "2+3+3" (default: one group). */
  groups?: string | number;
  /** Head weights: int8 (with int8 transport of broadcast vectors and head outputs unless `transport` says otherwise), int4, int2 (both with int8 transport by default) or f32. */
  quant?: WeightFormat;
  /** Overrides the transport implied by `quant` (to measure weights and transport apart). */
  transport?: Encoding;
  /** Round int8/int4/int2 weights by GPTQ against these per-layer attention-input Hessians (lib/llm/calibration.ts) instead of to nearest. */
  gptqHessians?: readonly Float64Array[];
}

/** The whole model in one process, with its heads cut into groups. */
export class Engine {
  readonly g: Geometry;
  readonly gateway: Gateway;
  readonly heads: LocalHeads;
  readonly tokenizer: Tokenizer;
  readonly checkpoint: Checkpoint['info'];

  private constructor(g: Geometry, gateway: Gateway, heads: LocalHeads, tokenizer: Tokenizer, info: Checkpoint['info']) {
    this.g = g;
    this.gateway = gateway;
    this.heads = heads;
    this.tokenizer = tokenizer;
    this.checkpoint = info;
  }

  static load(o: EngineOptions): Engine {
    const ckpt = Checkpoint.open(o.modelPath);
    try {
      const g = geometry(ckpt.info.config);
      const tokenizer = Tokenizer.load(o.tokenizerPath, g.vocabSize);
      const quant = o.quant ?? 'f32';
      const factors = o.gptqHessians && quant !== 'f32' ? o.gptqHessians.map((h) => gptqInverseFactor(h, g.dim)) : undefined;
      const groups = partitionHeads(g.nHeads, o.groups ?? 1).map((heads) => new HeadGroup(g, loadHeadSlices(ckpt, g, heads, quant, undefined, factors)));
      const gateway = Gateway.load(ckpt);
      const transport = o.transport ?? (quant === 'f32' ? 'f32' : 'int8');
      return new Engine(g, gateway, new LocalHeads(g, groups, transport), tokenizer, ckpt.info);
    } finally {
      ckpt.close();
    }
  }

  generate(options: GenerateOptions, onToken?: TokenListener): Promise<GenerationResult> {
    return generate(this.gateway, this.heads, this.tokenizer, options, onToken);
  }

  /** Logits after feeding `tokens` in order (teacher forcing), one copy per position. */
  async teacherForce(tokens: readonly number[]): Promise<Float32Array[]> {
    const headOut = new Float32Array(this.g.dim);
    await this.heads.reset();
    const out: Float32Array[] = [];
    for (let pos = 0; pos < tokens.length; pos++) {
      const logits = (await forward(this.gateway, this.heads, tokens[pos], pos, headOut)) as Float32Array;
      out.push(logits.slice());
    }
    return out;
  }
}
