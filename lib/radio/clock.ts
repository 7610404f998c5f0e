/**
 * Time for the radio simulation. Every radio, the medium access and the links read one clock
 * in milliseconds of simulated time and set timers on it.
 *
 * VirtualClock ("instant"): simulated time jumps from one event to the next; a token that
 * takes minutes of airtime is simulated in milliseconds. Between two events it yields to the
 * event loop, so sockets and serial ports keep working; a component with real I/O in flight
 * (a frame written to a modem, a UDP datagram not yet acknowledged) holds the clock, and
 * simulated time stands still until it is released.
 *
 * RealTimeClock: simulated time follows the wall clock times a scale factor; at 1x a person
 * watches true airtime go by. Its events too run in simulated-time order, each seeing its own
 * instant as now, so a wakeup that comes late on a busy event loop changes nothing but when.
 */

export interface ClockTimer {
  cancel(): void;
}

export interface Clock {
  /** Simulated time, ms. */
  now(): number;
  /** Runs `fn` when simulated time reaches `atMs` (at once, in order, if it already has). */
  at(atMs: number, fn: () => void): ClockTimer;
  /** Stops simulated time from advancing until the returned function is called (once). */
  hold(): () => void;
  /**
   * How late, in simulated ms, a timer may run: a transmission planned for an instant this
   * much in the past is still taken as on time (0 for the virtual clock, which is never late).
   */
  readonly lateToleranceMs: number;
  /** Errors thrown by timer callbacks are reported here (default: rethrown asynchronously). */
  onError: (e: unknown) => void;
}

function rethrow(e: unknown): never {
  throw e;
}

interface Entry {
  atMs: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A binary min-heap of timers, ordered by time, then by the order they were set. */
class TimerHeap {
  private readonly items: Entry[] = [];

  get size(): number {
    return this.items.length;
  }

  push(e: Entry): void {
    const a = this.items;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(a[i], a[parent])) break;
      [a[i], a[parent]] = [a[parent], a[i]];
      i = parent;
    }
  }

  peek(): Entry | undefined {
    return this.items[0];
  }

  pop(): Entry | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l], a[m])) m = l;
        if (r < a.length && before(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}

function before(x: Entry, y: Entry): boolean {
  return x.atMs < y.atMs || (x.atMs === y.atMs && x.seq < y.seq);
}

/**
 * Timers in simulated-time order, whichever clock paces them: an event never runs before an
 * earlier one, even when a real-time clock's wakeup comes late. Holds stop events from running.
 */
abstract class EventClock implements Clock {
  abstract readonly lateToleranceMs: number;
  onError: (e: unknown) => void = rethrow;
  /** Time of the event running or last run. */
  protected t: number;
  private seq = 0;
  private holds = 0;
  private inEvent = false;
  private readonly timers = new TimerHeap();
  /** The wakeup scheduled, and for which simulated instant. */
  private wakeup: { at: number; cancel: () => void } | null = null;

  constructor(startMs: number) {
    this.t = startMs;
  }

  /** Simulated time outside events (the real-time clock follows the wall). */
  protected abstract freeNow(): number;
  /** Wall ms to wait before an event at `atMs` may run (0 or less: now). */
  protected abstract waitMs(atMs: number): number;

  now(): number {
    return this.inEvent ? this.t : Math.max(this.t, this.freeNow());
  }

  at(atMs: number, fn: () => void): ClockTimer {
    const e: Entry = { atMs: Math.max(atMs, this.t), seq: this.seq++, fn, cancelled: false };
    this.timers.push(e);
    if (this.wakeup && e.atMs < this.wakeup.at) {
      this.wakeup.cancel();
      this.wakeup = null;
    }
    this.kick();
    return { cancel: () => void (e.cancelled = true) };
  }

  hold(): () => void {
    if (this.holds++ === 0) this.held(true);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.holds === 0) this.held(false);
      this.kick();
    };
  }

  /** Told when the first hold is taken (true) and when the last is released (false). */
  protected held(_on: boolean): void {}

  /** Timers still to run. */
  get pending(): number {
    return this.timers.size;
  }

  /** Drops the wakeup scheduled and schedules again (the pace of simulated time changed). */
  protected rearm(): void {
    this.wakeup?.cancel();
    this.wakeup = null;
    this.kick();
  }

  private kick(): void {
    if (this.wakeup || this.holds > 0) return;
    let e = this.timers.peek();
    while (e && e.cancelled) {
      this.timers.pop();
      e = this.timers.peek();
    }
    if (!e) return;
    const wait = this.waitMs(e.atMs);
    if (wait <= 0) {
      const immediate = setImmediate(() => this.step());
      this.wakeup = { at: -Infinity, cancel: () => clearImmediate(immediate) };
    } else {
      const timer = setTimeout(() => this.step(), wait);
      this.wakeup = { at: e.atMs, cancel: () => clearTimeout(timer) };
    }
  }

  /** Runs the earliest timer if it is due, then yields to the event loop before the next one. */
  private step(): void {
    this.wakeup = null;
    const e = this.timers.peek();
    if (this.holds > 0 || !e) return;
    if (!e.cancelled && this.waitMs(e.atMs) > 0) return this.kick();
    this.timers.pop();
    if (!e.cancelled) {
      this.t = Math.max(this.t, e.atMs);
      this.inEvent = true;
      try {
        e.fn();
      } catch (err) {
        this.onError(err);
      } finally {
        this.inEvent = false;
      }
    }
    this.kick();
  }
}

