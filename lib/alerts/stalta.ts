/**
 * STA/LTA as ObsPy defines it (obspy.signal.trigger): the characteristic functions
 * classic_sta_lta and recursive_sta_lta over the squared samples, and trigger_onset's on/off
 * state machine. Each is given twice: over a whole trace (what the tests compare with ObsPy's
 * formulas) and one sample at a time (what the detectors run), and the two agree sample for
 * sample.
 */

/** The smallest positive double, which ObsPy puts in place of a zero LTA (numpy's finfo(0.0).tiny). */
export const DOUBLE_TINY = 2.2250738585072014e-308;

/** A streaming characteristic function over windows of nsta and nlta samples (1 <= nsta < nlta). */
abstract class StaLta {
  constructor(
    readonly nsta: number,
    readonly nlta: number,
  ) {
    if (!Number.isInteger(nsta) || !Number.isInteger(nlta) || nsta < 1 || nlta <= nsta) throw new RangeError(`STA/LTA windows must be whole sample counts with 1 <= nsta < nlta (got nsta ${nsta}, nlta ${nlta})`);
  }

  /** Takes the next sample and returns the characteristic function at it. */
  abstract push(x: number): number;
}

/**
 * Classic STA/LTA, streaming. STA is the mean of the last nsta squared samples and LTA the mean
 * of the last nlta; the ratio is 0 until nlta samples have been seen (ObsPy pads the first
 * nlta - 1 values with zeros), and a zero LTA is replaced by DOUBLE_TINY.
 */
export class ClassicStaLta extends StaLta {
  private readonly squares: number[] = [];
  private staSum = 0;
  private ltaSum = 0;
  private seen = 0;

  push(x: number): number {
    const sq = x * x;
    this.squares.push(sq);
    this.staSum += sq;
    this.ltaSum += sq;
    const n = this.squares.length;
    if (n > this.nsta) this.staSum -= this.squares[n - 1 - this.nsta];
    if (n > this.nlta) this.ltaSum -= this.squares.shift() as number;
    this.seen++;
    if (this.seen < this.nlta) return 0;
    const lta = Math.max(this.ltaSum / this.nlta, DOUBLE_TINY);
    return this.staSum / this.nsta / lta;
  }
}

/**
 * Recursive STA/LTA (Withers et al. 1998), streaming, as ObsPy's recursive_sta_lta:
 * sta = sq/nsta + (1 - 1/nsta) sta, lta = sq/nlta + (1 - 1/nlta) lta from the second sample on
 * (the first sample is left out of both averages), starting from sta = 0 and lta = DOUBLE_TINY;
 * the ratio is 0 for the first nlta samples.
 */
export class RecursiveStaLta extends StaLta {
  private sta = 0;
  private lta = DOUBLE_TINY;
  private index = -1;

  push(x: number): number {
    this.index++;
    if (this.index === 0) return 0;
    const sq = x * x;
    const csta = 1 / this.nsta;
    const clta = 1 / this.nlta;
    this.sta = csta * sq + (1 - csta) * this.sta;
    this.lta = clta * sq + (1 - clta) * this.lta;
    return this.index < this.nlta ? 0 : this.sta / this.lta;
  }
}

/** A characteristic function over a whole trace, sample by sample with a streaming one. */
function overTrace(trace: readonly number[], f: StaLta): number[] {
  return trace.map((x) => f.push(x));
}

export const classicStaLta = (trace: readonly number[], nsta: number, nlta: number): number[] => overTrace(trace, new ClassicStaLta(nsta, nlta));
export const recursiveStaLta = (trace: readonly number[], nsta: number, nlta: number): number[] => overTrace(trace, new RecursiveStaLta(nsta, nlta));

/** What one step of a trigger did. */
export type TriggerStep = 'onset' | 'end' | null;

/**
 * trigger_onset's state machine, one value at a time, with hysteresis.
 *
 *   idle --(value > on)--> active          onset: this sample
 *   active --(value <= off)--> idle        end: the last sample whose value was above off
 *
 * While active, values above `on` again do not start a new trigger (ObsPy's picks never
 * overlap). `on` >= `off` is the caller's to check (settings.ts).
 */
export class Trigger {
  active = false;
  /** Index and time of the onset of the trigger in progress (or of the last one). */
  onsetIndex = -1;
  onsetAt = 0;
  /** Index and time of the last sample above `off` while active: the trigger's end once it closes. */
  lastAboveIndex = -1;
  lastAboveAt = 0;
  /** Largest value seen while active. */
  peak = -Infinity;
  private index = -1;
  constructor(
    readonly on: number,
    readonly off: number,
  ) {}

  step(value: number, at: number): TriggerStep {
    this.index++;
    if (!this.active) {
      if (!(value > this.on)) return null;
      this.active = true;
      this.onsetIndex = this.lastAboveIndex = this.index;
      this.onsetAt = this.lastAboveAt = at;
      this.peak = value;
      return 'onset';
    }
    if (value > this.off) {
      this.lastAboveIndex = this.index;
      this.lastAboveAt = at;
      this.peak = Math.max(this.peak, value);
      return null;
    }
    this.active = false;
    return 'end';
  }
}

/**
 * trigger_onset over a whole characteristic function: [onset, end] sample indices of each
 * trigger, where end is the last sample above `off`; a trigger still on at the end of the trace
 * ends at its last sample (ObsPy's default, max_len_delete False).
 */
export function triggerOnset(cft: readonly number[], on: number, off: number): [number, number][] {
  const t = new Trigger(on, off);
  const picks: [number, number][] = [];
  cft.forEach((v, i) => {
    if (t.step(v, i) === 'end') picks.push([t.onsetIndex, t.lastAboveIndex]);
  });
  if (t.active) picks.push([t.onsetIndex, cft.length - 1]);
  return picks;
}
