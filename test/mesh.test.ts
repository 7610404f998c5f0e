/**
 * The MQTT mesh, end to end: real brokers (aedes, and the system's Mosquitto), real head-node
 * child processes, the real model. Every process a test starts is stopped in afterAll.
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import { MqttClient } from 'mqtt';
import { Engine, GenerateOptions, GenerationResult } from '../lib/llm/engine';
import { freePort, startMosquitto } from '../lib/mesh/broker';
import { MeshGateway } from '../lib/mesh/gateway';
import { connectMqtt, subscribe } from '../lib/mesh/mqtt';
import { NodeProcesses, cliEntry, spawnBroker, spawnHeadNodes } from '../lib/mesh/processes';
import { BodyType, decodeBody, encodeBody } from '../lib/link/body';
import { ErrorMessage, TokenMessage, parseControl, topicsFor } from '../lib/mesh/wire';
import { goldenIds, goldenText, modelPaths } from './support/fixtures';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  // Each cleanup gets a bounded time, so one stuck close cannot keep the others from running.
  const bounded = (c: () => Promise<unknown>) => Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 5000).unref())]);
  for (const c of cleanups.reverse()) await bounded(c);
});

const quiet = () => undefined;
const ONCE: GenerateOptions = { prompt: 'Once upon a time', steps: 64, temperature: 0, topP: 0.9, seed: 1n };
const paths = { modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer };

function monolithic(o: GenerateOptions, quant: 'f32' | 'int8' = 'f32'): Promise<GenerationResult> {
  return Engine.load({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, quant }).generate(o);
}

interface Broker {
  url: string;
}

/** `mesh-llm ...` as a child process; resolves with its parsed --json output. */
function cli(args: string[]): Promise<{ tokens: number[]; text: string; tokensPerSecond: number }> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [cliEntry(), ...args, '--json'], { env: { ...process.env, MESH_LLM_LOG: 'error' } }, (err, out, errText) =>
      err ? reject(new Error(`mesh-llm ${args.join(' ')} failed: ${err.message}\n${errText}`)) : resolve(JSON.parse(out)),
    ),
  );
}

const onceArgs = ['--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0'];

/** The two head-node runtimes: `mesh-llm node` on node.js, and the firmware core built for the host. */
type Runtime = 'node.js' | 'native';
const RUNTIMES: Runtime[] = ['node.js', 'native'];

/** Head-node processes on a broker, stopped after all tests (and logged lines kept for assertions). */
function nodesOn(broker: Broker, meshId: string, count: number, runtime: Runtime = 'node.js', prefix = 'node-'): NodeProcesses & { logs: string[] } {
  const logs: string[] = [];
  const nodes = spawnHeadNodes({ count, brokerUrl: broker.url, meshId, modelPath: modelPaths.model, native: runtime === 'native', prefix, onLog: (_n, line) => logs.push(line) });
  cleanups.push(() => nodes.stop(500));
  return { ...nodes, logs };
}

/** The embedded aedes broker, as `mesh-llm broker` (jest cannot load the aedes ES module in-process). */
async function aedes(): Promise<Broker> {
  const b = await spawnBroker(await freePort());
  cleanups.push(() => b.close());
  return b;
}

async function gatewayOn(broker: Broker, meshId: string, gatherTimeoutMs = 2000, failover = true): Promise<MeshGateway> {
  const gw = await MeshGateway.connect({ url: broker.url, meshId, ...paths, gatherTimeoutMs, failover, log: quiet });
  cleanups.push(() => gw.close());
  return gw;
}

/** Waits for the head nodes to be up; a node process that dies first fails the test with its log. */
async function discoverAll(gw: MeshGateway, nodes: NodeProcesses & { logs: string[] }): Promise<string[]> {
  const exited = nodes.firstExit.catch((e: Error) => Promise.reject(new Error(`${e.message}\n${nodes.logs.join('\n')}`)));
  return Promise.race([gw.discover({ count: nodes.nodes.length, timeoutMs: 30000 }), exited]);
}

async function rogueClient(broker: Broker, name: string): Promise<MqttClient> {
  const c = await connectMqtt({ url: broker.url, clientId: name });
  cleanups.push(() => new Promise((r) => c.end(true, {}, r)));
  return c;
}

