/**
 * Transmissions handed to a radio link's far end (a serial modem or a packet forwarder) and
 * waiting for its TX_ACK, by token. Each holds the simulated clock until it is acknowledged,
 * refused or timed out, so simulated time never runs ahead of the hardware.
 */
interface Waiting {
  resolve: () => void;
  reject: (e: Error) => void;
  release: () => void;
  timer: NodeJS.Timeout;
}

export class PendingAcks {
  private readonly waiting = new Map<number, Waiting>();

  has(token: number): boolean {
    return this.waiting.has(token);
  }

  /**
   * Registers a transmission under `token`, then calls `send`. Resolves on settle(token),
   * rejects on settle(token, error) or after timeoutMs with `timeoutMessage`.
   */
  wait(token: number, release: () => void, timeoutMs: number, timeoutMessage: string, send: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.settle(token, new Error(timeoutMessage)), timeoutMs);
      this.waiting.set(token, { resolve, reject, release, timer });
      send();
    });
  }

  /** The far end answered (or failed): releases the clock and settles the transmission. */
  settle(token: number, error?: Error): void {
    const w = this.waiting.get(token);
    if (!w) return;
    this.waiting.delete(token);
    clearTimeout(w.timer);
    w.release();
    if (error) w.reject(error);
    else w.resolve();
  }

  /** Fails every waiting transmission (the link is closing). */
  failAll(error: Error): void {
    for (const token of [...this.waiting.keys()]) this.settle(token, error);
  }
}
