/** A worker thread of `steer calibrate`: its share of the lexicon gradient's basis vectors (gradient.ts). */
import { gradientWorkerMain } from './gradient';
import { serveWorker } from './threads';

serveWorker(gradientWorkerMain);