function alive(p: NodeProcesses): boolean[] {
  return p.nodes.map((n) => n.child.exitCode === null && n.child.signalCode === null);
}

function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = () => {
      if (condition()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(check, 20);
    };
    check();
  });
}

describe('generate --mesh N (embedded aedes broker, head-node processes), f32 transport', () => {
  for (const n of [1, 3, 5, 8]) {
    test(`N = ${n} gives the golden tokens`, async () => {
      const r = await cli(['generate', '--mesh', String(n), ...onceArgs]);
      expect(r.tokens).toEqual(goldenIds('once-greedy-64'));
      expect(r.text).toBe(goldenText('once-greedy-64'));
      expect(r.tokensPerSecond).toBeGreaterThan(0);
    });
  }
  test('N = 8 native head nodes (--native) give the golden tokens', async () => {
    const r = await cli(['generate', '--mesh', '8', '--native', ...onceArgs]);
    expect(r.tokens).toEqual(goldenIds('once-greedy-64'));
    expect(r.text).toBe(goldenText('once-greedy-64'));
  });
});

describe('other brokers and head nodes started separately', () => {
  test('N = 8 on Mosquitto (generate --broker URL) gives the golden tokens', async () => {
    const mosquitto = await startMosquitto();
    cleanups.push(() => mosquitto.close());
    const nodes = nodesOn(mosquitto, 'mosq', 8);
    const r = await cli(['generate', '--broker', mosquitto.url, '--mesh-id', 'mosq', '--nodes', '8', ...onceArgs]);
    expect(r.tokens).toEqual(goldenIds('once-greedy-64'));
    expect(alive(nodes)).toEqual(Array(8).fill(true)); // --broker leaves the nodes running
  });

  test('a mixed mesh on Mosquitto, four native and four node.js head nodes, gives the golden tokens and matches the engine on an unseen prompt', async () => {
    const mosquitto = await startMosquitto();
    cleanups.push(() => mosquitto.close());
    const js = nodesOn(mosquitto, 'mixed', 4, 'node.js', 'js-');
    const native = nodesOn(mosquitto, 'mixed', 4, 'native', 'native-');
    const gw = await gatewayOn(mosquitto, 'mixed');
    const ids = await Promise.race([gw.discover({ count: 8, timeoutMs: 30000 }), js.firstExit, native.firstExit]);
    const assignment = await gw.assign([...ids].sort());
    expect(assignment.map((a) => a.node)).toEqual(['js-1', 'js-2', 'js-3', 'js-4', 'native-1', 'native-2', 'native-3', 'native-4']);
    expect((await gw.generate(ONCE)).tokens).toEqual(goldenIds('once-greedy-64'));
    const o: GenerateOptions = { prompt: 'The old owl sang to the stars', steps: 90, temperature: 0.8, topP: 0.9, seed: 11n };
    expect((await gw.generate(o)).tokens).toEqual((await monolithic(o)).tokens);
  });

  test('`mesh-llm node --native` with credentials serves `generate --broker`', async () => {
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const stopLater = (child: ChildProcess) =>
      cleanups.push(async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          await new Promise((r) => child.once('exit', r));
        }
      });
    const broker = spawn(process.execPath, [cliEntry(), 'broker', '--port', String(port), '--username', 'mesh', '--password', 's3cret'], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    stopLater(broker);
    await new Promise<void>((resolve) => broker.stderr?.on('data', (d: Buffer) => d.toString().includes('listening') && resolve()));
    const node = spawn(process.execPath, [cliEntry(), 'node', '--native', '--id', 'gamma', '--broker', `mqtt://mesh:s3cret@127.0.0.1:${port}`, '--mesh', 'native-cli', '--model', modelPaths.model], { stdio: ['ignore', 'ignore', 'pipe'] });
    stopLater(node);
    const r = await cli(['generate', '--broker', url, '--username', 'mesh', '--password', 's3cret', '--mesh-id', 'native-cli', '--nodes', '1', ...onceArgs]);
    expect(r.tokens).toEqual(goldenIds('once-greedy-64'));
    // SIGTERM to `mesh-llm node --native` reaches the native node, which says goodbye and exits 0
    const exited = new Promise<number | null>((resolve) => node.once('exit', (code) => resolve(code)));
    node.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  test('`mesh-llm broker` with credentials, two `mesh-llm node` processes and `generate --broker` match the monolithic engine on an unseen prompt', async () => {
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const withCredentials = `mqtt://mesh:s3cret@127.0.0.1:${port}`;
    const run = (args: string[], stderr: 'pipe' | 'ignore' = 'ignore'): ChildProcess => {
      const child = spawn(process.execPath, [cliEntry(), ...args], { stdio: ['ignore', 'ignore', stderr, 'ipc'] }); // ipc: it dies with this process
      cleanups.push(async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGKILL');
          await new Promise((r) => child.once('exit', r));
        }
      });
      return child;
    };
    const broker = run(['broker', '--port', String(port), '--username', 'mesh', '--password', 's3cret'], 'pipe');
    await new Promise<void>((resolve) => broker.stderr?.on('data', (d: Buffer) => d.toString().includes('listening') && resolve()));
    run(['node', '--id', 'alpha', '--broker', withCredentials, '--mesh', 'cli', '--model', modelPaths.model]);
    run(['node', '--id', 'beta', '--broker', url, '--username', 'mesh', '--password', 's3cret', '--mesh', 'cli', '--model', modelPaths.model]);
    await expect(cli(['generate', '--broker', url, '--mesh-id', 'cli', '--nodes', '2'])).rejects.toThrow(/cannot connect to MQTT broker .*[Nn]ot authorized|[Bb]ad username/);
    const prompt = 'A small robot looked at the moon';
    const r = await cli(['generate', '--broker', url, '--username', 'mesh', '--password', 's3cret', '--mesh-id', 'cli', '--nodes', '2', '--prompt', prompt, '--steps', '80', '--temperature', '0.8', '--seed', '7']);
    const mono = await monolithic({ prompt, steps: 80, temperature: 0.8, topP: 0.9, seed: 7n });
    expect(r.tokens).toEqual(mono.tokens);
    expect(r.text).toBe(mono.text);
  });
});

