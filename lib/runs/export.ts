/**
 * A recorded run as a file: JSON Lines (every record, one object a line, each with its
 * "type": job, token, gather, reading, alert; reads back into the same RunRecord) or CSV (one
 * row per token with the round trip of its position, for a spreadsheet; reads back into the
 * token rows).
 */
import { MeshLlmError } from '../llm/errors';
import { AlertRecord, GatherRecord, JobRow, ReadingRecord, RunRecord, TokenRecord } from './store';

export const EXPORT_FORMATS = ['jsonl', 'csv'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export function toJsonl(r: RunRecord): string {
  const lines = [
    { type: 'job', ...r.job },
    ...r.tokens.map((t) => ({ type: 'token', ...t })),
    ...r.gathers.map((g) => ({ type: 'gather', ...g })),
    ...r.readings.map((x) => ({ type: 'reading', ...x })),
    ...r.alerts.map((a) => ({ type: 'alert', ...a })),
  ];
  return lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
}

export function fromJsonl(text: string): RunRecord {
  let job: JobRow | null = null;
  const out: Omit<RunRecord, 'job'> = { tokens: [], gathers: [], readings: [], alerts: [] };
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    let o: { type?: string } & Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch (e) {
      throw new MeshLlmError(`line ${i + 1} of the run export is not JSON: ${(e as Error).message}`);
    }
    const { type, ...rest } = o;
    if (type === 'job') job = rest as unknown as JobRow;
    else if (type === 'token') out.tokens.push(rest as unknown as TokenRecord);
    else if (type === 'gather') out.gathers.push(rest as unknown as GatherRecord);
    else if (type === 'reading') out.readings.push(rest as unknown as ReadingRecord);
    else if (type === 'alert') out.alerts.push(rest as unknown as AlertRecord);
    else throw new MeshLlmError(`line ${i + 1} of the run export has type ${JSON.stringify(type)} (expected job, token, gather, reading or alert)`);
  });
  if (!job) throw new MeshLlmError('the run export has no job line');
  return { job, ...out };
}

export const CSV_COLUMNS = ['pos', 'token', 'piece', 'sampled', 'probability', 'top_k', 'kl', 'node', 'round_trip_ms'] as const;

function csvField(v: string | number | boolean | null | undefined): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

/** One row per token; round_trip_ms: the sum of the gathers of the position that computed it. */
export function toCsv(r: RunRecord): string {
  const roundTrip = new Map<number, number>();
  for (const g of r.gathers) if (g.node === '' && g.ms != null) roundTrip.set(g.pos, (roundTrip.get(g.pos) ?? 0) + g.ms);
  const rows = r.tokens.map((t) => {
    const rt = roundTrip.get(t.pos - 1);
    return [t.pos, t.token, t.piece, t.sampled, t.probability, t.topK ? JSON.stringify(t.topK) : null, t.kl, t.node, rt === undefined ? null : Number(rt.toFixed(3))].map(csvField).join(',');
  });
  return [CSV_COLUMNS.join(','), ...rows].join('\n') + '\n';
}

/** RFC 4180 fields of a CSV text. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else if (c !== '\r') field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows;
}

/** The token rows of a CSV export. */
export function tokensFromCsv(text: string): TokenRecord[] {
  const [header, ...rows] = parseCsv(text);
  if (header?.join(',') !== CSV_COLUMNS.join(',')) throw new MeshLlmError(`not a run CSV export: the header is not ${CSV_COLUMNS.join(',')}`);
  const num = (s: string) => (s === '' ? null : Number(s));
  return rows.map((f) => ({ pos: Number(f[0]), token: Number(f[1]), piece: f[2], sampled: f[3] === 'true', probability: num(f[4]), topK: f[5] ? JSON.parse(f[5]) : null, kl: num(f[6]), node: f[7] === '' ? null : f[7] }));
}
