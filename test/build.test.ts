/** Fast starts: each build step does nothing when what dist/ holds is newer than its sources. */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { copyIfStale, isFresh } from '../lib/build/fresh';
import { packageRoot } from '../lib/llm/resolve';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-build-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Writes a file and sets its modification time to `secondsAgo` in the past. */
function writeAged(name: string, text: string, secondsAgo: number): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, text);
  const t = new Date(Date.now() - secondsAgo * 1000);
  fs.utimesSync(p, t, t);
  return p;
}

describe('freshness of build outputs', () => {
  test('an output is fresh when it exists and is no older than every input', () => {
    const a = writeAged('a.src', 'a', 30);
    const b = writeAged('b.src', 'b', 20);
    const out = writeAged('out', 'o', 10);
    expect(isFresh([out], [a, b])).toBe(true);
    expect(isFresh([out, path.join(tmp, 'missing')], [a])).toBe(false);
    writeAged('b.src', 'b2', 0);
    expect(isFresh([out], [a, b])).toBe(false);
  });

  test('copyIfStale copies a source newer than its copy, and leaves a fresh copy alone', () => {
    const src = writeAged('page.html', 'one', 20);
    const dest = path.join(tmp, 'copies', 'page.html');
    expect(copyIfStale(src, dest)).toBe(true);
    expect(fs.readFileSync(dest, 'utf8')).toBe('one');
    expect(copyIfStale(src, dest)).toBe(false);
    writeAged('page.html', 'two', -5);
    expect(copyIfStale(src, dest)).toBe(true);
    expect(fs.readFileSync(dest, 'utf8')).toBe('two');
  });
});

test('with dist/ current, the build steps after tsc write nothing', () => {
  const root = packageRoot();
  const watched = ['dist/nodes', 'dist/lib/llm/wasm', 'dist/firmware', 'examples'].flatMap((d) =>
    fs.existsSync(path.join(root, d)) ? fs.readdirSync(path.join(root, d)).map((f) => path.join(root, d, f)) : [],
  );
  const mtimes = () => watched.filter((f) => fs.statSync(f).isFile()).map((f) => [f, fs.statSync(f).mtimeMs]);
  const before = mtimes();
  for (const step of ['dist/scripts/copy-node-assets.js', 'dist/lib/llm/wasm/assemble.js', 'dist/scripts/build-firmware.js']) {
    const r = spawnSync(process.execPath, [path.join(root, step)], { cwd: root, encoding: 'utf8' });
    expect({ step, status: r.status }).toEqual({ step, status: 0 });
  }
  expect(mtimes()).toEqual(before);
});
