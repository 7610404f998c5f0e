/**
 * A detached child's process group (spawn with `detached: true` makes it the leader of its own
 * group and session), for tests that check that everything it started has ended.
 */
import { spawnSync } from 'node:child_process';

/** The pids still in the session of `pgid` (a detached child's group and session are its pid). */
export function processGroup(pgid: number): number[] {
  const r = spawnSync('ps', ['-o', 'pid=', '-g', String(pgid)], { encoding: 'utf8' });
  return r.stdout.split('\n').map((l) => Number(l.trim())).filter((pid) => pid > 0);
}

/**
 * SIGKILL to every process left in group `pgid`, through kill(2) itself. Not the `kill` program:
 * Debian 12's procps 4.0.2 `kill -KILL -PGID` for a group that has already ended signalled every
 * process on the machine, the test runner and whatever ran it among them (seen here).
 */
export function killGroup(pgid: number): void {
  if (!(Number.isInteger(pgid) && pgid > 1)) throw new Error(`killGroup: ${pgid} is not a process group of a child`);
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e; // ESRCH: nothing is left in it
  }
}
