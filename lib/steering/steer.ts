/**
 * Steering a model whose heads are cut into nodes: every node's share of every channel's
 * direction (shares.ts), turned into the vector the node adds to its head outputs from its own
 * normalised readings, and set on the head groups of the monolithic engine.
 */
import { Geometry } from '../llm/config';
import { LocalHeads } from '../llm/engine';
import { Gateway } from '../llm/gateway';
import { HeadSteering } from '../llm/head';
import { SteeringData } from './directions';
import { NodeSteering } from './attribution';
import { PushEnvelope } from './envelope';
import { NodeHeads, NodeShare, nodeSteeringVector, residualOf, splitDirections } from './shares';
import { safeReading } from '../llm/steering-vector';

/** Normalised readings in [-1, 1] per node and channel: node -> channel -> reading. */
export type NodeReadings = Record<string, Record<string, number>>;

/** Node ids of the monolithic engine's groups: node-1, node-2, ... in group order (as `generate --mesh` names them). */
export function localNodes(heads: LocalHeads): NodeHeads[] {
  return heads.groups.map((group, i) => ({ node: `node-${i + 1}`, heads: [...group.heads] }));
}

/** A push over its budget by less than this (relative) is left alone: a channel whose norm is the budget keeps exactly its vectors despite float rounding of the norm. */
const BUDGET_TOLERANCE = 1e-6;

export class Steering {
  readonly layer: number;
  readonly shares: NodeShare[];
  readonly channels: string[];
  /** Norm budget of the combined push per unit of alpha (steering.json `budget`); Infinity: none. */
  readonly budget: number;
  /** How the push varies with position (steering.json `envelope`); undefined: constant. */
  readonly envelope: PushEnvelope | undefined;
  /** node -> channel -> the residual-stream vector [dim] the node's share of that channel writes. */
  private readonly residualShares: Map<string, Record<string, Float64Array>>;
  private readonly dim: number;

  constructor(g: Geometry, gateway: Gateway, data: SteeringData, nodes: readonly NodeHeads[]) {
    this.layer = data.settings.layer;
    this.channels = data.channels.map((c) => c.channel);
    this.budget = data.settings.budget ?? Infinity;
    this.envelope = data.settings.envelope;
    this.dim = g.dim;
    const directions = Object.fromEntries(data.channels.map((c) => [c.channel, c.vector]));
    const wo = gateway.weights.wo[this.layer];
    this.shares = splitDirections(g, wo, this.layer, nodes, directions);
    this.residualShares = new Map(this.shares.map((s) => [s.node, Object.fromEntries(Object.entries(s.channels).map(([c, v]) => [c, residualOf(g, wo, s.heads, v)]))]));
  }

  /** |sum over nodes and channels of reading * residual share|: how far the readings move the residual stream per unit of alpha. */
  pushNorm(readings: NodeReadings): number {
    const sum = new Float64Array(this.dim);
    for (const [node, channels] of this.residualShares) {
      for (const [c, v] of Object.entries(channels)) {
        const r = safeReading(readings[node]?.[c]);
        if (r !== 0) for (let i = 0; i < this.dim; i++) sum[i] += r * v[i];
      }
    }
    return Math.hypot(...sum);
  }

  /**
   * The alpha the nodes apply for these readings: `alpha`, scaled down so the combined push
   * is no longer than |alpha| * budget (several channels on many nodes add up; one channel
   * at full reading on every node stays inside the budget when its norm does).
   */
  alphaFor(readings: NodeReadings, alpha: number): number {
    const n = this.pushNorm(readings);
    return n > this.budget * (1 + BUDGET_TOLERANCE) ? (alpha * this.budget) / n : alpha;
  }

  /** What each node adds to its head outputs at `layer`, from its readings (a node without readings adds zeros), inside the budget. */
  vectors(readings: NodeReadings, alpha: number): Map<string, HeadSteering> {
    const a = this.alphaFor(readings, alpha);
    return new Map(this.shares.map((s) => [s.node, { layer: this.layer, vector: nodeSteeringVector(s, readings[s.node] ?? {}, a) }]));
  }

  /** Every node's steering as the gateway's attribution and envelope need it (the vectors of `vectors`). */
  steeredNodes(readings: NodeReadings, alpha: number): NodeSteering[] {
    const vectors = this.vectors(readings, alpha);
    return this.shares.map((s) => ({ node: s.node, heads: s.heads, steering: vectors.get(s.node)!, envelope: this.envelope }));
  }

  /** Sets every local group's steering (group i is node-{i+1}). */
  apply(heads: LocalHeads, readings: NodeReadings, alpha: number): Map<string, HeadSteering> {
    const vectors = this.vectors(readings, alpha);
    localNodes(heads).forEach(({ node }, i) => (heads.groups[i].steering = vectors.get(node) ?? null));
    return vectors;
  }
}

/** Removes all steering from the local groups. */
export function clearSteering(heads: LocalHeads): void {
  for (const group of heads.groups) group.steering = null;
}

/** The same reading of every channel on every node (a stimulus the whole mesh feels). */
export function uniformReadings(nodes: readonly NodeHeads[], readings: Record<string, number>): NodeReadings {
  return Object.fromEntries(nodes.map((n) => [n.node, { ...readings }]));
}
