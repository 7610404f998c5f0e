/**
 * Fetching the default model into ./models: from the public tinyllamas location, another
 * URL, or a local mirror folder. Files are checked against known SHA-256 digests and
 * against their own headers, written under a temporary name and renamed into place.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Checkpoint } from './checkpoint';
import { MeshLlmError } from './errors';
import { Tokenizer } from './tokenizer';

export const PUBLIC_MODEL_URL = 'https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K/';

export const MODEL_FILES = [
  { name: 'stories260K.bin', bytes: 1056540, sha256: 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696' },
  { name: 'tok512.bin', bytes: 6227, sha256: '037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312' },
] as const;

export type Progress = (file: string, done: number, total: number) => void;

function isUrl(source: string): boolean {
  return /^https?:\/\//i.test(source);
}

async function readSource(source: string, name: string, expectedBytes: number, progress?: Progress): Promise<Buffer> {
  if (!isUrl(source)) {
    const p = path.join(source, name);
    if (!fs.existsSync(p)) throw new MeshLlmError(`fetch-model: ${p} does not exist (the mirror folder must hold ${MODEL_FILES.map((f) => f.name).join(' and ')})`);
    const data = fs.readFileSync(p);
    progress?.(name, data.length, data.length);
    return data;
  }
  const url = new URL(name, source.endsWith('/') ? source : `${source}/`).toString();
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new MeshLlmError(`fetch-model: cannot download ${url} (${(e as Error).cause ?? (e as Error).message}); offline, use --from with a mirror folder`);
  }
  if (!res.ok || !res.body) throw new MeshLlmError(`fetch-model: ${url} answered HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || expectedBytes;
  const chunks: Buffer[] = [];
  let done = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    chunks.push(Buffer.from(chunk));
    done += chunk.length;
    progress?.(name, done, total);
  }
  return Buffer.concat(chunks);
}

/** Copies or downloads the model files into destDir; returns the paths written. */
export async function fetchModel(source: string, destDir: string, progress?: Progress): Promise<string[]> {
  fs.mkdirSync(destDir, { recursive: true });
  const written: string[] = [];
  for (const f of MODEL_FILES) {
    const data = await readSource(source, f.name, f.bytes, progress);
    const digest = crypto.createHash('sha256').update(data).digest('hex');
    if (data.length !== f.bytes || digest !== f.sha256) {
      throw new MeshLlmError(`fetch-model: ${f.name} from ${source} is ${data.length} bytes with sha256 ${digest}; expected ${f.bytes} bytes with sha256 ${f.sha256}`);
    }
    const dest = path.join(destDir, f.name);
    const tmp = `${dest}.part`;
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, dest);
    written.push(dest);
  }
  const ckpt = Checkpoint.open(written[0]);
  ckpt.close();
  Tokenizer.load(written[1], ckpt.info.config.vocabSize);
  return written;
}
