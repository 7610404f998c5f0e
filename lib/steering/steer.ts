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
import { NodeHeads, NodeShare, nodeSteeringVector, splitDirections } from './shares';

/** Normalised readings in [-1, 1] per node and channel: node -> channel -> reading. */
export type NodeReadings = Record<string, Record<string, number>>;

/** Node ids of the monolithic engine's groups: node-1, node-2, ... in group order (as `generate --mesh` names them). */
export function localNodes(heads: LocalHeads): NodeHeads[] {
  return heads.groups.map((group, i) => ({ node: `node-${i + 1}`, heads: [...group.heads] }));
}

export class Steering {
  readonly layer: number;
  readonly shares: NodeShare[];
  readonly channels: string[];

  constructor(g: Geometry, gateway: Gateway, data: SteeringData, nodes: readonly NodeHeads[]) {
    this.layer = data.settings.layer;
    this.channels = data.channels.map((c) => c.channel);
    const directions = Object.fromEntries(data.channels.map((c) => [c.channel, c.vector]));
    this.shares = splitDirections(g, gateway.weights.wo[this.layer], this.layer, nodes, directions);
  }

  /** What each node adds to its head outputs at `layer`, from its readings (a node without readings adds zeros). */
  vectors(readings: NodeReadings, alpha: number): Map<string, HeadSteering> {
    return new Map(this.shares.map((s) => [s.node, { layer: this.layer, vector: nodeSteeringVector(s, readings[s.node] ?? {}, alpha) }]));
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