describe('int8 transport', () => {
  test('the mesh reproduces the monolithic int8 engine token for token (N = 3)', async () => {
    const o: GenerateOptions = { prompt: 'The cat sat', steps: 100, temperature: 0, topP: 0.9, seed: 1n };
    const int8 = await monolithic(o, 'int8');
    const f32 = await monolithic(o, 'f32');
    expect(int8.tokens).not.toEqual(f32.tokens); // the comparison below can tell the encodings apart
    const r = await cli(['generate', '--mesh', '3', '--quant', 'int8', '--prompt', o.prompt, '--steps', '100', '--temperature', '0']);
    expect(r.tokens).toEqual(int8.tokens);
    const native = await cli(['generate', '--mesh', '3', '--native', '--quant', 'int8', '--prompt', o.prompt, '--steps', '100', '--temperature', '0']);
    expect(native.tokens).toEqual(int8.tokens);
  });
});

describe.each(RUNTIMES)('assignments, sessions and resident weights (%s head nodes)', (runtime) => {
  let broker: Broker;
  let gw: MeshGateway;
  let nodes: ReturnType<typeof nodesOn>;
  beforeAll(async () => {
    broker = await aedes();
    nodes = nodesOn(broker, 'assign', 4, runtime);
    gw = await gatewayOn(broker, 'assign');
    await discoverAll(gw, nodes);
  });

  test('non-consecutive groups (kv heads split across nodes) and uneven groups with an idle node match the monolithic engine', async () => {
    const o: GenerateOptions = { prompt: 'Tom wanted a red kite', steps: 90, temperature: 0.9, topP: 0.9, seed: 42n };
    const mono = await monolithic(o);
    const split = await gw.assign(['node-1', 'node-2', 'node-3', 'node-4'], { groups: [[0, 7], [1, 6], [2, 5], [3, 4]] });
    expect(split.map((a) => a.kvHeads)).toEqual([[0, 3], [0, 3], [1, 2], [1, 2]]);
    expect((await gw.generate(o)).tokens).toEqual(mono.tokens);
    const uneven = await gw.assign(['node-1', 'node-2', 'node-3', 'node-4'], { groups: '1+4+3' });
    expect(uneven.map((a) => a.heads)).toEqual([[0], [1, 2, 3, 4], [5, 6, 7]]);
    expect((await gw.generate(o)).tokens).toEqual(mono.tokens);
    expect(gw.nodes.get('node-4')?.status.state).toBe('online'); // released, idle
  });

  test("a node's resident weights are its own slices only, proportional to its share", async () => {
    const { dim, headSize, nLayers } = gw.g;
    const bytes = (heads: number, kvHeads: number) => nLayers * (heads + 2 * kvHeads) * headSize * dim * 4;
    const one = await gw.assign(['node-1', 'node-2', 'node-3', 'node-4'], { groups: [[0], [1, 2, 3, 4, 5, 6, 7]] });
    expect(one[0].weightBytes).toBe(bytes(1, 1));
    expect(one[1].weightBytes).toBe(bytes(7, 4));
    const all = await gw.assign(['node-1'], { groups: 1 });
    expect(all[0].weightBytes).toBe(bytes(8, 4));
    expect(one[0].weightBytes / all[0].weightBytes).toBeLessThan(0.2);
    const int8 = await gw.assign(['node-1'], { groups: 1, quant: 'int8' });
    expect(int8[0].weightBytes).toBeLessThan(all[0].weightBytes / 3);
    await until(() => (gw.nodes.get('node-1')?.telemetry?.weightBytes ?? 0) === int8[0].weightBytes, 5000, 'telemetry with the new weights');
    expect(gw.nodes.get('node-1')?.telemetry?.rssBytes).toBeGreaterThan(0);
  });

  test('concurrent requests are queued, each gets its own session, and every token is streamed on the tokens topic', async () => {
    await gw.assign(['node-1', 'node-2', 'node-3'], {});
    const listener = await rogueClient(broker, 'token-listener');
    const streamed: TokenMessage[] = [];
    listener.on('message', (_topic, payload) => streamed.push(parseControl('token', payload)));
    await subscribe(listener, [topicsFor('assign').tokens]);
    const a: GenerateOptions = { prompt: 'The sun was hot', steps: 60, temperature: 0, topP: 0.9, seed: 1n };
    const b: GenerateOptions = { prompt: 'Lily had a cat', steps: 70, temperature: 1, topP: 0.9, seed: 3n };
    const [ra, rb] = await Promise.all([gw.generate(a), gw.generate(b)]);
    expect(ra.tokens).toEqual((await monolithic(a)).tokens);
    expect(rb.tokens).toEqual((await monolithic(b)).tokens);
    await until(() => streamed.length === ra.tokens.length - 1 + rb.tokens.length - 1, 5000, 'every token on the tokens topic');
    const sessions = [...new Set(streamed.map((m) => m.session))];
    expect(sessions).toHaveLength(2);
    expect(streamed.filter((m) => m.session === sessions[0]).map((m) => m.token)).toEqual(ra.tokens.slice(1));
    expect(streamed.filter((m) => m.session === sessions[1]).map((m) => m.token)).toEqual(rb.tokens.slice(1));
    expect(streamed.filter((m) => m.session === sessions[0]).map((m) => m.piece).join('')).toBe(ra.text);
    expect(alive(nodes)).toEqual([true, true, true, true]);
  });
});

