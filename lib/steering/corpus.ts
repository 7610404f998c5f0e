/**
 * The corpus steering directions are computed on: stories the unsteered model writes itself,
 * the same on every run (steering/steering.json `corpus`), with the residual stream kept where
 * the nodes' steering enters.
 */
import { Engine, Generation } from '../llm/engine';

/** How the gateway samples the corpus directions are computed on (story i: prompt i mod n, seed + i). */
export interface CorpusSettings {
  prompts: string[];
  /** Number of stories. */
  stories: number;
  /** Positions per story, prompt included (as generate's steps). */
  steps: number;
  temperature: number;
  topP: number;
  seed: number;
}

/** One story of the corpus: its tokens (BOS first) and the residual stream at every position but the last [positions * dim]. */
export interface CorpusStory {
  tokens: number[];
  residuals: Float32Array;
}

/**
 * The model writes the corpus (unsteered, as `generate` would with these settings) and the
 * residual stream right after `layer`'s attention output is kept at every position: story i
 * starts from prompt i mod n with seed + i. Calls `each` with every story as it is written;
 * `range` limits it to stories from .. to-1 (a share of the corpus for one thread).
 */
export async function sampleCorpus(engine: Engine, corpus: CorpusSettings, layer: number, each: (story: CorpusStory) => void, range = { from: 0, to: corpus.stories }): Promise<void> {
  const { gateway, heads, g } = engine;
  const headOut = new Float32Array(g.dim);
  for (let i = range.from; i < range.to; i++) {
    const options = { prompt: corpus.prompts[i % corpus.prompts.length], steps: corpus.steps, temperature: corpus.temperature, topP: corpus.topP, seed: BigInt(corpus.seed + i) };
    const gen = new Generation(engine.tokenizer, options, g.seqLen);
    const residuals = new Float32Array(gen.options.steps * g.dim);
    await heads.reset();
    while (!gen.done) {
      const x = gateway.embed(gen.token);
      for (let l = 0; l < g.nLayers; l++) {
        const xb = gateway.attentionInput(x, l);
        await heads.run(xb, gen.pos, l, headOut);
        gateway.aggregate(x, headOut, l);
        if (l === layer) residuals.set(x, gen.pos * g.dim);
        gateway.ffn(x, l);
      }
      gen.advance(gen.needsLogits ? gateway.logits(x) : null);
    }
    each({ tokens: gen.tokens, residuals: residuals.subarray(0, (gen.tokens.length - 1) * g.dim) });
    await new Promise((resolve) => setImmediate(resolve)); // let the event loop run (worker threads' progress) between stories
  }
}

/**
 * The residual stream right after `layer`'s attention output is added, at positions `from` ..
 * tokens.length - 1 of `tokens` (BOS first). From 0 (the default) the head caches start empty;
 * from a later position they must already hold tokens[0 .. from - 1] up to `layer` (a
 * continuation of what ran before). Steering on the engine's heads, if any, is part of what is
 * captured.
 */
export async function residualsAfterAttention(engine: Engine, tokens: readonly number[], layer: number, from = 0): Promise<Float32Array[]> {
  const { gateway, heads } = engine;
  const headOut = new Float32Array(engine.g.dim);
  const out: Float32Array[] = [];
  if (from === 0) await heads.reset();
  for (let pos = from; pos < tokens.length; pos++) {
    const x = gateway.embed(tokens[pos]);
    for (let l = 0; l <= layer; l++) {
      const xb = gateway.attentionInput(x, l);
      await heads.run(xb, pos, l, headOut);
      gateway.aggregate(x, headOut, l);
      if (l < layer) gateway.ffn(x, l);
    }
    out.push(x);
  }
  return out;
}
