/**
 * How a node's push varies with position: full while the stimulus is new, then relaxing to a
 * floor (steering.json `envelope`). A push that is the same at every position drives the
 * model into loops once it is strong (docs/STEERING.md, section 8): the same offset at every
 * step keeps favouring the same continuation. The envelope keeps the full push for `hold`
 * positions after the readings are set (position 0 of the generation), then lets it fall
 * exponentially with a time constant of `release` positions to `floor` of itself, which
 * stays as long as the readings do. The gateway applies it (attribution.ts,
 * CounterfactualHeads): the nodes keep adding their constant vectors, and the gateway takes
 * the part the envelope leaves out back out of the gathered head outputs.
 */
import { MeshLlmError } from '../llm/errors';

export interface PushEnvelope {
  /** Positions at full push from position 0. */
  hold: number;
  /** Time constant (positions) of the fall after the hold. */
  release: number;
  /** Share of the push that stays, in [0, 1]. */
  floor: number;
}

/** The share of the push applied at `pos` (1 without an envelope). */
export function envelopeFactor(e: PushEnvelope | undefined, pos: number): number {
  if (!e || pos < e.hold) return 1;
  return Math.max(e.floor, Math.exp(-(pos - e.hold) / e.release));
}

/** Checks an envelope from a settings file; errors name the file and the field. */
export function checkEnvelope(file: string, e: PushEnvelope): PushEnvelope {
  if (!Number.isInteger(e.hold) || e.hold < 0) throw new MeshLlmError(`steering file ${file}: envelope.hold must be a whole number of positions >= 0`);
  if (!(e.release > 0)) throw new MeshLlmError(`steering file ${file}: envelope.release must be a positive number of positions`);
  if (!(e.floor >= 0 && e.floor <= 1)) throw new MeshLlmError(`steering file ${file}: envelope.floor must be in [0, 1]`);
  return e;
}
