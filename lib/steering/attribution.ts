/**
 * Attribution: which node's steering moved the next-token distribution. For every sampled
 * token the gateway also computes the distribution without one node's steering, for each
 * node in turn (it subtracts that node's vector from the gathered head outputs at the steered
 * layer; the node itself is not asked anything), and reports KL(steered || without node n).
 * The node with the largest divergence is the one most responsible for the deviation.
 */
import { Geometry } from '../llm/config';
import { GenerateOptions, GenerationResult, Generation, HeadRunner, TokenListener, forward } from '../llm/engine';
import { Gateway } from '../llm/gateway';
import { HeadSteering } from '../llm/head';
import { Tokenizer } from '../llm/tokenizer';
import { probabilities } from '../llm/fidelity';
import { PushEnvelope, envelopeFactor } from './envelope';

export interface NodeAttribution {
  node: string;
  /** KL(steered || steered without this node's steering), nats. */
  kl: number;
}

export interface TokenAttribution {
  pos: number;
  /** KL(steered || unsteered): how far all the nodes' steering together moved the distribution, nats. */
  kl: number;
  token: number;
  piece: string;
  /** One entry per steered node, largest divergence first. */
  nodes: NodeAttribution[];
  /** The node most responsible, or null when no node moved the distribution at all. */
  top: string | null;
}

/** KL(p || q) in nats for two distributions. */
export function kl(p: Float64Array, q: Float64Array): number {
  let sum = 0;
  for (let i = 0; i < p.length; i++) if (p[i] > 0) sum += p[i] * Math.log(p[i] / Math.max(q[i], 1e-300));
  return Math.max(0, sum);
}

/** A node's steering as the gateway knows it: its heads, the vector it adds, and how the push varies with position. */
export interface NodeSteering {
  node: string;
  heads: readonly number[];
  steering: HeadSteering;
  /** Absent: the whole vector at every position. */
  envelope?: PushEnvelope;
}

/**
 * Wraps the runner of the steered heads and corrects what they return at the steered layer:
 * the part of each node's vector its envelope leaves out at this position is taken back out,
 * and while `without` names a node, all of that node's steering is.
 */
/** `without` naming every node: the distribution with no steering at all. */
export const ALL_NODES = '*';

export class CounterfactualHeads implements HeadRunner {
  /** A node whose steering is taken out (ALL_NODES: every node's), or null. */
  without: string | null = null;

  constructor(
    private readonly inner: HeadRunner,
    private readonly g: Geometry,
    private readonly nodes: readonly NodeSteering[],
  ) {}

  async run(xb: Float32Array, pos: number, layer: number, out: Float32Array): Promise<void> {
    await this.inner.run(xb, pos, layer, out);
    const hs = this.g.headSize;
    for (const n of this.nodes) {
      if (n.steering.layer !== layer) continue;
      const removed = n.node === this.without || this.without === ALL_NODES ? 1 : 1 - envelopeFactor(n.envelope, pos);
      if (removed === 0) continue;
      n.heads.forEach((h, i) => {
        for (let d = 0; d < hs; d++) out[h * hs + d] -= removed * n.steering.vector[i * hs + d];
      });
    }
  }

  reset(): void | Promise<void> {
    return this.inner.reset();
  }
}

/**
 * The attribution of the next token at `pos`: one counterfactual pass per node (each rewrites
 * the cache rows of this position), then the real pass last, so the caches end as the
 * steered run leaves them. Returns the steered logits and the per-node divergences.
 */
export async function attributeStep(gateway: Gateway, heads: CounterfactualHeads, nodes: readonly NodeSteering[], token: number, pos: number, headOut: Float32Array): Promise<{ logits: Float32Array; nodes: NodeAttribution[]; kl: number }> {
  const without: { node: string; p: Float64Array }[] = [];
  for (const n of [...nodes.map((n) => n.node), ALL_NODES]) {
    heads.without = n;
    without.push({ node: n, p: probabilities((await forward(gateway, heads, token, pos, headOut)) as Float32Array) });
  }
  heads.without = null;
  const logits = (await forward(gateway, heads, token, pos, headOut)) as Float32Array;
  const p = probabilities(logits);
  const unsteered = without.pop() as { p: Float64Array };
  const ranked = without.map((w) => ({ node: w.node, kl: kl(p, w.p) })).sort((a, b) => b.kl - a.kl);
  return { logits, nodes: ranked, kl: kl(p, unsteered.p) };
}

/** Smallest divergence (nats) that counts as a deviation worth naming a node for. */
export const ATTRIBUTION_FLOOR = 1e-9;

export type AttributionListener = (a: TokenAttribution) => void;

/**
 * run.c's generation loop with attribution of every sampled token. `inner` is the runner
 * the nodes' steering is applied in (their vectors are in `nodes`). onToken gets each sampled
 * token's attribution; onPiece every token fed or sampled, as generate's listener does.
 */
export async function generateWithAttribution(
  gateway: Gateway,
  inner: HeadRunner,
  tokenizer: Tokenizer,
  nodes: readonly NodeSteering[],
  options: GenerateOptions,
  onToken?: AttributionListener,
  onPiece?: TokenListener,
  onStart?: (gen: Generation) => void,
): Promise<GenerationResult & { attributions: TokenAttribution[] }> {
  const heads = new CounterfactualHeads(inner, gateway.g, nodes);
  const headOut = new Float32Array(gateway.g.dim);
  await heads.reset();
  const gen = new Generation(tokenizer, options, gateway.g.seqLen);
  onStart?.(gen);
  const attributions: TokenAttribution[] = [];
  while (!gen.done) {
    const sampled = gen.needsLogits;
    let logits: Float32Array | null;
    let ranked: NodeAttribution[] = [];
    let moved = 0;
    if (sampled) ({ logits, nodes: ranked, kl: moved } = await attributeStep(gateway, heads, nodes, gen.token, gen.pos, headOut));
    else logits = await forward(gateway, heads, gen.token, gen.pos, headOut, false);
    const out = gen.advance(logits);
    if (out) onPiece?.(out.token, out.piece, gen.pos, logits);
    if (!out || !sampled) continue;
    const a: TokenAttribution = { pos: gen.pos, kl: moved, token: out.token, piece: out.piece.toString('utf8'), nodes: ranked, top: ranked.length && ranked[0].kl > ATTRIBUTION_FLOOR ? ranked[0].node : null };
    attributions.push(a);
    onToken?.(a);
  }
  return { ...gen.result(), attributions };
}
