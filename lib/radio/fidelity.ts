/**
 * The measured fidelity of each weight format and transport (lib/radio/fidelity-table.json,
 * written by `npm run bench:fidelity`: stories260K teacher-forced over the golden story and
 * four held-out stories the float32 model wrote). The planner and the LoRa benchmark read it;
 * TinyLlama's own fidelity is not measured here (its weights are not on this machine), so the
 * figures are the small model's, as docs/QUANTISATION.md says.
 */
import { MeshLlmError } from '../llm/errors';
import { Encoding, WeightFormat } from '../llm/quant';
import table from './fidelity-table.json';

export interface MeasuredFidelity {
  weights: WeightFormat;
  transport: Encoding;
  positions: number;
  top1Agreement: number;
  meanKl: number;
  maxKl: number;
  perplexity: number;
}

export const FIDELITY_TABLE: { model: string; measuredBy: string; referencePerplexity: number; rows: MeasuredFidelity[] } = table as typeof FIDELITY_TABLE;

/** The measured row of a weight format and transport. */
export function measuredFidelity(weights: WeightFormat, transport: Encoding): MeasuredFidelity {
  const row = FIDELITY_TABLE.rows.find((r) => r.weights === weights && r.transport === transport);
  if (!row) throw new MeshLlmError(`no measured fidelity for ${weights} weights with ${transport} transport (run npm run bench:fidelity)`);
  return row;
}