describe.each(RUNTIMES)('bad input and faults (%s head nodes)', (runtime) => {
  let broker: Broker;
  beforeAll(async () => {
    broker = await aedes();
  });

  test('malformed frames and schema-invalid JSON on every topic are dropped, logged and reported; nothing crashes', async () => {
    const nodes = nodesOn(broker, 'bad', 2, runtime);
    const gw = await gatewayOn(broker, 'bad');
    await gw.assign(await discoverAll(gw, nodes));
    const t = topicsFor('bad');
    const rogue = await rogueClient(broker, 'rogue');
    const reports: ErrorMessage[] = [];
    rogue.on('message', (_topic, payload) => {
      try {
        reports.push(JSON.parse(payload.toString()));
      } catch {
        // the garbage this test itself sends to the errors topic
      }
    });
    await subscribe(rogue, [t.errors]);

    const good = encodeBody({ type: BodyType.Broadcast, encoding: 'f32', sender: 0, session: 1, seq: 1, pos: 0, layer: 0 }, new Float32Array(64));
    const nan = Buffer.from(good);
    nan.writeFloatLE(NaN, 24);
    const garbage: [string, Buffer | string][] = [
      [t.broadcast, 'hello'],
      [t.broadcast, good.subarray(0, 40)],
      [t.broadcast, nan],
      [t.broadcast, encodeBody({ type: BodyType.Broadcast, encoding: 'f32', sender: 0, session: 1, seq: 1, pos: 0, layer: 0 }, new Float32Array(3))],
      [t.broadcast, encodeBody({ type: BodyType.Broadcast, encoding: 'f32', sender: 0, session: 1, seq: 1, pos: 0, layer: 9 }, new Float32Array(64))],
      [t.result('node-1'), Buffer.from([0x4d, 0x4c, 1, 2])],
      [t.status('node-1'), 'not json'],
      [t.status('stranger'), '{"protocol":1,"node":"stranger","state":"dancing"}'],
      [t.assign('node-1'), '{"protocol":1,"assignment":"x"}'],
      [t.assign('node-2'), '{{{'],
      [t.session, '{"protocol":1,"op":"explode","session":1,"assignment":"x"}'],
      [t.ack('node-1'), '[]'],
      [t.telemetry('node-2'), '{"protocol":1}'],
      [t.tokens, '\u0000\u0001'],
      [t.errors, 'not a report'],
    ];
    for (const [topic, payload] of garbage) rogue.publish(topic, payload, { qos: 1 });

    const expected: [string, string, RegExp][] = [
      ['node-1', t.broadcast, /shorter than the 24-byte header/],
      ['node-2', t.broadcast, /implies/],
      ['node-1', t.broadcast, /value 0 is not finite/],
      ['node-2', t.broadcast, /carries 3 values \(the model's dim is 64\)/],
      ['node-1', t.broadcast, /layer 9 does not exist/],
      ['gateway', t.result('node-1'), /shorter than the 24-byte header/],
      ['gateway', t.status('node-1'), /status message is not JSON/],
      ['gateway', t.status('stranger'), /schemas\/status.json: \/state/],
      ['node-1', t.assign('node-1'), /schemas\/assignment.json/],
      ['node-2', t.assign('node-2'), /assignment message is not JSON/],
      ['node-1', t.session, /schemas\/session.json: \/op/],
      ['node-2', t.session, /schemas\/session.json: \/op/],
      ['gateway', t.ack('node-1'), /schemas\/ack.json/],
      ['gateway', t.telemetry('node-2'), /schemas\/telemetry.json/],
    ];
    const found = (s: string, topic: string, reason: RegExp) => reports.some((r) => r.source === s && r.topic === topic && reason.test(r.reason));
    await until(() => expected.every(([s, topic, reason]) => found(s, topic, reason)), 5000, 'every error report');
    expect(gw.counters.malformed).toBeGreaterThanOrEqual(1);
    expect(gw.counters.invalidJson).toBeGreaterThanOrEqual(4);
    expect(nodes.logs.some((l) => /dropped message on mesh-llm\/bad\/broadcast: bad magic|shorter than/.test(l))).toBe(true);

    expect((await gw.generate(ONCE)).tokens).toEqual(goldenIds('once-greedy-64'));
    expect(alive(nodes)).toEqual([true, true]);
  });

  test('stale, duplicate and unassigned results are ignored and counted', async () => {
    const nodes = nodesOn(broker, 'dup', 2, runtime);
    const gw = await gatewayOn(broker, 'dup', 5000);
    await gw.assign(await discoverAll(gw, nodes));
    const t = topicsFor('dup');
    const rogue = await rogueClient(broker, 'replayer');
    await subscribe(rogue, [t.result('node-1'), t.broadcast]);
    const replayed = new Set<number>();
    rogue.on('message', (topic, payload) => {
      if (topic === t.result('node-1')) {
        const { seq } = decodeBody(payload);
        if (!replayed.has(seq)) rogue.publish(topic, payload); // a replay: duplicate while node-2 is still out, stale after
        replayed.add(seq);
      } else {
        const f = decodeBody(payload);
        const out = new Float32Array(8);
        rogue.publish(t.result('intruder'), encodeBody({ ...f, type: BodyType.Result, sender: 9 }, out)); // not assigned
        rogue.publish(t.result('node-2'), encodeBody({ ...f, type: BodyType.Result, sender: 2, seq: f.seq - 1 }, new Float32Array(32))); // an old layer
      }
    });
    // From the first token on, hold node-2 so node-1's replay lands while a gather still waits for node-2.
    const node2 = nodes.nodes[1].child;
    let duplicatesBeforeStop = -1;
    const run = gw.generate(ONCE, (_t, _p, pos) => {
      if (pos !== 1) return;
      duplicatesBeforeStop = gw.counters.duplicate ?? 0;
      node2.kill('SIGSTOP');
    });
    await until(() => duplicatesBeforeStop >= 0 && (gw.counters.duplicate ?? 0) > duplicatesBeforeStop, 4000, 'a duplicate while node-2 is held');
    node2.kill('SIGCONT');
    const r = await run;
    expect(r.tokens).toEqual(goldenIds('once-greedy-64'));
    const c = gw.counters;
    expect(c.duplicate).toBeGreaterThan(0);
    expect(c.stale).toBeGreaterThan(0);
    expect(c.unassigned).toBeGreaterThan(0);
  });

  test('without failover, killing a node process mid-generation fails the generation promptly, naming the node (test/failover.test.ts: with it, the run goes on)', async () => {
    const nodes = nodesOn(broker, 'kill', 3, runtime);
    const gw = await gatewayOn(broker, 'kill', 1500, false);
    await gw.assign(await discoverAll(gw, nodes));
    let killedAt = 0;
    const run = gw.generate({ prompt: '', steps: 256, temperature: 0, topP: 0.9, seed: 1n }, (_t, _p, pos) => {
      if (pos === 10) {
        killedAt = Date.now();
        nodes.nodes[1].child.kill('SIGKILL');
      }
    });
    await expect(run).rejects.toThrow(/head node node-2/);
    expect(killedAt).toBeGreaterThan(0);
    expect(Date.now() - killedAt).toBeLessThan(1500 + 1000);
    await expect(gw.generate(ONCE)).rejects.toThrow(/node-2/); // and it stays failed, it does not hang
  });

  test('without failover, a node that stops answering fails the gather within the timeout, naming the node', async () => {
    const nodes = nodesOn(broker, 'hang', 3, runtime);
    const gw = await gatewayOn(broker, 'hang', 1000, false);
    await gw.assign(await discoverAll(gw, nodes));
    let stoppedAt = 0;
    const run = gw.generate({ prompt: '', steps: 256, temperature: 0, topP: 0.9, seed: 1n }, (_t, _p, pos) => {
      if (pos === 5) {
        stoppedAt = Date.now();
        nodes.nodes[2].child.kill('SIGSTOP');
      }
    });
    await expect(run).rejects.toThrow(/head node node-3 did not answer layer \d+ at position \d+ within 1000 ms/);
    const waited = Date.now() - stoppedAt;
    expect(waited).toBeGreaterThanOrEqual(1000);
    expect(waited).toBeLessThan(1000 + 1000);
    nodes.nodes[2].child.kill('SIGCONT');
  });

  test('a node process whose broker goes away exits with an error instead of idling', async () => {
    const own = await spawnBroker(await freePort());
    cleanups.push(() => own.close());
    const nodes = nodesOn(own, 'orphan', 1, runtime);
    const gw = await gatewayOn(own, 'orphan');
    await discoverAll(gw, nodes);
    // 'close': the exit code, and the node's last stderr line read (its pipes closed)
    const exited = new Promise<number | null>((resolve) => nodes.nodes[0].child.once('close', (code) => resolve(code)));
    own.child.kill('SIGKILL');
    expect(await exited).toBe(1);
    expect(nodes.logs.join('\n')).toMatch(/lost the connection to the MQTT broker/);
  });
});
