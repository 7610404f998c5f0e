/** A worker thread of `steer calibrate`: its share of the lexicon gradient's basis vectors (gradient.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { GradientWorkerData, GradientWorkerMessage, gradientWorkerMain } from './gradient';

const post = (m: GradientWorkerMessage) => parentPort?.postMessage(m);
gradientWorkerMain(workerData as GradientWorkerData, post).catch((e: Error) => post({ error: e.message }));
