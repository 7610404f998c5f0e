/**
 * Alert detectors over one series of timestamped values (one node's sensor channel, or its
 * per-token KL). Each is a small state machine fed one sample at a time: `update` returns a
 * Transition when an alert starts or ends, and null otherwise. The stale and offline
 * detectors watch a node rather than a value, and are fed by `observe`, `status` and `check`.
 *
 * Every value detector is the same two states behind a characteristic value c(sample):
 *
 *   idle   --(c > on)-->   active   (onset: this sample's time)
 *   active --(c <= off)--> idle     (end: the time of the last sample with c > off)
 *
 * with off <= on (settings.ts refuses anything else), so a value hovering around `on` does
 * not chatter: once on, it must fall back past `off` to end.
 */
import { robustBaseline } from '../steering/calibration';
import { KlSpikeSettings, RateSettings, StaLtaSettings, ThresholdSettings, windowSamples } from './settings';
import { ClassicStaLta, RecursiveStaLta, Trigger } from './stalta';

/** One value of a series; `at` in milliseconds. */
export interface Sample {
  at: number;
  value: number;
}

/** An alert starting or ending. `value` is the characteristic value's peak so far (for a "below" threshold: its lowest reading). */
export interface Transition {
  type: 'onset' | 'end';
  onset: number;
  end: number | null;
  value: number;
}

export interface ValueDetector {
  update(s: Sample): Transition | null;
  /** The characteristic value at the last sample (NaN before the first). */
  readonly current: number;
}

/**
 * A Trigger on a characteristic value, with the sign of what is reported: `sign` -1 runs the
 * trigger on -c with -on and -off (a "below" threshold) and reports the peak back in c's sign.
 */
class TriggeredValue {
  private readonly trigger: Trigger;
  constructor(
    on: number,
    off: number,
    private readonly sign: 1 | -1 = 1,
  ) {
    this.trigger = sign === 1 ? new Trigger(on, off) : new Trigger(-on, -off);
  }

  step(c: number, at: number): Transition | null {
    const step = this.trigger.step(this.sign * c, at);
    if (step === null) return null;
    const t = this.trigger;
    return { type: step, onset: t.onsetAt, end: step === 'end' ? t.lastAboveAt : null, value: this.sign * t.peak };
  }
}

/** A value detector whose c is computed from each sample alone (and its own history), behind one TriggeredValue. */
abstract class CharacteristicDetector implements ValueDetector {
  current = NaN;
  constructor(private readonly trigger: TriggeredValue) {}

  protected abstract characteristic(s: Sample): number;

  update(s: Sample): Transition | null {
    this.current = this.characteristic(s);
    return this.trigger.step(this.current, s.at);
  }
}

/** Classic or recursive STA/LTA on a sensor channel: c = the STA/LTA ratio, on/off as trigger_onset's thresholds. */
export class StaLtaDetector extends CharacteristicDetector {
  private readonly cft: ClassicStaLta | RecursiveStaLta;
  constructor(s: StaLtaSettings) {
    super(new TriggeredValue(s.on, s.off));
    const nsta = windowSamples(s.sta, s.sampleRate);
    const nlta = windowSamples(s.lta, s.sampleRate);
    this.cft = s.kind === 'classic-sta-lta' ? new ClassicStaLta(nsta, nlta) : new RecursiveStaLta(nsta, nlta);
  }

  protected characteristic(s: Sample): number {
    return this.cft.push(s.value);
  }
}

/** A level with hysteresis: c = the reading; "above" alerts over `on` until at or under `off`, "below" the mirror image. */
export class ThresholdDetector extends CharacteristicDetector {
  constructor(s: ThresholdSettings) {
    super(new TriggeredValue(s.on, s.off, s.direction === 'above' ? 1 : -1));
  }

  protected characteristic(s: Sample): number {
    return s.value;
  }
}

/**
 * Rate of change: c = (newest - oldest) / their time apart, in units per second, over the
 * samples of the last `window` seconds (the oldest kept is the last one at least `window`
 * old, so a window of 1 s at 1 Hz is the change from the previous sample); for "fall" c is
 * the rate of fall (minus the rate), for "either" its size. c is 0 until two samples are in.
 */
