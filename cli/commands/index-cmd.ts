/** `mesh-llm index`: the retrieval role's index of a corpus folder and a sensor history, in one file. */
import * as fs from 'node:fs';
import { UsageError, parseOptions } from '../args';
import { printJson } from '../output';
import { PassageIndex } from '../../lib/agent/retrieval';
import { readSensorCsv } from '../../lib/steering/sensors';
import { AlertMessage, alertProblem } from '../../lib/alerts/alerts';
import { MeshLlmError } from '../../lib/llm/errors';

export const usage = `mesh-llm index --out FILE [--corpus DIR] [--sensors CSV] [--alerts FILE] [--json]

  --corpus DIR       a folder of .txt and .md files (searched recursively): one passage per paragraph
  --sensors CSV      a sensor trace (at,node,<channels>) added as readings with node and time
  --alerts FILE      alerts (schemas/alert.json), a JSON array or one object a line
  --out FILE         where to write the index (load it with mesh-llm role retrieval --index FILE)
  --json             print the counts as one JSON object`;

export const indexCommandSpec = {
  corpus: { type: 'string' },
  sensors: { type: 'string' },
  alerts: { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Alerts of a file: a JSON array, or JSON lines; each checked against schemas/alert.json. */
export function readAlerts(file: string): AlertMessage[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new MeshLlmError(`alerts ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const values: unknown[] = text.trim().startsWith('[') ? JSON.parse(text) : text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
  values.forEach((v, i) => {
    const problem = alertProblem(v);
    if (problem) throw new MeshLlmError(`alerts ${file}, entry ${i + 1}: ${problem}`);
  });
  return values as AlertMessage[];
}

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(argv, indexCommandSpec, 'index');
  if (!v.out) throw new UsageError('index: --out FILE is required');
  if (!v.corpus && !v.sensors && !v.alerts) throw new UsageError('index: give --corpus DIR, --sensors CSV or --alerts FILE (or several)');
  const index = PassageIndex.empty();
  const t0 = Date.now();
  if (v.corpus) index.addCorpus(v.corpus);
  if (v.sensors) for (const m of readSensorCsv(v.sensors)) index.addReading(m);
  if (v.alerts) for (const a of readAlerts(v.alerts)) index.addAlert(a);
  index.save(v.out);
  const counts = index.counts();
  if (v.json) printJson({ out: v.out, passages: index.size, ...counts, seconds: (Date.now() - t0) / 1000 });
  else process.stdout.write(`${v.out}: ${counts.document} document passages, ${counts.reading} readings, ${counts.alert} alerts\n`);
  return 0;
}
