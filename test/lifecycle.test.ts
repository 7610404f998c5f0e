/**
 * The long-lived commands as a user runs them: each failure a user can cause is one line with
 * the documented exit code, and each process ends promptly (under 5 s) on SIGTERM (exit 0) or
 * when its broker goes away (exit 1, saying so). Real processes, real sockets.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { packageRoot } from '../lib/llm/resolve';
import * as net from 'node:net';
import { freePort } from '../lib/mesh/broker';
import { spawnBroker } from '../lib/mesh/processes';
import { binPath, runCli } from './support/cli';
import { modelPaths } from './support/fixtures';
import { killGroup, processGroup } from './support/process-group';

const KEY = '000102030405060708090a0b0c0d0e0f';
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** A user-facing failure: one error line (plus an optional hint), no stack trace. */
function expectOneLineError(r: { code: number | null; stderr: string }, code: number, pattern: RegExp): void {
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code, stderr: expect.stringMatching(pattern) });
  expect(r.stderr).toMatch(/^mesh-llm: error: /);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

interface Running {
  child: ChildProcess;
  output: () => string;
  /** Resolves with the exit code and how long after this call the process ended. */
  exit: () => Promise<{ code: number | null; afterMs: number }>;
}

/** `mesh-llm ...` left running; resolves once its output matches `ready`. */
async function start(args: string[], ready: RegExp): Promise<Running> {
  const child = spawn(process.execPath, [binPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // its output is whole once its pipes close (after 'exit', and after any child of its own that held them)
  const drained = new Promise<void>((resolve) => child.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mesh-llm ${args.join(' ')} did not come up:\n${out}`)), 30000);
    const check = setInterval(() => {
      if (ready.test(out)) {
        clearInterval(check);
        clearTimeout(timer);
        resolve();
      } else if (child.exitCode !== null) {
        clearInterval(check);
        clearTimeout(timer);
        reject(new Error(`mesh-llm ${args.join(' ')} exited with ${child.exitCode}:\n${out}`));
      }
    }, 20);
  });
  let since = 0;
  return {
    child,
    output: () => out,
    exit: async () => {
      since = Date.now();
      const code = await exited;
      const afterMs = Date.now() - since;
      await Promise.race([drained, new Promise((r) => setTimeout(r, 2000))]);
      return { code, afterMs };
    },
  };
}

/** `cause` (a signal to the process, its broker killed) ends the process with `code` within 5 s. */
async function expectExit(p: Running, cause: () => void, code: number): Promise<void> {
  const ended = p.exit();
  cause();
  const { code: got, afterMs } = await ended;
  expect(got).toBe(code);
  expect(afterMs).toBeLessThan(5000);
}

/** Something listening on a port, as a busy port is for whoever comes next. */
async function occupy(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

describe('mesh-llm broker', () => {
  test('a busy port is one line and exit code 1', async () => {
    const busy = await occupy();
    try {
      expectOneLineError(await runCli(['broker', '--port', String(busy.port)]), 1, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy.port}: the port is already in use`));
    } finally {
      await busy.close();
    }
  });

  test('SIGTERM stops it with exit code 0 within 5 s', async () => {
    const broker = await start(['broker', '--port', String(await freePort())], /listening on/);
    await expectExit(broker, () => broker.child.kill('SIGTERM'), 0);
  });
});

describe('mesh-llm node', () => {
  test('a broker that is not there is one line and exit code 1', async () => {
    expectOneLineError(await runCli(['node', '--id', 'n1', '--broker', `mqtt://127.0.0.1:${await freePort()}`, '--model', modelPaths.model]), 1, /cannot connect to MQTT broker mqtt:\/\/127\.0\.0\.1:\d+/);
  });

  test('SIGTERM stops it with exit code 0 within 5 s', async () => {
    const broker = await spawnBroker(0);
    try {
      const node = await start(['node', '--id', 'n1', '--broker', broker.url, '--model', modelPaths.model], /online on/);
      await expectExit(node, () => node.child.kill('SIGTERM'), 0);
    } finally {
      await broker.close();
    }
  });
});

