/**
 * The three faults of the failover tests, driven by the positions generated: at position 10
 * the first child is killed (SIGKILL), at the first position a second later the second, a
 * second after that the third is held (SIGSTOP); on a mesh fast enough to finish sooner, each
 * comes at the latest `maxGap` positions after the one before. Returns the per-token hook and
 * what it did.
 */
import { ChildProcess } from 'node:child_process';

export function faults(children: Pick<ChildProcess, 'kill'>[], o: { first?: number; maxGap?: number } = {}): { onPosition: (pos: number) => void; done: () => string[] } {
  const first = o.first ?? 10;
  const maxGap = o.maxGap ?? 70;
  const did: string[] = [];
  let last = 0;
  let lastPos = 0;
  const signals: NodeJS.Signals[] = ['SIGKILL', 'SIGKILL', 'SIGSTOP'];
  return {
    onPosition: (pos) => {
      const i = did.length;
      if (i >= children.length) return;
      if (i === 0 ? pos < first : Date.now() - last < 1000 && pos - lastPos < maxGap) return;
      children[i].kill(signals[i]);
      did.push(signals[i]);
      last = Date.now();
      lastPos = pos;
    },
    done: () => did,
  };
}
