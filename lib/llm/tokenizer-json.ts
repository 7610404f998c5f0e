/**
 * Hugging Face tokenizer.json for Llama's SentencePiece-BPE vocabularies (TinyLlama's):
 * read into the llama2.c tokenizer's (piece, score) form, and written from it. The llama2.c
 * tokenizer merges the best-scoring adjacent pair; a BPE merge list ranks its merges, so
 * the piece a merge produces is scored by its rank (the first merge scores highest) and a
 * piece no merge produces scores below every merge. On a vocabulary whose merges follow its
 * scores (every SentencePiece BPE model) both give the same tokens.
 */
import * as fs from 'node:fs';
import { MeshLlmError } from './errors';
import { Vocabulary, llama2cPiece } from './gguf';

const SPACE = '\u2581';

interface TokenizerJson {
  model?: { type?: unknown; vocab?: unknown; merges?: unknown; byte_fallback?: unknown };
  added_tokens?: { id: number; content: string; special?: boolean }[];
}

/** The vocabulary of a tokenizer.json, each problem named by its key. */
export function readTokenizerJson(file: string): Vocabulary {
  const bad = (what: string): never => {
    throw new MeshLlmError(`tokenizer file ${file}: ${what}`);
  };
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    bad(code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`);
  }
  let j: TokenizerJson = {};
  try {
    j = JSON.parse(text);
  } catch (e) {
    bad(`is not JSON (${(e as Error).message})`);
  }
  const model = j.model;
  if (typeof model !== 'object' || model === null) bad('key model is missing (expected the tokenizer model: {"type": "BPE", "vocab", "merges"})');
  const m = model as NonNullable<TokenizerJson['model']>;
  if (m.type !== 'BPE') bad(`key model.type is ${JSON.stringify(m.type)}, expected "BPE" (a Llama SentencePiece-BPE vocabulary)`);
  if (typeof m.vocab !== 'object' || m.vocab === null || Array.isArray(m.vocab)) bad('key model.vocab is missing or not an object of piece -> id');
  if (!Array.isArray(m.merges)) bad('key model.merges is missing or not an array of merges');
  const vocab = m.vocab as Record<string, unknown>;
  const n = Object.keys(vocab).length;
  const tokens: string[] = new Array(n);
  for (const [piece, id] of Object.entries(vocab)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= n) bad(`key model.vocab[${JSON.stringify(piece)}] is ${JSON.stringify(id)}, expected an id in 0..${n - 1}`);
    if (tokens[id as number] !== undefined) bad(`key model.vocab gives id ${id} to both ${JSON.stringify(tokens[id as number])} and ${JSON.stringify(piece)}`);
    tokens[id as number] = piece;
  }
  const idOf = new Map(tokens.map((t, id) => [t, id]));
  const scores = new Float32Array(n).fill(-1e9);
  (m.merges as unknown[]).forEach((merge, rank) => {
    const pair = typeof merge === 'string' ? merge.split(' ') : merge;
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') bad(`key model.merges[${rank}] is ${JSON.stringify(merge)}, expected "a b" or ["a", "b"]`);
    const id = idOf.get((pair as string[]).join(''));
    if (id === undefined) bad(`key model.merges[${rank}] (${JSON.stringify(merge)}) makes a piece that is not in model.vocab`);
    if (scores[id as number] === -1e9) scores[id as number] = -rank;
  });
  return { pieces: tokens.map(llama2cPiece), scores };
}

/** A tokenizer.json (transformers' Llama layout) for a llama2.c vocabulary; merges in score order. */
export function tokenizerJson(pieces: readonly string[], scores: ArrayLike<number>): Record<string, unknown> {
  const text = pieces.map((p, id) => (id === 0 ? '<unk>' : id === 1 ? '<s>' : id === 2 ? '</s>' : Buffer.from(p, 'latin1').toString('utf8').replace(/ /g, SPACE)));
  const vocab: Record<string, number> = {};
  text.forEach((t, id) => (vocab[t] = id));
  const merged = text
    .map((t, id) => ({ t, id }))
    .filter(({ t, id }) => id > 2 && !/^<0x[0-9A-F]{2}>$/.test(t) && [...t].length > 1)
    .sort((a, b) => scores[b.id] - scores[a.id] || a.id - b.id);
  const merges = merged.map(({ t }) => {
    const chars = [...t];
    for (let k = 1; k < chars.length; k++) {
      const a = chars.slice(0, k).join('');
      const b = chars.slice(k).join('');
      if (a in vocab && b in vocab) return `${a} ${b}`;
    }
    throw new MeshLlmError(`piece ${JSON.stringify(t)} cannot be split into two pieces of the vocabulary`);
  });
  return {
    version: '1.0',
    added_tokens: [0, 1, 2].map((id) => ({ id, content: text[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: SPACE }, { type: 'Replace', pattern: { String: ' ' }, content: SPACE }] },
    pre_tokenizer: null,
    post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }], pair: [], special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } },
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: SPACE }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
  };
}
