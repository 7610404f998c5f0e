/**
 * Long steering computations (the corpus, the lexicon gradient) split over threads: the units
 * of work 0 .. total-1 in contiguous shares, the first in this thread, the others each in a
 * worker thread with its own engine. Results come back in share order, so what is computed
 * does not depend on the thread count.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker, parentPort, workerData } from 'node:worker_threads';
import { MeshLlmError } from '../llm/errors';

export interface Range {
  from: number;
  to: number;
}

/** A worker thread's messages: one per unit of work done, then its result, or an error. */
export type WorkerMessage<R> = { tick: true } | { result: R } | { error: string };

/** Contiguous shares of [0, total): `threads` of them (default one per CPU, at most 4), never more than total. */
export function shareOut(total: number, threads?: number): Range[] {
  const n = Math.max(1, Math.min(threads ?? Math.min(os.availableParallelism(), 4), total));
  return Array.from({ length: n }, (_, t) => ({ from: Math.floor((t * total) / n), to: Math.floor(((t + 1) * total) / n) }));
}

export interface SplitWork<R> {
  total: number;
  threads?: number;
  /** The worker script, a compiled file beside this one (it calls serveWorker). */
  script: string;
  /** What a share is, for error messages ("stories", "basis vectors"). */
  units: string;
  /** What a worker thread is given for its share. */
  data: (range: Range) => unknown;
  /** This thread's share: calls tick after each unit. */
  local: (range: Range, tick: () => void) => Promise<R>;
  /** Called after every unit done in any thread, with the number done so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** Runs the shares; returns their results in share order (this thread's first). */
export async function splitWork<R>(o: SplitWork<R>): Promise<R[]> {
  const shares = shareOut(o.total, o.threads);
  let done = 0;
  const tick = () => o.onProgress?.(++done, o.total);
  const workers = shares.slice(1).map((range) => runWorker<R>(o.script, o.data(range), `${o.units} ${range.from}-${range.to - 1}`, tick));
  workers.forEach((w) => w.catch(() => undefined)); // awaited below, after this thread's share
  const results = [await o.local(shares[0], tick)];
  for (const w of workers) results.push(await w);
  return results;
}

function runWorker<R>(script: string, data: unknown, share: string, onTick: () => void): Promise<R> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(path.join(__dirname, script), { workerData: data });
    let result: { value: R } | undefined;
    worker.on('message', (m: WorkerMessage<R>) => {
      if ('tick' in m) onTick();
      else if ('result' in m) result = { value: m.result };
      else reject(new MeshLlmError(`worker thread for ${share}: ${m.error}`));
    });
    worker.once('error', (e) => reject(new MeshLlmError(`worker thread for ${share}: ${e.message}`)));
    worker.once('exit', (code) => (result ? resolve(result.value) : reject(new MeshLlmError(`worker thread for ${share} exited with code ${code} before finishing`))));
  });
}

/** The body of a worker script: runs `main` on the thread's data and posts ticks and the result (or the error). */
export function serveWorker<D, R>(main: (data: D, tick: () => void) => Promise<R>): void {
  const post = (m: WorkerMessage<R>) => parentPort?.postMessage(m);
  main(workerData as D, () => post({ tick: true })).then(
    (result) => post({ result }),
    (e: Error) => post({ error: e.message }),
  );
}
