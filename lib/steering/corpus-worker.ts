/** A worker thread of `steer calibrate`: writes its share of the corpus and sends back its sums (directions.ts). */
import { corpusWorkerMain } from './directions';
import { serveWorker } from './threads';

serveWorker(corpusWorkerMain);
