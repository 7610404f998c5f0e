/** A worker thread of `steer calibrate`: writes its share of the corpus and sends back its sums (directions.ts). */
import { parentPort, workerData } from 'node:worker_threads';
import { CorpusWorkerData, CorpusWorkerMessage, corpusWorkerMain } from './directions';

const post = (m: CorpusWorkerMessage) => parentPort?.postMessage(m);
corpusWorkerMain(workerData as CorpusWorkerData, post).catch((e: Error) => post({ error: e.message }));
