/** Runs the real `mesh-llm` command (bin/mesh-llm.js) as a child process. */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { packageRoot } from '../../lib/llm/resolve';

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export const binPath = path.join(packageRoot(), 'bin', 'mesh-llm.js');

export function runCli(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPath, ...args], { cwd: options.cwd ?? packageRoot(), env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
