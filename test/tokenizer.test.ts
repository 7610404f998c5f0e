import * as path from 'node:path';
import { Tokenizer } from '../lib/llm/tokenizer';
import { MeshLlmError } from '../lib/llm/errors';
import { GOLDEN_RUNS, goldenIds, goldenText, modelPaths, tokenizer32kPath } from './support/fixtures';

const tok512 = Tokenizer.load(modelPaths.tokenizer, 512);
const tok32k = Tokenizer.load(tokenizer32kPath());

describe('llama2.c tokenizer, 512-token vocabulary', () => {
  test('encode("Once upon a time") with BOS equals the golden prompt tokens', () => {
    expect(tok512.encode('Once upon a time', true, false)).toEqual(goldenIds('once-greedy-64').slice(0, 5));
  });

  test('BOS and EOS flags, and the empty prompt', () => {
    expect(tok512.encode('', true, false)).toEqual([1]);
    expect(tok512.encode('', false, false)).toEqual([]);
    const withEos = tok512.encode('Hi', true, true);
    expect(withEos[0]).toBe(1);
    expect(withEos[withEos.length - 1]).toBe(2);
  });

  for (const run of GOLDEN_RUNS) {
    test(`decoding ${run.name}.ids reproduces the text run.c printed`, () => {
      expect(tok512.decode(goldenIds(run.name))).toBe(goldenText(run.name));
    });
  }

  test('characters outside the vocabulary fall back to byte tokens and round-trip', () => {
    const text = 'Zoë saw 🐉 — 雨';
    const ids = tok512.encode(text, true, false);
    expect(ids.some((id) => id >= 3 && id <= 258)).toBe(true);
    expect(tok512.decodeRaw(ids)).toBe(text);
  });

  test('an out-of-range token id is a clear error', () => {
    expect(() => tok512.decodePiece(1, 512)).toThrow(/outside the vocabulary/);
  });
});

describe('llama2.c tokenizer, 32k Llama 2 vocabulary', () => {
  test('has 32000 tokens', () => {
    expect(tok32k.vocabSize).toBe(32000);
  });

  test('round-trips a paragraph', () => {
    const paragraph =
      'The little robot walked through the quiet forest at dawn. It listened to the birds, measured the wind, ' +
      'and wrote in its notebook: "Temperature 12.5°C, humidity 81%, café closed." Then it said, "Hello, world!"\n' +
      'Nobody answered; the river kept on flowing (as rivers do) — naïve, patient, and cold. 🌲';
    const ids = tok32k.encode(paragraph, true, false);
    expect(ids[0]).toBe(1);
    expect(ids.length).toBeLessThan(Buffer.byteLength(paragraph) / 2);
    expect(tok32k.decodeRaw(ids)).toBe(paragraph);
  });

  test('merges known words into single tokens', () => {
    const ids = tok32k.encode('Hello world', false, false);
    expect(ids.map((id) => tok32k.pieces[id])).toEqual([' Hello', ' world']);
  });
});

describe('tokenizer file errors', () => {
  test('a missing tokenizer names the path', () => {
    expect(() => Tokenizer.load('/nonexistent/tok512.bin')).toThrow(MeshLlmError);
    expect(() => Tokenizer.load('/nonexistent/tok512.bin')).toThrow(/\/nonexistent\/tok512.bin: does not exist/);
  });

  test('a tokenizer of another vocabulary size is rejected', () => {
    expect(() => Tokenizer.load(tokenizer32kPath(), 512)).toThrow(/belongs to another model/);
  });
});
