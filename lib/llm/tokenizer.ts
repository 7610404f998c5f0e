/**
 * The llama2.c tokenizer: a SentencePiece BPE vocabulary stored as (score, bytes) pairs.
 * encode() and decode() follow llama2.c's run.c exactly: BOS, the dummy-prefix space,
 * UTF-8 code points looked up whole or as byte-fallback tokens, then greedy merging of the
 * best-scoring adjacent pair. Pieces are handled as byte strings (one latin1 char a byte).
 * The vocabulary comes from a llama2.c tokenizer file, a GGUF model's metadata
 * (tokenizer.ggml.tokens and .scores) or a Hugging Face tokenizer.json (or its folder).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshLlmError } from './errors';
import { BOS, EOS } from './config';
import { Vocabulary, ggufVocabulary, isGguf } from './gguf';
import { HF_TOKENIZER } from './hf';
import { readTokenizerJson } from './tokenizer-json';

/** Byte-fallback tokens <0x00>..<0xFF> sit at ids 3..258. */
const BYTE_FALLBACK_OFFSET = 3;

export class Tokenizer {
  readonly path: string;
  readonly maxTokenLength: number;
  /** Each piece as a byte string (latin1: one char per byte). */
  readonly pieces: string[];
  readonly scores: Float32Array;
  private readonly lookup = new Map<string, number>();
  private readonly byteOfPiece: (number | undefined)[];

  private constructor(path: string, maxTokenLength: number, pieces: string[], scores: Float32Array) {
    this.path = path;
    this.maxTokenLength = maxTokenLength;
    this.pieces = pieces;
    this.scores = scores;
    pieces.forEach((p, id) => {
      if (!this.lookup.has(p)) this.lookup.set(p, id);
    });
    this.byteOfPiece = pieces.map((p) => {
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(p);
      return m ? parseInt(m[1], 16) : undefined;
    });
  }

  get vocabSize(): number {
    return this.pieces.length;
  }

  /**
   * Reads a tokenizer: a llama2.c tokenizer file, a GGUF file's vocabulary, a tokenizer.json
   * or a Hugging Face folder holding one. expectVocab, when given, must equal its token count.
   */
  static load(file: string, expectVocab?: number): Tokenizer {
    if (isDirectory(file)) return Tokenizer.fromVocabulary(path.join(file, HF_TOKENIZER), readTokenizerJson(path.join(file, HF_TOKENIZER)), expectVocab);
    if (file.endsWith('.json')) return Tokenizer.fromVocabulary(file, readTokenizerJson(file), expectVocab);
    if (isGguf(file)) return Tokenizer.fromVocabulary(file, ggufVocabulary(file), expectVocab);
    return Tokenizer.loadLlama2c(file, expectVocab);
  }

  /** A tokenizer over a vocabulary read from a model file or tokenizer.json. */
  static fromVocabulary(file: string, v: Vocabulary, expectVocab?: number): Tokenizer {
    const bad = (what: string): never => {
      throw new MeshLlmError(`tokenizer file ${file}: ${what}`);
    };
    if (expectVocab !== undefined && v.pieces.length !== expectVocab) bad(`holds ${v.pieces.length} tokens, but the model's vocabulary has ${expectVocab}`);
    if (v.pieces.length < BYTE_FALLBACK_OFFSET + 256) bad(`holds ${v.pieces.length} tokens, fewer than the 259 (BOS, EOS, 256 byte fallbacks) every llama2.c vocabulary has`);
    for (let b = 0; b < 256; b++) {
      const want = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
      if (v.pieces[BYTE_FALLBACK_OFFSET + b] !== want) bad(`token ${BYTE_FALLBACK_OFFSET + b} is ${JSON.stringify(v.pieces[BYTE_FALLBACK_OFFSET + b])}, expected the byte fallback ${want}`);
    }
    const maxTokenLength = v.pieces.reduce((n, p) => Math.max(n, p.length), 1);
    return new Tokenizer(file, maxTokenLength, v.pieces, v.scores);
  }

