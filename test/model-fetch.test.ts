/**
 * Model files that are not found are fetched once into ./models: from a mirror folder or URL
 * (MESH_LLM_MIRROR, --from), checked against their digests; the next run finds them there.
 * No test touches the network: mirrors are temporary folders or an HTTP server on loopback.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshLlmError } from '../lib/llm/errors';
import { MODEL_FILES, Progress, progressLines } from '../lib/llm/fetch';
import { fetchSource, provideModelFiles, resolveOrFetchModelPaths } from '../lib/llm/provide';
import { packageRoot } from '../lib/llm/resolve';
import { int8ModelPath, modelPaths, tokenizer32kPath } from './support/fixtures';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-fetch-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ALL = MODEL_FILES.map((f) => f.name);
const originals: Record<string, string> = {
  'stories260K.bin': modelPaths.model,
  'tok512.bin': modelPaths.tokenizer,
  'stories260K_q8.bin': int8ModelPath(),
  'tokenizer.bin': tokenizer32kPath(),
};

let folders = 0;
/** A new empty folder under tmp. */
function folder(name: string): string {
  const dir = path.join(tmp, `${++folders}-${name}`);
  fs.mkdirSync(dir);
  return dir;
}

/** A mirror folder holding copies of the named files. */
function mirrorOf(names: readonly string[]): string {
  const dir = folder('mirror');
  for (const n of names) fs.copyFileSync(originals[n], path.join(dir, n));
  return dir;
}

/**
 * A working directory with no ./models and no ../shared beside it, as the package root too
 * (so the package's own folders hold nothing either), with MESH_LLM_MIRROR set.
 */
function freshMachine(mirror: string) {
  const work = path.join(folder('machine'), 'work');
  fs.mkdirSync(work);
  const events: Parameters<Progress>[0][] = [];
  return { work, events, options: { env: { MESH_LLM_MIRROR: mirror }, cwd: work, root: work, progress: (e: Parameters<Progress>[0]) => events.push(e) } };
}

const sameBytes = (a: string, b: string) => fs.readFileSync(a).equals(fs.readFileSync(b));

/** A mirror of every file in which one byte of `name` is flipped. */
function corruptMirror(name: string, at: number): string {
  const mirror = mirrorOf(ALL);
  const data = fs.readFileSync(path.join(mirror, name));
  data[at] ^= 1;
  fs.writeFileSync(path.join(mirror, name), data);
  return mirror;
}

