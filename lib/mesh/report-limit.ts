/**
 * A bound on what a process reports on the errors topic: a token bucket (`burst` reports at
 * once, `perSecond` after that). A flood of invalid messages must not turn into a flood of
 * reports: every node answered each invalid broadcast or session message, eight reports per
 * message on an eight-node mesh. What the bucket holds back is counted and said in the next
 * report that goes out ("N more not reported").
 */
export class ReportLimiter {
  private tokens: number;
  private last: number;
  /** Reports held back since the last one that went out. */
  private held = 0;
  /** Reports held back in all. */
  suppressed = 0;

  constructor(
    private readonly perSecond = 10,
    private readonly burst = 20,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /**
   * Whether a report may go out now; if so, how many were held back before it (to be said
   * in it). null: hold this one back.
   */
  take(): { heldBefore: number } | null {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.perSecond);
    this.last = t;
    if (this.tokens < 1) {
      this.held++;
      this.suppressed++;
      return null;
    }
    this.tokens -= 1;
    const heldBefore = this.held;
    this.held = 0;
    return { heldBefore };
  }
}

/** The reason with the count of reports held back before it, if any. */
export function withHeldCount(reason: string, heldBefore: number): string {
  return heldBefore > 0 ? `${reason} (${heldBefore} more dropped message${heldBefore === 1 ? '' : 's'} not reported: rate limit)` : reason;
}