  /** Reads a llama2.c tokenizer file; expectVocab, when given, must equal its token count. */
  private static loadLlama2c(path: string, expectVocab?: number): Tokenizer {
    let buf: Buffer;
    try {
      buf = fs.readFileSync(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const hint = code === 'ENOENT' ? 'does not exist (expected a llama2.c tokenizer such as tok512.bin; run `npm run fetch-model`)' : `cannot be read (${code ?? String(e)})`;
      throw new MeshLlmError(`tokenizer file ${path}: ${hint}`);
    }
    const bad = (what: string): never => {
      throw new MeshLlmError(`tokenizer file ${path}: ${what}`);
    };
    if (buf.length < 4) bad(`is ${buf.length} bytes, too short for the 4-byte max_token_length header`);
    const maxTokenLength = buf.readInt32LE(0);
    if (maxTokenLength <= 0 || maxTokenLength > 1024) bad(`has an impossible max_token_length ${maxTokenLength} (not a llama2.c tokenizer file?)`);
    const pieces: string[] = [];
    const scores: number[] = [];
    let off = 4;
    while (off < buf.length && (expectVocab === undefined || pieces.length < expectVocab)) {
      if (off + 8 > buf.length) bad(`is truncated inside the record of token ${pieces.length} (at byte ${off} of ${buf.length})`);
      const score = buf.readFloatLE(off);
      const len = buf.readInt32LE(off + 4);
      off += 8;
      if (len < 0 || len > maxTokenLength) bad(`token ${pieces.length} has length ${len}, outside 0..max_token_length ${maxTokenLength}`);
      if (off + len > buf.length) bad(`is truncated inside the bytes of token ${pieces.length} (at byte ${off} of ${buf.length})`);
      if (!Number.isFinite(score)) bad(`token ${pieces.length} has a non-finite score`);
      pieces.push(buf.toString('latin1', off, off + len));
      scores.push(score);
      off += len;
    }
    if (expectVocab !== undefined && pieces.length < expectVocab) {
      bad(`holds ${pieces.length} tokens, but the model's vocabulary has ${expectVocab}`);
    }
    if (expectVocab !== undefined && off !== buf.length) {
      bad(`holds more than the model's ${expectVocab} tokens (${buf.length - off} bytes left over): it belongs to another model`);
    }
    if (pieces.length < BYTE_FALLBACK_OFFSET + 256) bad(`holds ${pieces.length} tokens, fewer than the 259 (BOS, EOS, 256 byte fallbacks) every llama2.c vocabulary has`);
    return new Tokenizer(path, maxTokenLength, pieces, Float32Array.from(scores));
  }

  /** Token ids of text, as run.c's encode(): optional BOS, the dummy-prefix space, BPE merges, optional EOS. */
  encode(text: string, bos = true, eos = false): number[] {
    const bytes = Buffer.from(text, 'utf8');
    const tokens: number[] = [];
    if (bos) tokens.push(BOS);
    if (bytes.length > 0) tokens.push(this.idOf(' '));
    // One token per UTF-8 code point, or one byte-fallback token per byte.
    let i = 0;
    while (i < bytes.length) {
      let j = i + 1;
      while (j < bytes.length && (bytes[j] & 0xc0) === 0x80 && j - i < 4) j++;
      const cp = bytes.toString('latin1', i, j);
      const id = this.lookup.get(cp);
      if (id !== undefined) tokens.push(id);
      else for (let k = i; k < j; k++) tokens.push(bytes[k] + BYTE_FALLBACK_OFFSET);
      i = j;
    }
    this.mergePairs(tokens);
    if (eos) tokens.push(EOS);
    return tokens;
  }

  /** Repeatedly merges the adjacent pair whose concatenation is the best-scoring token (first wins ties). */
  private mergePairs(tokens: number[]): void {
    for (;;) {
      let bestScore = -1e10;
      let bestId = -1;
      let bestIdx = -1;
      for (let i = 0; i < tokens.length - 1; i++) {
        const id = this.lookup.get(this.pieces[tokens[i]] + this.pieces[tokens[i + 1]]);
        if (id !== undefined && this.scores[id] > bestScore) {
          bestScore = this.scores[id];
          bestId = id;
          bestIdx = i;
        }
      }
      if (bestIdx < 0) return;
      tokens.splice(bestIdx, 2, bestId);
    }
  }

  private idOf(piece: string): number {
    const id = this.lookup.get(piece);
    if (id === undefined) throw new MeshLlmError(`tokenizer file ${this.path}: has no token for ${JSON.stringify(piece)}`);
    return id;
  }

  /** The exact bytes of `token` following `prev`: the leading space is stripped after BOS, <0xNN> becomes the raw byte. */
  pieceBytes(prev: number, token: number): Buffer {
    if (!Number.isInteger(token) || token < 0 || token >= this.pieces.length) {
      throw new MeshLlmError(`token id ${token} is outside the vocabulary (0..${this.pieces.length - 1})`);
    }
    const byte = this.byteOfPiece[token];
    if (byte !== undefined) return Buffer.from([byte]);
    let p = this.pieces[token];
    if (prev === BOS && p.startsWith(' ')) p = p.slice(1);
    return Buffer.from(p, 'latin1');
  }

  /** What run.c prints for `token` following `prev`: pieceBytes, less a lone unprintable byte (safe_printf). */
  decodePiece(prev: number, token: number): Buffer {
    const piece = this.pieceBytes(prev, token);
    return piece.length === 1 && !isPrintableOrSpace(piece[0]) ? Buffer.alloc(0) : piece;
  }

  /** Text of a token sequence as run.c prints it (the first id is context, e.g. BOS). */
  decode(ids: readonly number[]): string {
    return this.join(ids, (a, b) => this.decodePiece(a, b));
  }

  /** The exact text a token sequence encodes (byte fallbacks kept): decodeRaw(encode(s)) === s. */
  decodeRaw(ids: readonly number[]): string {
    return this.join(ids, (a, b) => this.pieceBytes(a, b));
  }

  private join(ids: readonly number[], piece: (prev: number, token: number) => Buffer): string {
    const parts: Buffer[] = [];
    for (let i = 1; i < ids.length; i++) parts.push(piece(ids[i - 1], ids[i]));
    return Buffer.concat(parts).toString('utf8');
  }
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** C's isprint() || isspace() in the "C" locale. */
function isPrintableOrSpace(b: number): boolean {
  return (b >= 0x20 && b <= 0x7e) || (b >= 0x09 && b <= 0x0d);
}