describe('fetching missing model files once into ./models', () => {
  test('files found nowhere are copied from MESH_LLM_MIRROR into ./models, and found there the next time without copying', async () => {
    const mirror = mirrorOf(ALL);
    const m = freshMachine(mirror);
    const first = await provideModelFiles(ALL, m.options);
    expect(first).toEqual(ALL.map((n) => path.join(m.work, 'models', n)));
    for (const n of ALL) expect(sameBytes(path.join(m.work, 'models', n), originals[n])).toBe(true);
    expect(m.events.map((e) => e.name)).toEqual(ALL);
    const mtimes = first.map((p) => fs.statSync(p).mtimeMs);
    fs.rmSync(mirror, { recursive: true });
    m.events.length = 0;
    expect(await provideModelFiles(ALL, m.options)).toEqual(first);
    expect(await resolveOrFetchModelPaths({}, m.options)).toEqual({ model: first[0], tokenizer: first[1] });
    expect(m.events).toEqual([]);
    expect(first.map((p) => fs.statSync(p).mtimeMs)).toEqual(mtimes);
  });

  test('a command fetches only what it needs: the model and its tokenizer', async () => {
    const m = freshMachine(mirrorOf(ALL));
    const paths = await resolveOrFetchModelPaths({}, m.options);
    expect(paths).toEqual({ model: path.join(m.work, 'models', 'stories260K.bin'), tokenizer: path.join(m.work, 'models', 'tok512.bin') });
    expect(fs.readdirSync(path.join(m.work, 'models')).sort()).toEqual(['stories260K.bin', 'tok512.bin']);
  });

  test('a corrupted file in the mirror is refused, naming the file, the expected and the actual digest, and nothing is left in ./models', async () => {
    const mirror = corruptMirror('tok512.bin', 100);
    const m = freshMachine(mirror);
    const refused = provideModelFiles(['tok512.bin'], m.options);
    await expect(refused).rejects.toThrow(MeshLlmError);
    await expect(refused).rejects.toThrow(
      new RegExp(`tok512.bin from ${mirror} is 6227 bytes with sha256 (?!037cb335)[0-9a-f]{64}; expected 6227 bytes with sha256 037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312$`),
    );
    expect(fs.readdirSync(path.join(m.work, 'models'))).toEqual([]);
  });

  test('a mirror that does not exist gives, at once, one line naming it and how to provide the files', async () => {
    const m = freshMachine(path.join(tmp, 'no-such-mirror'));
    const started = Date.now();
    const error = await resolveOrFetchModelPaths({}, m.options).catch((e: Error) => e);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(error).toBeInstanceOf(MeshLlmError);
    const message = (error as Error).message;
    expect(message).not.toMatch(/\n/);
    expect(message).toMatch(new RegExp(`^stories260K.bin was not found in ${m.work}/models, .* and could not be fetched: the mirror folder ${tmp}/no-such-mirror \\(MESH_LLM_MIRROR\\) does not exist`));
    for (const way of ['--model PATH', 'MESH_LLM_MODEL_DIR', 'MESH_LLM_MIRROR to a folder or URL', 'npm run fetch-model -- --from', './models', '../shared/models']) expect(message).toContain(way);
  });

  test('a file the mirror lacks is made when it can be: stories260K_q8.bin is the int8 export of stories260K.bin, digest-checked', async () => {
    const m = freshMachine(mirrorOf(['stories260K.bin']));
    const [q8] = await provideModelFiles(['stories260K_q8.bin'], m.options);
    expect(sameBytes(q8, originals['stories260K_q8.bin'])).toBe(true);
    expect(m.events.map((e) => e.name)).toEqual(['stories260K.bin', 'stories260K_q8.bin', 'stories260K_q8.bin']);
  });

  test('a file no mirror holds and nothing makes is an error naming the mirror', async () => {
    const m = freshMachine(mirrorOf(['stories260K.bin']));
    await expect(provideModelFiles(['tokenizer.bin'], m.options)).rejects.toThrow(/tokenizer.bin is not in the mirror .* \(MESH_LLM_MIRROR\); to provide it, pass --model/);
  });

  test('--from comes before MESH_LLM_MIRROR, and a relative mirror folder is taken from the working directory', () => {
    const env = { MESH_LLM_MIRROR: 'mirror' };
    expect(fetchSource('http://example.org/models/', { env, cwd: '/w' })).toEqual({ mirror: 'http://example.org/models/', via: '--from' });
    expect(fetchSource(undefined, { env, cwd: '/w' })).toEqual({ mirror: '/w/mirror', via: 'MESH_LLM_MIRROR' });
    expect(fetchSource(undefined, { env: {}, cwd: '/w' })).toEqual({});
  });
});