/** Simulated time that advances by events, as fast as the host runs them. */
export class VirtualClock extends EventClock {
  readonly lateToleranceMs = 0;

  constructor(startMs = 0) {
    super(startMs);
  }

  protected freeNow(): number {
    return this.t;
  }

  protected waitMs(): number {
    return 0;
  }
}

/** Wall ms a timer of the real-time clock may run late (a busy event loop) before a frame counts as missed. */
const WALL_LATENESS_MS = 250;

/**
 * Simulated time paced by the wall clock: `scale` simulated ms per wall ms (1 = true airtime).
 * Events still run in simulated-time order, each seeing its own instant as now.
 * With `pauseWhileHeld` (a simulated channel whose native nodes hold the clock while they
 * compute), simulated time also stands still while the clock is held, as the virtual clock's
 * does: at 1000x a node that takes a wall second to answer (or hangs until it counts as silent)
 * would otherwise let 1000 simulated seconds pass for everybody else.
 */
export class RealTimeClock extends EventClock {
  lateToleranceMs: number;
  private startWall = performance.now();
  private pace: number;
  /** Where simulated time stands while the clock is held (pauseWhileHeld only). */
  private pausedAt: number | null = null;

  constructor(
    scale = 1,
    private startMs = 0,
    private readonly pauseWhileHeld = false,
  ) {
    super(startMs);
    if (!(scale > 0)) throw new RangeError(`time scale ${scale}: expected a number above 0`);
    this.pace = scale;
    this.lateToleranceMs = WALL_LATENESS_MS * scale;
  }

  /** Simulated ms per wall ms. */
  get scale(): number {
    return this.pace;
  }

  /** Goes on from now at another pace (the dashboard's time-scale control); timers keep their simulated instants. */
  setScale(scale: number): void {
    if (!(scale > 0)) throw new RangeError(`time scale ${scale}: expected a number above 0`);
    this.startMs = this.freeNow();
    this.startWall = performance.now();
    this.pace = scale;
    this.lateToleranceMs = WALL_LATENESS_MS * scale;
    this.rearm();
  }

  protected freeNow(): number {
    return this.pausedAt ?? this.startMs + (performance.now() - this.startWall) * this.pace;
  }

  protected waitMs(atMs: number): number {
    return (atMs - this.freeNow()) / this.pace;
  }

  protected override held(on: boolean): void {
    if (!this.pauseWhileHeld) return;
    if (on) {
      this.pausedAt = this.freeNow();
      return;
    }
    // go on from where time stood
    this.startMs = this.pausedAt ?? this.freeNow();
    this.startWall = performance.now();
    this.pausedAt = null;
  }
}
