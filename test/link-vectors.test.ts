/**
 * The firmware's head-link body and radio frame against the TypeScript ones: lib/link/vectors.ts
 * writes bodies and frames with the TypeScript codecs, the firmware's host tool
 * dist/firmware/link-check (firmware/test/link_check.cpp on firmware/core/link.cpp and
 * radio_frame.cpp) parses and re-encodes them, and every byte must agree. Altered copies must be
 * refused for the same reason by both, or accepted by both with the same values.
 */
import { spawnSync } from 'node:child_process';
import { firmwareBinary } from '../lib/firmware/build';
import { BodyType, checkBody, decodeBody } from '../lib/link/body';
import { BodyVector, bodyVectors, toHex, vectorLines } from '../lib/link/vectors';

interface BodyVerdict {
  ok: boolean;
  error?: string;
  input?: string;
  header?: Record<string, unknown>;
  written?: string;
  decoded?: string;
  encoded?: string;
}

/** Runs link-check on the vectors; one verdict per vector. */
function linkCheck<T>(vectors: object[]): T[] {
  const r = spawnSync(firmwareBinary('link-check'), [], { input: vectorLines(vectors as BodyVector[]), encoding: 'utf8', maxBuffer: 1 << 28 });
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  const lines = r.stdout.trim().split('\n');
  expect(lines).toHaveLength(vectors.length);
  return lines.map((l) => JSON.parse(l) as T);
}

/** What the TypeScript codec says of a body, in link-check's terms. */
function expectedOf(v: BodyVector): BodyVerdict {
  const body = Buffer.from(v.body, 'hex');
  let header;
  try {
    header = checkBody(body);
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
  const parsed = { header: { ...header }, written: v.body };
  try {
    const decoded = decodeBody(body);
    const encoded = v.values !== undefined || header.encoding === 'f32' ? { encoded: v.body } : {};
    return { ok: true, ...parsed, decoded: toHex(decoded.values), ...encoded };
  } catch (e) {
    return { ok: false, error: (e as Error).message, ...parsed };
  }
}

describe('head-link bodies', () => {
  const vectors = bodyVectors();
  let verdicts: BodyVerdict[] = [];
  beforeAll(() => {
    verdicts = linkCheck<BodyVerdict>(vectors);
  });

  test('the vectors cover every type and encoding at the stories260K and TinyLlama sizes', () => {
    const sizes = new Set<string>();
    for (const v of vectors.filter((x) => x.values !== undefined)) {
      const h = checkBody(Buffer.from(v.body, 'hex'));
      sizes.add(`${h.type === BodyType.Broadcast ? 'broadcast' : 'result'} ${h.encoding} ${h.count}`);
    }
    for (const encoding of ['f32', 'int8']) {
      for (const n of [64, 2048]) expect(sizes).toContain(`broadcast ${encoding} ${n}`);
      for (const heads of [1, 2, 3, 4, 5, 6, 7, 8]) expect(sizes).toContain(`result ${encoding} ${heads * 8}`);
      for (const heads of [1, 2, 4]) expect(sizes).toContain(`result ${encoding} ${heads * 64}`);
    }
  });

  test('the firmware parses, rewrites, decodes and encodes every body TypeScript wrote, byte for byte', () => {
    const written = vectors.filter((v) => v.values !== undefined);
    expect(written.length).toBeGreaterThan(30);
    for (const [i, v] of vectors.entries()) {
      if (v.values === undefined) continue;
      expect({ name: v.name, ...verdicts[i] }).toEqual({ name: v.name, ...expectedOf(v) });
    }
  });

  test('a body with a flipped bit, a byte missing or one too many gets the verdict and sentence decodeBody gives', () => {
    const altered = vectors.filter((v) => v.values === undefined);
    expect(altered.length).toBeGreaterThan(800);
    let refused = 0;
    for (const [i, v] of vectors.entries()) {
      if (v.values !== undefined) continue;
      const expected = expectedOf(v);
      if (!expected.ok) refused++;
      expect({ name: v.name, ...verdicts[i] }).toEqual({ name: v.name, ...expected });
    }
    // most header bits are checked (magic, version, type, encoding, reserved, count, group size)
    expect(refused).toBeGreaterThan(altered.length / 3);
  });
});