describe('mesh-llm bridge', () => {
  test('a missing --broker, a key of the wrong length and a real radio without a key are usage errors (exit code 2)', async () => {
    expectOneLineError(await runCli(['bridge']), 2, /--broker URL is required/);
    expectOneLineError(await runCli(['bridge', '--broker', 'mqtt://127.0.0.1:1', '--key', 'abcd']), 2, /--key must be 32 hex digits \(16 bytes\), got 4 characters/);
    expectOneLineError(await runCli(['bridge', '--broker', 'mqtt://127.0.0.1:1', '--link', 'serial', '--serial', '/dev/null']), 2, /need the mesh's network key/);
  });

  test('a serial device that does not exist is one line naming it, exit code 1', async () => {
    const broker = await spawnBroker(0);
    try {
      const r = await runCli(['bridge', '--broker', broker.url, '--link', 'serial', '--serial', '/dev/ttyUSB-mesh-llm-none', '--key', KEY]);
      expectOneLineError(r, 1, /cannot open the LoRa modem's serial port \/dev\/ttyUSB-mesh-llm-none: .*No such file or directory/);
    } finally {
      await broker.close();
    }
  });

  test('a broker that is not there is one line and exit code 1', async () => {
    expectOneLineError(await runCli(['bridge', '--broker', `mqtt://127.0.0.1:${await freePort()}`]), 1, /cannot connect to MQTT broker/);
  });

  test('when its broker goes away it says so and exits with code 1 within 5 s', async () => {
    const broker = await spawnBroker(0);
    const bridge = await start(['bridge', '--broker', broker.url, '--nodes', '2'], /2 radio head node\(s\) on the sim link/);
    await expectExit(bridge, () => broker.child.kill('SIGKILL'), 1);
    expect(bridge.output()).toMatch(/lost the connection to the MQTT broker/);
  });

  test('SIGTERM stops it with exit code 0 within 5 s', async () => {
    const broker = await spawnBroker(0);
    try {
      const bridge = await start(['bridge', '--broker', broker.url, '--nodes', '2'], /2 radio head node\(s\) on the sim link/);
      await expectExit(bridge, () => bridge.child.kill('SIGTERM'), 0);
    } finally {
      await broker.close();
    }
  });
});

describe('mesh-llm start', () => {
  test('a busy editor port is one line and exit code 1, before anything is started', async () => {
    const busy = await occupy();
    try {
      const r = await runCli(['start', '--port', String(busy.port), '--nodes', '1']);
      expectOneLineError(r, 1, new RegExp(`the Node-RED editor cannot listen on 127\\.0\\.0\\.1:${busy.port}: the port is already in use`));
      expect(r.stderr).not.toMatch(/head-node processes|MQTT broker on/);
    } finally {
      await busy.close();
    }
  });
});

describe('mesh-llm start --broker URL', () => {
  test('when the broker it was given goes away it says so and exits with code 1 within 5 s', async () => {
    const broker = await spawnBroker(0);
    const data = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-start-'));
    try {
      const start_ = await start(['start', '--broker', broker.url, '--port', '0', '--data', data], /mesh-llm is running/);
      await expectExit(start_, () => broker.child.kill('SIGKILL'), 1);
      expect(start_.output()).toMatch(/lost the connection to the MQTT broker/);
    } finally {
      fs.rmSync(data, { recursive: true, force: true });
    }
  }, 60000);
});

describe('npm start', () => {
  test('SIGTERM to npm stops every process it started (Node-RED, broker, head nodes) within 5 s', async () => {
    const data = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-start-'));
    const npm = spawn('npm', ['start', '--silent', '--', '--port', String(await freePort()), '--nodes', '2', '--data', data], { cwd: packageRoot(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(npm);
    let out = '';
    npm.stdout?.on('data', (d) => (out += d));
    npm.stderr?.on('data', (d) => (out += d));
    try {
      const deadline = Date.now() + 90000;
      while (!/mesh-llm is running/.test(out) && Date.now() < deadline && npm.exitCode === null) await new Promise((r) => setTimeout(r, 100));
      expect(out).toMatch(/mesh-llm is running/);
      const pgid = npm.pid as number;
      expect(processGroup(pgid).length).toBeGreaterThanOrEqual(4); // npm, mesh-llm start, two head nodes
      npm.kill('SIGTERM');
      const stoppedBy = Date.now() + 5000;
      while (processGroup(pgid).length > 0 && Date.now() < stoppedBy) await new Promise((r) => setTimeout(r, 100));
      expect(processGroup(pgid)).toEqual([]);
    } finally {
      if (npm.pid) killGroup(npm.pid);
      fs.rmSync(data, { recursive: true, force: true });
    }
  }, 120000);
});
