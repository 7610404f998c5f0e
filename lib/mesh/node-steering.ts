/**
 * The head node's side of steering: a steering message (schemas/steering.json, made by
 * lib/steering) turned into the vector the node's HeadGroup adds to its head outputs.
 */
import { HeadSteering } from '../llm/head';
import { steeringVector } from '../llm/steering-vector';
import { SteeringMessage } from './wire';

/**
 * Node side: the vector a node with heads `heads` adds, from a steering message; or the
 * reason the message does not fit the node (other heads, wrong lengths, a layer the model
 * does not have).
 */
export function steeringFromMessage(m: SteeringMessage, heads: readonly number[], headSize: number, nLayers: number): HeadSteering | string {
  if (m.heads.length !== heads.length || m.heads.some((h, i) => h !== heads[i])) return `steering ${m.id} is for heads [${m.heads.join(',')}], this node computes [${heads.join(',')}]`;
  if (m.layer >= nLayers) return `steering ${m.id}: layer ${m.layer} does not exist (the model has ${nLayers})`;
  const width = heads.length * headSize;
  const bad = m.channels.find((c) => c.share.length !== width);
  if (bad) return `steering ${m.id}: channel ${bad.name} carries ${bad.share.length} values, this node's heads need ${width}`;
  const shares = Object.fromEntries(m.channels.map((c) => [c.name, Float32Array.from(c.share)]));
  const readings = Object.fromEntries(m.channels.map((c) => [c.name, c.reading]));
  return { layer: m.layer, vector: steeringVector(width, shares, readings, m.alpha) };
}

