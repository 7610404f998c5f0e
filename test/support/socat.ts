/** A real pseudo-terminal pair made by socat: what one end writes, the other reads. */
import { ChildProcess, spawn } from 'node:child_process';

export interface PtyPair {
  a: string;
  b: string;
  child: ChildProcess;
  close(): Promise<void>;
}

export function ptyPair(): Promise<PtyPair> {
  const child = spawn('socat', ['-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.once('error', (e) => reject(new Error(`cannot start socat (is it installed?): ${e.message}`)));
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
      const ptys = [...stderr.matchAll(/PTY is (\S+)/g)].map((m) => m[1]);
      if (ptys.length === 2 && /starting data transfer loop/.test(stderr)) resolve({ a: ptys[0], b: ptys[1], child, close });
    });
    child.once('exit', (code) => reject(new Error(`socat exited with code ${code}: ${stderr.trim()}`)));
  });
}
