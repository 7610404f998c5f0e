/**
 * The vector a head group adds to its head outputs when it is steered (the seed's
 * head_output = attention + alpha * steering): alpha * sum over sensor channels of
 * reading_c * share_c, where share_c is the group's block of channel c's direction. Both the
 * gateway side (lib/steering) and a head node (lib/mesh/node.ts) compute it with this.
 */

/** A normalised reading as steering uses it: finite and in [-1, 1], anything else neutral (0). */
export function safeReading(r: unknown): number {
  return typeof r === 'number' && Number.isFinite(r) ? Math.max(-1, Math.min(1, r)) : 0;
}

/**
 * alpha * sum_c reading_c * share_c [width]. Channels without a reading (or with a bad one)
 * contribute nothing; sums in double precision, rounded to float32 once.
 */
export function steeringVector(width: number, shares: Readonly<Record<string, Float32Array>>, readings: Readonly<Record<string, number>>, alpha: number): Float32Array {
  const out = new Float64Array(width);
  const a = Number.isFinite(alpha) ? alpha : 0;
  for (const [channel, v] of Object.entries(shares)) {
    const r = safeReading(readings[channel]);
    if (r === 0) continue;
    for (let i = 0; i < v.length; i++) out[i] += a * r * v[i];
  }
  return Float32Array.from(out);
}
