/**
 * The radio's clock as modems and concentrators state it: a free-running 32-bit microsecond
 * counter (Semtech's `tmst`), which wraps every 71.6 minutes. The bridge and the radio share
 * the simulation's clock; a timestamp is that clock in microseconds, modulo 2^32, and is read
 * back as the instant nearest to now with those low 32 bits.
 */
const WRAP = 2 ** 32;

export function toTimestampUs(ms: number): number {
  return Math.round(ms * 1000) % WRAP >>> 0;
}

export function fromTimestampUs(tmst: number, nowMs: number): number {
  const nowUs = Math.round(nowMs * 1000);
  let delta = (tmst - (nowUs % WRAP) + WRAP) % WRAP;
  if (delta >= WRAP / 2) delta -= WRAP;
  return (nowUs + delta) / 1000;
}

/** One tick of the counter, ms: a time read back from a timestamp may be this much early. */
export const TIMESTAMP_RESOLUTION_MS = 0.001;

/**
 * The start a radio uses for a timestamp: the instant it names, or the radio's earliest
 * allowed start when that is less than one tick later (the timestamp rounded it down).
 */
export function startFor(atMs: number, earliestMs: number): number {
  return earliestMs > atMs && earliestMs - atMs <= TIMESTAMP_RESOLUTION_MS ? earliestMs : atMs;
}