describe('a mirror URL', () => {
  let server: http.Server;
  let base: string;
  const served = mirrorOf(['stories260K.bin', 'tok512.bin', 'tokenizer.bin']);
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const file = path.join(served, path.basename(req.url ?? ''));
      if (!fs.existsSync(file)) return void res.writeHead(404).end();
      const data = fs.readFileSync(file);
      res.writeHead(200, { 'content-length': data.length, connection: 'close' });
      // in pieces, as a network delivers it
      for (let i = 0; i < data.length; i += 16384) res.write(data.subarray(i, i + 16384));
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models`;
  });
  afterAll(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });

  test('files are downloaded from the URL base, a missing one (404) is made when it can be, and progress on a pipe is a line per quarter', async () => {
    const m = freshMachine(base);
    await provideModelFiles(ALL, m.options);
    for (const n of ALL) expect(sameBytes(path.join(m.work, 'models', n), originals[n])).toBe(true);
    const written: string[] = [];
    const lines = progressLines({ write: (s: string) => written.push(s) } as unknown as NodeJS.WritableStream);
    m.events.filter((e) => e.name === 'stories260K.bin').forEach(lines);
    expect(written).toEqual(written.map(() => expect.stringMatching(new RegExp(`^fetching stories260K.bin from ${base}/stories260K.bin: \\d+% \\(\\d+ of 1056540 bytes\\)\\n$`))));
    const quarters = written.map((w) => Math.floor(Number(/: (\d+)%/.exec(w)?.[1]) / 25));
    expect(quarters).toEqual([0, 1, 2, 3, 4]);
  });
});

describe('progress lines', () => {
  test('on a terminal, one line per file rewritten in place, ended once', () => {
    const written: string[] = [];
    const lines = progressLines({ isTTY: true, write: (s: string) => written.push(s) } as unknown as NodeJS.WritableStream);
    for (let done = 0; done <= 100000; done += 500) lines({ name: 'f.bin', origin: 'http://x/f.bin', done, total: 100000 });
    expect(written).toHaveLength(101);
    expect(written.every((w) => w.startsWith('\rfetching f.bin from http://x/f.bin: '))).toBe(true);
    expect(written.filter((w) => w.endsWith('\n'))).toEqual([written[100]]);
  });
});

describe('npm run fetch-model', () => {
  const fetchScript = path.join(packageRoot(), 'dist', 'scripts', 'fetch-model.js');
  const fetchModel = (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [fetchScript, ...args], { cwd, encoding: 'utf8', env: { ...process.env, MESH_LLM_MIRROR: '', ...env } });

  test('puts every file a command or a test needs into ./models from MESH_LLM_MIRROR, one progress line each; run again, it copies nothing', () => {
    const work = folder('work');
    const r = fetchModel(['--json'], work, { MESH_LLM_MIRROR: mirrorOf(ALL) });
    expect(r.status).toBe(0);
    const files: string[] = JSON.parse(r.stdout).files;
    expect(files).toEqual(ALL.map((n) => path.join(work, 'models', n)));
    for (const n of ALL) expect(sameBytes(path.join(work, 'models', n), originals[n])).toBe(true);
    const again = fetchModel([], work, { MESH_LLM_MIRROR: path.join(tmp, 'gone') });
    expect(again.status).toBe(0);
    expect(again.stderr).toBe('');
    expect(again.stdout).toBe(`model files ready:\n${files.map((f) => `  ${f}`).join('\n')}\n`);
    const shown = fetchModel(['--to', 'elsewhere'], work, { MESH_LLM_MIRROR: mirrorOf(ALL) });
    expect(shown.stderr.trim().split('\n')).toEqual(ALL.map((n) => expect.stringMatching(new RegExp(`^fetching ${n} from .*: 100% \\(\\d+ of \\d+ bytes\\)$`))));
  });

  test('--from a folder holding a different file is refused by its digest, and nothing is written', () => {
    const mirror = corruptMirror('stories260K.bin', 5000);
    const work = folder('work');
    const r = fetchModel(['--from', mirror], work);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^fetching stories260K.bin from .*\nmesh-llm: error: stories260K.bin from .* sha256 [0-9a-f]{64}; expected 1056540 bytes with sha256 b0a507e7[0-9a-f]{56}\n$/);
    expect(fs.readdirSync(path.join(work, 'models'))).toEqual([]);
  });

  test('--from a folder that does not exist is one error line saying how to provide the files', () => {
    const r = fetchModel(['--from', 'nowhere'], folder('work'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^mesh-llm: error: the mirror folder .*\/nowhere \(--from\) does not exist; to provide stories260K.bin, pass --model PATH .*\n$/);
  });
});
