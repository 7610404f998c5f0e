/**
 * The package as a user installs it: `npm pack` of this checkout, `npm install` of the tarball
 * beside node-red 4.1 (from the npm registry) in a fresh user directory, Node-RED started on
 * it, and the installed `mesh-llm` command. Nothing of the checkout is used after the pack
 * but the model files (the one resolution order, handed over as MESH_LLM_MODEL_DIR).
 */
import { ChildProcess, SpawnSyncReturns, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { compilerAvailable } from '../lib/firmware/build';
import { packageRoot } from '../lib/llm/resolve';
import { freePort } from '../lib/mesh/broker';
import { goldenIds, modelPaths } from './support/fixtures';

const root = packageRoot();
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const nodeTypes = Object.keys(manifest['node-red'].nodes);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-palette-'));
/** The Node-RED user directory the package is installed into, as ~/.node-red. */
const userDir = path.join(work, 'node-red');
const installed = path.join(userDir, 'node_modules', ...manifest.name.split('/'));
const meshLlm = path.join(userDir, 'node_modules', '.bin', 'mesh-llm');
const env = { ...process.env, MESH_LLM_MODEL_DIR: path.dirname(modelPaths.model) };

/** A child process whose output is kept for the error that explains a failure. */
interface Running {
  child: ChildProcess;
  output: () => string;
}

const running: Running[] = [];

function start(command: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(command, args, { cwd: work, env: { ...env, ...extraEnv }, stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const r = { child, output: () => output };
  running.push(r);
  return r;
}

/** Waits until check() is true, or fails naming what was awaited and the process's output. */
async function waitUntil(what: string, check: () => boolean | Promise<boolean>, r: Running, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    if (r.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms (exit ${r.child.exitCode}); its output:\n${r.output()}`);
}

/** `npm pack` of the checkout into the work folder: the tarball and its file list. */
function pack(): { tarball: string; files: string[] } {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 26 });
  const [result] = JSON.parse(out.slice(out.search(/^\[/m)));
  return { tarball: path.join(work, result.filename), files: result.files.map((f: { path: string }) => f.path).sort() };
}

/** What a user does in ~/.node-red: npm install of the package beside node-red 4.1. */
function install(tarball: string): void {
  fs.mkdirSync(userDir, { recursive: true });
  fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-user', private: true }));
  fs.copyFileSync(path.join(root, '.npmrc'), path.join(userDir, '.npmrc')); // onnxruntime-node-install=skip
  const env = { ...process.env, npm_config_better_sqlite3_local_prebuilds: localPrebuilds() };
  execFileSync('npm', ['install', '--no-fund', '--no-audit', 'node-red@~4.1.0', tarball], { cwd: userDir, env, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * better-sqlite3's prebuilt addon for this Node, as prebuild-install's documented offline source
 * (npm_config_better_sqlite3_local_prebuilds: a folder of release tarballs): this machine cannot
 * reach GitHub's releases, and compiling SQLite again takes minutes on 2 cores. The tarball holds
 * the addon the checkout's own `npm ci` built.
 */
function localPrebuilds(): string {
  const sqlite = path.dirname(require.resolve('better-sqlite3/package.json'));
  const version = (JSON.parse(fs.readFileSync(path.join(sqlite, 'package.json'), 'utf8')) as { version: string }).version;
  const dir = path.join(work, 'prebuilds');
  const stage = path.join(work, 'prebuild-stage');
  fs.mkdirSync(path.join(stage, 'build', 'Release'), { recursive: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(sqlite, 'build', 'Release', 'better_sqlite3.node'), path.join(stage, 'build', 'Release', 'better_sqlite3.node'));
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  execFileSync('tar', ['-czf', path.join(dir, name), '-C', stage, 'build']);
  return dir;
}

let files: string[] = [];
let nodeRed: string;
/** `mesh-llm node --native` of the fresh install where the compiler named by CXX does not exist. */
let withoutCompiler: SpawnSyncReturns<string>;
/** The native head node of the mesh, where this machine has a C++ compiler. */
let nativeNode: Running | undefined;
let red: Running;

/** The body of a response, parsed as JSON; another status fails naming the request, the body and Node-RED's log. */
async function okJson(res: Response, what: string, status = 200): Promise<unknown> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`${what}: status ${res.status}: ${text.slice(0, 500)}\nNode-RED's output:\n${red.output()}`);
  return text ? JSON.parse(text) : undefined;
}

beforeAll(async () => {
  const packed = pack();
  files = packed.files;
  process.stdout.write(`${manifest.name} package (${files.length} files):\n${files.map((f) => `  ${f}`).join('\n')}\n`);
  install(packed.tarball);

  const brokerPort = await freePort();
  const brokerUrl = `mqtt://127.0.0.1:${brokerPort}`;
  const broker = start(process.execPath, [meshLlm, 'broker', '--port', String(brokerPort)]);
  await waitUntil('mesh-llm broker listening', () => /listening on/.test(broker.output()), broker, 20000);
  start(process.execPath, [meshLlm, 'node', '--id', 'head-js', '--broker', brokerUrl]);
  withoutCompiler = spawnSync(process.execPath, [meshLlm, 'node', '--id', 'head-x', '--native', '--broker', brokerUrl], { cwd: work, env: { ...env, CXX: 'no-such-c++' }, encoding: 'utf8', timeout: 30000 });
  if (compilerAvailable()) {
    const native = (nativeNode = start(process.execPath, [meshLlm, 'node', '--id', 'head-native', '--native', '--broker', brokerUrl]));
    await waitUntil('the native head node built on first use', () => fs.existsSync(path.join(installed, 'dist', 'firmware', 'mesh-llm-node.cmd')), native, 120000);
  } else {
    start(process.execPath, [meshLlm, 'node', '--id', 'head-js-2', '--broker', brokerUrl]);
  }

  const port = await freePort();
  nodeRed = `http://127.0.0.1:${port}`;
  red = start(process.execPath, [path.join(userDir, 'node_modules', 'node-red', 'red.js'), '--userDir', userDir, '--port', String(port), '-D', 'uiHost=127.0.0.1'], {
    MESH_LLM_BROKER: brokerUrl,
    MESH_LLM_BROKER_HOST: '127.0.0.1',
    MESH_LLM_BROKER_PORT: String(brokerPort),
    MESH_LLM_NODES: '2',
  });
  await waitUntil('Node-RED answering GET /nodes', () => fetch(`${nodeRed}/nodes`, { headers: { accept: 'application/json' } }).then((r) => r.ok, () => false), red, 60000);
}, 480000);

afterAll(async () => {
  for (const r of running.reverse()) {
    if (r.child.exitCode !== null || r.child.signalCode !== null) continue;
    const exited = new Promise((resolve) => r.child.once('exit', resolve));
    r.child.kill('SIGTERM');
    await exited;
  }
  fs.rmSync(work, { recursive: true, force: true });
}, 60000);

describe('the package a user installs', () => {
  test('holds the built JavaScript, editor files, schemas, steering data, flows, examples, firmware sources and docs, and no test, bench or TypeScript files', () => {
    for (const f of ['LICENSE', 'README.md', 'bin/mesh-llm.js', 'dist/cli/mesh-llm.js', 'dist/lib/llm/wasm/kernels.wasm', 'resources/step-node.js', 'schemas/generate-request.json', 'steering/steering.json', 'flows/mesh-llm.json', 'examples/mesh-llm.json', 'firmware/core/node.cpp', 'firmware/host/main.cpp', 'docs/NODE-RED.md']) {
      expect(files).toContain(f);
    }
    for (const file of Object.values(manifest['node-red'].nodes) as string[]) {
      expect(files).toContain(file);
      expect(files).toContain(file.replace(/\.js$/, '.html'));
    }
    expect(files.filter((f) => /(^|\/)(test|bench)\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')))).toEqual([]);
  });

  test("the example flow is the shipped flow, and the package's Node-RED section names every node and the 4.x range", () => {
    expect(fs.readFileSync(path.join(installed, 'examples', 'mesh-llm.json'), 'utf8')).toBe(fs.readFileSync(path.join(installed, 'flows', 'mesh-llm.json'), 'utf8'));
    expect(manifest.keywords).toContain('node-red');
    expect(manifest['node-red'].version).toBe('>=4.0.0');
  });
});

describe('installed into a Node-RED 4.1 user directory', () => {
  test('every mesh-llm node type loads and registers (GET /nodes)', async () => {
    const sets = (await (await fetch(`${nodeRed}/nodes`, { headers: { accept: 'application/json' } })).json()) as { module: string; types: string[]; enabled: boolean; err?: string }[];
    const ours = sets.filter((s) => s.module === manifest.name);
    expect(ours.filter((s) => s.err)).toEqual([]);
    expect(ours.flatMap((s) => s.types).sort()).toEqual([...nodeTypes].sort());
  });

  test("the example flow is listed under Import > Examples, imports (POST /flows), and a greedy POST /generate through it gives the golden tokens", async () => {
    // what the editor's Import > Examples menu reads: the module's examples/ folder through the library API
    expect(await okJson(await fetch(`${nodeRed}/library/examples/flows/`), 'GET /library/examples/flows/')).toContain(manifest.name);
    const flow = await okJson(await fetch(`${nodeRed}/library/examples/flows/${manifest.name}/mesh-llm`), 'GET the mesh-llm example');
    expect(flow).toEqual(JSON.parse(fs.readFileSync(path.join(installed, 'flows', 'mesh-llm.json'), 'utf8')));
    await okJson(await fetch(`${nodeRed}/flows`, { method: 'POST', headers: { 'content-type': 'application/json', 'node-red-deployment-type': 'full' }, body: JSON.stringify(flow) }), 'POST /flows', 204);
    // the deploy answers before the flow's HTTP endpoints are up: POST /generate is 404 until they are
    // (an OPTIONS probe is not enough: CORS may answer it for any path); a request the flow refuses (400) shows the route is there
    const probe = () => fetch(`${nodeRed}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"colour": "red"}' });
    await waitUntil('POST /generate routed', () => probe().then((r) => r.status !== 404, () => false), red, 60000);
    const res = await fetch(`${nodeRed}/generate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'Once upon a time', steps: 64, temperature: 0 }) });
    const body = (await okJson(res, 'POST /generate')) as { tokens: number[] };
    expect(body.tokens).toEqual(goldenIds('once-greedy-64'));
  }, 120000);
});

describe('the installed mesh-llm command', () => {
  test('node --native without a C++ compiler says so in one line and exits 1', () => {
    expect(withoutCompiler.status).toBe(1);
    expect(withoutCompiler.stderr.trim().split('\n')).toEqual([expect.stringMatching(/native head node is not built .* no C\+\+ compiler was found \(no-such-c\+\+\): install g\+\+/)]);
  });

  (nativeNode || compilerAvailable() ? test : test.skip)('node --native builds the native head node on first use, and it took its heads in the generation', () => {
    expect(nativeNode?.output()).toMatch(/building the native head node on first use/);
    expect(nativeNode?.output()).toMatch(/assignment \S+: heads /);
  });

  test('generate --json gives the golden tokens', () => {
    const out = execFileSync(process.execPath, [meshLlm, 'generate', '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json'], { cwd: work, env, encoding: 'utf8' });
    expect(JSON.parse(out).tokens).toEqual(goldenIds('once-greedy-64'));
  }, 60000);
});
