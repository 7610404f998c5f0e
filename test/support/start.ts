/**
 * `mesh-llm start` as a test's child process: started with the given options on a free editor
 * port, ready once it prints its editor and bus addresses; stopped with a signal (SIGKILL after
 * 20 s if it hangs).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { binPath } from './cli';

export interface StartedServer {
  child: ChildProcess;
  /** The editor's (and POST /generate's) address. */
  url: string;
  /** The MQTT bus it printed (its embedded broker, or the --broker it was given). */
  broker: string;
  /** The bus's port. */
  port: number;
  output: () => string;
}

export function startServer(args: readonly string[]): Promise<StartedServer> {
  const child = spawn(process.execPath, [binPath, 'start', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise<StartedServer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mesh-llm start did not come up:\n${output}`)), 90000);
    const onData = (d: Buffer) => {
      output += d.toString();
      const editor = /Node-RED editor:\s+(http:\/\/\S+?)\/?\s/.exec(output);
      const bus = /MQTT bus:\s+(mqtts?:\/\/\S+)/.exec(output);
      if (editor && bus) {
        clearTimeout(timer);
        resolve({ child, url: editor[1], broker: bus[1], port: Number(new URL(bus[1]).port), output: () => output });
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`mesh-llm start exited with ${code}:\n${output}`)));
  });
}

export async function stopServer(s: StartedServer | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!s || s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise((resolve) => s.child.once('exit', resolve));
  s.child.kill(signal);
  const stuck = setTimeout(() => s.child.kill('SIGKILL'), 20000);
  await exited;
  clearTimeout(stuck);
}