export class RateDetector extends CharacteristicDetector {
  private readonly samples: Sample[] = [];
  constructor(private readonly s: RateSettings) {
    super(new TriggeredValue(s.on, s.off));
  }

  protected characteristic(s: Sample): number {
    const w = this.samples;
    w.push(s);
    const windowMs = this.s.window * 1000;
    while (w.length > 2 && s.at - w[1].at >= windowMs) w.shift();
    const first = w[0];
    const rate = w.length < 2 || s.at === first.at ? 0 : ((s.value - first.value) * 1000) / (s.at - first.at);
    return this.s.direction === 'either' ? Math.abs(rate) : this.s.direction === 'fall' ? -rate : rate;
  }
}

/**
 * A spike in the per-token KL series against its own running baseline. The baseline is the
 * median and MAD (× 1.4826, floored at `madFloor`) of the last `window` values taken while no
 * alert was active; c = (kl - median) / MAD, and a value under `minKl` nats counts as at most
 * `off` (it never starts an alert and ends one that is active). Nothing is reported during the
 * warm-up (the first `warmup` values). The reported value is the spike's largest KL (nats).
 */
export class KlSpikeDetector implements ValueDetector {
  current = NaN;
  private readonly baseline: number[] = [];
  private readonly trigger: TriggeredValue;
  private active = false;
  /** The largest KL (nats) of the alert in progress: what its messages report as the value. */
  private peakKl = 0;
  constructor(private readonly s: KlSpikeSettings) {
    this.trigger = new TriggeredValue(s.on, s.off);
  }

  private score(kl: number): number {
    const b = robustBaseline(this.baseline, this.s.madFloor);
    const z = (kl - b.median) / b.mad;
    return kl < this.s.minKl ? Math.min(z, this.s.off) : z;
  }

  private remember(kl: number): void {
    this.baseline.push(kl);
    if (this.baseline.length > this.s.window) this.baseline.shift();
  }

  update(s: Sample): Transition | null {
    if (this.baseline.length < this.s.warmup) {
      this.remember(s.value);
      return null;
    }
    this.current = this.score(s.value);
    const t = this.trigger.step(this.current, s.at);
    if (t?.type === 'onset') this.peakKl = s.value;
    else if (this.active) this.peakKl = Math.max(this.peakKl, s.value);
    if (t) this.active = t.type === 'onset';
    if (!this.active) this.remember(s.value);
    return t && { ...t, value: this.peakKl };
  }
}

/**
 * A node gone stale: no sample for `after` seconds.
 *
 *   fresh --(check(now), now - last >= after)--> stale   (onset: last + after)
 *   stale --(observe: a sample arrives)--> fresh          (end: the sample's arrival)
 *
 * Times are those of the watcher's clock (arrival times), not the samples' own. The reported
 * value is the seconds without a sample.
 */
export class StaleDetector {
  private last = NaN;
  private stale = false;
  constructor(private readonly afterSeconds: number) {}

  observe(at: number): Transition | null {
    const onset = this.onset;
    this.last = at;
    if (!this.stale) return null;
    this.stale = false;
    return { type: 'end', onset, end: at, value: (at - onset) / 1000 + this.afterSeconds };
  }

  check(now: number): Transition | null {
    if (this.stale || Number.isNaN(this.last) || now - this.last < this.afterSeconds * 1000) return null;
    this.stale = true;
    return { type: 'onset', onset: this.onset, end: null, value: (now - this.last) / 1000 };
  }

  private get onset(): number {
    return this.last + this.afterSeconds * 1000;
  }
}

/**
 * A node whose status says it is gone:
 *
 *   up --(status offline or failed)--> down   (onset: the status's arrival)
 *   down --(any other status)--> up           (end: its arrival)
 *
 * The reported value is 1 while down (the alert's end message repeats it).
 */
export class OfflineDetector {
  private downSince: number | null = null;

  status(state: string, at: number): Transition | null {
    const down = state === 'offline' || state === 'failed';
    if (down && this.downSince === null) {
      this.downSince = at;
      return { type: 'onset', onset: at, end: null, value: 1 };
    }
    if (!down && this.downSince !== null) {
      const onset = this.downSince;
      this.downSince = null;
      return { type: 'end', onset, end: at, value: 1 };
    }
    return null;
  }
}
