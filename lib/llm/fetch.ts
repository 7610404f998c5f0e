/**
 * Fetching model files into a folder: from a mirror (a local folder, or a URL base, holding
 * the files under their own names) or from where each original is published. Every file is
 * checked against its known size and SHA-256 digest, written under a temporary name and
 * renamed into place; a file already there with the right digest is kept, not fetched again.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { MeshLlmError } from './errors';
import { exportInt8 } from './export';
import { PROVIDE_HINT } from './resolve';

export const PUBLIC_MODEL_URL = 'https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/';
const LLAMA2C_URL = 'https://raw.githubusercontent.com/karpathy/llama2.c/master/';

/** A model file mesh-llm knows: its size and digest, and where the original comes from. */
export interface ModelFile {
  name: string;
  bytes: number;
  sha256: string;
  /** Where the original is published, if it is. */
  publicUrl?: string;
  /** How it is made from another known file when it is published nowhere (or a mirror lacks it). */
  derived?: { from: string; how: string; make: (fromPath: string) => Buffer };
}

/** Every file a command or a test needs: the model and its tokenizer, the int8 export, the 32k tokenizer. */
export const MODEL_FILES: readonly ModelFile[] = [
  { name: 'stories260K.bin', bytes: 1056540, sha256: 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696', publicUrl: `${PUBLIC_MODEL_URL}stories260K.bin` },
  { name: 'tok512.bin', bytes: 6227, sha256: '037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312', publicUrl: `${PUBLIC_MODEL_URL}tok512.bin` },
  {
    name: 'stories260K_q8.bin',
    bytes: 521728,
    sha256: 'c8c032d04f8a48b2c8f9b708cc571a895d45fe23521f47f542b897d64ad77c50',
    derived: { from: 'stories260K.bin', how: 'the int8 (version-2) export of stories260K.bin', make: (from) => exportInt8(from, 4) },
  },
  { name: 'tokenizer.bin', bytes: 433869, sha256: '50a52ef822ee9e83de5ce9d0be0a025a773d019437f58b5ff9dcafb063ece361', publicUrl: `${LLAMA2C_URL}tokenizer.bin` },
];

/** The known file of that name; any other name is an error listing the known ones. */
export function knownModelFile(name: string): ModelFile {
  const f = MODEL_FILES.find((m) => m.name === name);
  if (!f) throw new MeshLlmError(`${name} is not a file mesh-llm can fetch (it knows ${MODEL_FILES.map((m) => m.name).join(', ')})`);
  return f;
}

/**
 * Where files come from: `mirror` (a folder or a URL base) if given, else each file's public
 * location. `via` says how the mirror was named ("--from", "MESH_LLM_MIRROR"), for messages.
 */
export interface FetchSource {
  mirror?: string;
  via?: string;
}

/** A report of the bytes obtained so far of a file, from a source. */
export type Progress = (event: { name: string; origin: string; done: number; total: number }) => void;

export interface FetchOptions {
  source: FetchSource;
  /** The folder the files go into. */
  dest: string;
  progress?: Progress;
  /** Where a file already is, if anywhere: it is then used there, not fetched (by default only an intact copy in dest counts). */
  find?: (name: string) => string | undefined;
}

/** How long a server may take to answer before the fetch gives up. */
const ANSWER_TIMEOUT_MS = 20000;

/** Whether a source is a URL (http or https) rather than a folder. */
export function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Whether a file on disk is exactly the known file. */
function isIntact(p: string, f: ModelFile): boolean {
  return fs.existsSync(p) && fs.statSync(p).size === f.bytes && sha256(fs.readFileSync(p)) === f.sha256;
}

/** Downloads a URL, reporting progress; undefined when the server has no such file (404). */
async function download(url: string, name: string, expectedBytes: number, progress?: Progress): Promise<Buffer | undefined> {
  let res: Response;
  const answered = new AbortController();
  const timer = setTimeout(() => answered.abort(new Error(`no answer within ${ANSWER_TIMEOUT_MS / 1000} s`)), ANSWER_TIMEOUT_MS);
  try {
    res = await fetch(url, { signal: answered.signal });
  } catch (e) {
    const why = (e as Error).cause ?? (e as Error).message;
    throw new MeshLlmError(`cannot download ${url} (${why instanceof Error ? why.message : String(why)}); to provide ${name} offline, ${PROVIDE_HINT}`);
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 404) return undefined;
  if (!res.ok || !res.body) throw new MeshLlmError(`${name}: ${url} answered HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || expectedBytes;
  const chunks: Buffer[] = [];
  let done = 0;
  progress?.({ name, origin: url, done, total });
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    chunks.push(Buffer.from(chunk));
    done += chunk.length;
    progress?.({ name, origin: url, done, total });
  }
  return Buffer.concat(chunks);
}

/** A file from a mirror folder or URL base; undefined when the mirror does not hold it. */
async function fromMirror(mirror: string, via: string, f: ModelFile, progress?: Progress): Promise<Buffer | undefined> {
  if (isUrl(mirror)) return download(new URL(f.name, mirror.endsWith('/') ? mirror : `${mirror}/`).toString(), f.name, f.bytes, progress);
  if (!fs.existsSync(mirror)) throw new MeshLlmError(`the mirror folder ${mirror} (${via}) does not exist; to provide ${f.name}, ${PROVIDE_HINT}`);
  const p = path.join(mirror, f.name);
  if (!fs.existsSync(p)) return undefined;
  const data = fs.readFileSync(p);
  progress?.({ name: f.name, origin: mirror, done: data.length, total: data.length });
  return data;
}

/** The bytes of a file and where they came from: the mirror, the public location, or made from another file. */
async function obtain(f: ModelFile, o: FetchOptions): Promise<{ data: Buffer; origin: string }> {
  const { mirror, via = '--from' } = o.source;
  const fetched = mirror ? await fromMirror(mirror, via, f, o.progress) : f.publicUrl ? await download(f.publicUrl, f.name, f.bytes, o.progress) : undefined;
  if (fetched) return { data: fetched, origin: mirror ?? (f.publicUrl as string) };
  if (f.derived) {
    const [from] = await fetchModelFiles([f.derived.from], o);
    o.progress?.({ name: f.name, origin: from, done: 0, total: f.bytes });
    const data = f.derived.make(from);
    o.progress?.({ name: f.name, origin: from, done: data.length, total: f.bytes });
    return { data, origin: `${f.derived.how} (${from})` };
  }
  const where = mirror ? `the mirror ${mirror} (${via})` : f.publicUrl;
  throw new MeshLlmError(`${f.name} is not in ${where}; to provide it, ${PROVIDE_HINT}`);
}

/** Refuses data that is not the known file, naming the file, where it came from and both digests. */
function verify(data: Buffer, f: ModelFile, origin: string): void {
  const digest = sha256(data);
  if (data.length !== f.bytes || digest !== f.sha256) {
    throw new MeshLlmError(`${f.name} from ${origin} is ${data.length} bytes with sha256 ${digest}; expected ${f.bytes} bytes with sha256 ${f.sha256}`);
  }
}

/** Writes data under a temporary name beside dest and renames it into place (concurrent fetches never see half a file). */
function writeInPlace(dest: string, data: Buffer): void {
  const tmp = `${dest}.${process.pid}.part`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, dest);
}

/**
 * Puts the named files into o.dest: kept when already there and intact, else obtained,
 * verified and written. Returns their paths, in the order given.
 */
export async function fetchModelFiles(names: readonly string[], o: FetchOptions): Promise<string[]> {
  fs.mkdirSync(o.dest, { recursive: true });
  const paths: string[] = [];
  for (const name of names) {
    const f = knownModelFile(name);
    const dest = path.join(o.dest, f.name);
    const elsewhere = o.find?.(f.name);
    if (elsewhere) paths.push(elsewhere);
    else if (isIntact(dest, f)) paths.push(dest);
    else {
      const { data, origin } = await obtain(f, o);
      verify(data, f, origin);
      writeInPlace(dest, data);
      paths.push(dest);
    }
  }
  return paths;
}

/**
 * Progress on a stream, one line at a time: on a terminal one line per file rewritten in
 * place as the percentage grows; elsewhere (a log, a pipe) a line at each quarter.
 */
export function progressLines(stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr): Progress {
  let shown = '';
  return ({ name, origin, done, total }) => {
    const percent = Math.floor((100 * done) / total);
    const step = stream.isTTY ? `${name}:${percent}` : `${name}:${Math.floor(percent / 25)}`;
    if (step === shown) return;
    shown = step;
    const line = `fetching ${name} from ${origin}: ${percent}% (${done} of ${total} bytes)`;
    const finished = done >= total;
    if (stream.isTTY) stream.write(`\r${line}\x1b[K${finished ? '\n' : ''}`);
    else stream.write(`${line}\n`);
  };
}
