/**
 * Roles as separate OS processes: `mesh-llm role NAME --broker URL ...` children, each with an
 * IPC channel to its parent and gone when that channel closes (as the head nodes are).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { MeshLlmError } from '../llm/errors';
import { cliEntry } from '../mesh/processes';
import { Role } from './topics';

export interface RoleProcess {
  role: Role;
  child: ChildProcess;
  /** Every stderr line so far. */
  log: string[];
  /** Resolves once the role says it is ready; rejects if it exits first. */
  ready: Promise<void>;
  exited: Promise<number | null>;
  stop(graceMs?: number): Promise<void>;
}

export function spawnRole(role: Role, brokerUrl: string, args: string[] = [], onLine?: (line: string) => void): RoleProcess {
  const child = spawn(process.execPath, [cliEntry(), 'role', role, '--broker', brokerUrl, ...args], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  const log: string[] = [];
  let rest = '';
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.stderr!.on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) {
      log.push(line);
      onLine?.(line);
      if (/ info: ready on /.test(line)) markReady();
    }
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const readyOrExit = Promise.race([ready, exited.then((code) => Promise.reject(new MeshLlmError(`mesh-llm role ${role} exited with code ${code} before it was ready: ${log.join(' | ')}`)))]);
  readyOrExit.catch(() => undefined);
  const stop = async (graceMs = 3000) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
  };
  return { role, child, log, ready: readyOrExit, exited, stop };
}
