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
 * watches true airtime go by.
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

/** Simulated time that advances by events, as fast as the host runs them. */
export class VirtualClock implements Clock {
  private t: number;
  private seq = 0;
  private holds = 0;
  private pumping = false;
  private readonly timers = new TimerHeap();
  /** Errors thrown by timer callbacks are reported here (default: rethrown asynchronously). */
  onError: (e: unknown) => void = (e) => {
    throw e;
  };

  constructor(startMs = 0) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  at(atMs: number, fn: () => void): ClockTimer {
    const e: Entry = { atMs: Math.max(atMs, this.t), seq: this.seq++, fn, cancelled: false };
    this.timers.push(e);
    this.kick();
    return { cancel: () => void (e.cancelled = true) };
  }

  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.kick();
    };
  }

  /** Timers still to run. */
  get pending(): number {
    return this.timers.size;
  }

  private kick(): void {
    if (this.pumping || this.holds > 0 || this.timers.size === 0) return;
    this.pumping = true;
    setImmediate(() => this.step());
  }

  /** Runs the earliest timer, then yields to the event loop before the next one. */
  private step(): void {
    this.pumping = false;
    if (this.holds > 0) return;
    let e = this.timers.pop();
    while (e && e.cancelled) e = this.timers.pop();
    if (e) {
      this.t = Math.max(this.t, e.atMs);
      try {
        e.fn();
      } catch (err) {
        this.onError(err);
      }
    }
    this.kick();
  }
}

/** Simulated time paced by the wall clock: `scale` simulated ms per wall ms (1 = true airtime). */
export class RealTimeClock implements Clock {
  private readonly startWall = performance.now();

  constructor(
    readonly scale = 1,
    private readonly startMs = 0,
  ) {
    if (!(scale > 0)) throw new RangeError(`time scale ${scale}: expected a number above 0`);
  }

  now(): number {
    return this.startMs + (performance.now() - this.startWall) * this.scale;
  }

  at(atMs: number, fn: () => void): ClockTimer {
    const timer = setTimeout(fn, Math.max(0, (atMs - this.now()) / this.scale));
    return { cancel: () => clearTimeout(timer) };
  }

  /** Wall time does not wait: holding a real-time clock does nothing. */
  hold(): () => void {
    return () => undefined;
  }
}
