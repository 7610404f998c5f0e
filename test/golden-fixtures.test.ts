/**
 * The golden outputs the tests compare with are in the repository (test/fixtures/golden),
 * copies of the shared folder ../shared/golden; where that folder exists they must not drift.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GOLDEN_DIR_ENV, goldenFixturesFolder, goldenFolder, sharedGoldenFolder } from '../lib/llm/golden';

const dataFiles = (dir: string) => fs.readdirSync(dir).filter((f) => f !== 'README.md').sort();

test('the golden folder is the fixtures in the repository unless MESH_LLM_GOLDEN_DIR names another', () => {
  const saved = process.env[GOLDEN_DIR_ENV];
  try {
    delete process.env[GOLDEN_DIR_ENV];
    expect(goldenFolder()).toBe(goldenFixturesFolder());
    process.env[GOLDEN_DIR_ENV] = '/somewhere/golden';
    expect(goldenFolder()).toBe('/somewhere/golden');
  } finally {
    if (saved === undefined) delete process.env[GOLDEN_DIR_ENV];
    else process.env[GOLDEN_DIR_ENV] = saved;
  }
});

test('the fixtures hold the token ids, texts and logits of both golden runs, a few KB', () => {
  const files = dataFiles(goldenFixturesFolder());
  expect(files).toEqual(['bos-greedy-256.ids', 'bos-greedy-256.txt', 'once-greedy-64.ids', 'once-greedy-64.logits', 'once-greedy-64.q8.txt', 'once-greedy-64.txt']);
  const bytes = files.reduce((sum, f) => sum + fs.statSync(path.join(goldenFixturesFolder(), f)).size, 0);
  expect(bytes).toBeLessThan(32 * 1024);
});

const shared = sharedGoldenFolder();
(fs.existsSync(shared) ? test : test.skip)('the fixtures are byte for byte the files of ../shared/golden (where that folder exists)', () => {
  expect(dataFiles(goldenFixturesFolder())).toEqual(dataFiles(shared));
  for (const f of dataFiles(shared)) {
    expect({ file: f, same: fs.readFileSync(path.join(goldenFixturesFolder(), f)).equals(fs.readFileSync(path.join(shared, f))) }).toEqual({ file: f, same: true });
  }
});
