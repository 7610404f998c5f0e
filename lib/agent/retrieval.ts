/**
 * The retrieval role's index: BM25 full-text search (minisearch) over passages of a local
 * corpus folder (.txt and .md files, one passage per paragraph) and over the sensor history
 * the mesh has seen (each node's readings and alerts, with node and time). `mesh-llm index`
 * builds it into a file; the retrieval role loads it and adds the live history as it arrives.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import MiniSearch, { Options, SearchResult } from 'minisearch';
import { MeshLlmError } from '../llm/errors';
import { CHANNELS } from '../steering/calibration';
import type { SensorMessage } from '../steering/sensors';
import type { AlertMessage } from '../alerts/alerts';
import { Passage, PassageKind } from './messages';

/** Words too common to tell passages apart (BM25's idf would weigh them little anyway). */
const STOPWORDS = new Set('a an and are as at be but by did do for from had has have he her his i in is it its of on or she so that the their them then there they this to was we were what when where which who will with you your'.split(' '));

/** Longest passage; a longer paragraph is cut at sentence ends. */
export const MAX_PASSAGE_CHARS = 400;

/** Readings and alerts kept in the index; older ones are dropped first. */
export const HISTORY_LIMIT = 5000;

interface IndexedPassage extends Passage {
  id: number;
}

const OPTIONS: Options<IndexedPassage> = {
  fields: ['text', 'source'],
  storeFields: ['source', 'kind', 'text', 'node', 'at'],
  processTerm: (term) => {
    const t = term.toLowerCase();
    return STOPWORDS.has(t) ? null : t;
  },
  searchOptions: { boost: { text: 2 }, prefix: (term) => term.length > 3, combineWith: 'OR' },
};

/** Paragraphs of a text (blank-line separated; Markdown heading marks dropped), each cut to MAX_PASSAGE_CHARS at sentence ends. */
export function paragraphs(text: string): string[] {
  const out: string[] = [];
  for (const block of text.replace(/\r\n/g, '\n').split(/\n\s*\n/)) {
    const clean = block
      .split('\n')
      .map((l) => l.replace(/^\s{0,3}#{1,6}\s+/, '').trim())
      .filter((l) => l !== '')
      .join(' ');
    if (!clean) continue;
    let current = '';
    for (const sentence of clean.match(/[^.!?]+[.!?]*\s*/g) ?? [clean]) {
      if (current && current.length + sentence.length > MAX_PASSAGE_CHARS) {
        out.push(current.trim());
        current = '';
      }
      current += sentence;
    }
    if (current.trim()) out.push(current.trim().slice(0, MAX_PASSAGE_CHARS));
  }
  return out;
}

/** The .txt and .md files under dir, relative paths, sorted. */
export function corpusFiles(dir: string): string[] {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new MeshLlmError(`corpus ${dir} is not a folder`);
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (/\.(txt|md)$/i.test(e.name)) out.push(r);
    }
  };
  walk('');
  return out.sort();
}

const iso = (at: number) => new Date(at).toISOString();

/** A node's readings as a sentence BM25 can match ("node-3 sound 92.0 dB SPL, vibration ..."). */
export function readingText(m: Pick<SensorMessage, 'node' | 'at' | 'readings'>): string {
  const names: Record<string, string> = { soundDb: 'sound', vibrationG: 'vibration', lightLux: 'light', temperatureC: 'temperature', humidityPct: 'humidity' };
  const parts = Object.entries(m.readings)
    .filter(([, v]) => typeof v === 'number')
    .map(([c, v]) => `${names[c] ?? c} ${Number(v).toPrecision(4)} ${CHANNELS[c]?.unit ?? ''}`.trim());
  return `${m.node} readings at ${iso(m.at)}: ${parts.join(', ')}`;
}

/** An alert as a sentence ("alert on node-3: vibration classic-sta-lta ... started ..."). */
export function alertText(a: Pick<AlertMessage, 'node' | 'channel' | 'detector' | 'value' | 'onset' | 'end' | 'name' | 'text'>): string {
  const what = a.text ?? `${a.name ?? a.detector} on ${a.channel}, value ${a.value.toPrecision(4)}`;
  return `alert on ${a.node} (${a.channel}, ${a.detector}): ${what}; started ${iso(a.onset)}${a.end === null ? ', still active' : `, ended ${iso(a.end)}`}`;
}

interface SavedIndex {
  format: 'mesh-llm-index';
  version: 1;
  nextId: number;
  passages: IndexedPassage[];
  index: unknown;
}

export class PassageIndex {
  private readonly search: MiniSearch<IndexedPassage>;
  private readonly passages = new Map<number, IndexedPassage>();
  private readonly history: number[] = [];
  private nextId = 1;

  private constructor(search?: MiniSearch<IndexedPassage>) {
    this.search = search ?? new MiniSearch(OPTIONS);
  }

  static empty(): PassageIndex {
    return new PassageIndex();
  }

  /** Every paragraph of every .txt and .md file under dir; source "file#n" (n from 1). */
  static fromCorpus(dir: string): PassageIndex {
    const index = new PassageIndex();
    index.addCorpus(dir);
    return index;
  }

  addCorpus(dir: string): number {
    let n = 0;
    for (const file of corpusFiles(dir)) {
      paragraphs(fs.readFileSync(path.join(dir, file), 'utf8')).forEach((text, i) => {
        this.add({ source: `${file}#${i + 1}`, kind: 'document', text, score: 0 });
        n++;
      });
    }
    return n;
  }

  private add(p: Passage): IndexedPassage {
    const doc: IndexedPassage = { ...p, id: this.nextId++ };
    this.search.add(doc);
    this.passages.set(doc.id, doc);
    if (p.kind !== 'document') {
      this.history.push(doc.id);
      if (this.history.length > HISTORY_LIMIT) this.remove(this.history.shift()!);
    }
    return doc;
  }

  private remove(id: number): void {
    this.search.discard(id);
    this.passages.delete(id);
  }

  /** A sensor message (schemas/sensors.json) as a passage "node@time". */
  addReading(m: Pick<SensorMessage, 'node' | 'at' | 'readings'>): void {
    this.add({ source: `${m.node}@${iso(m.at)}`, kind: 'reading', text: readingText(m), score: 0, node: m.node, at: m.at });
  }

  /** An alert (schemas/alert.json) as a passage "node@onset alert". */
  addAlert(a: AlertMessage): void {
    this.add({ source: `${a.node}@${iso(a.onset)} alert`, kind: 'alert', text: alertText(a), score: 0, node: a.node, at: a.onset });
  }

  get size(): number {
    return this.passages.size;
  }

  counts(): Record<PassageKind, number> {
    const c: Record<PassageKind, number> = { document: 0, reading: 0, alert: 0 };
    for (const p of this.passages.values()) c[p.kind]++;
    return c;
  }

  /** The k best passages for a query by BM25, best first (ties by insertion order). */
  query(text: string, k: number): Passage[] {
    if (k <= 0 || !text.trim()) return [];
    const hits: SearchResult[] = this.search.search(text);
    return hits.slice(0, k).map((h) => {
      const p = this.passages.get(h.id as number)!;
      const out: Passage = { source: p.source, kind: p.kind, text: p.text, score: h.score };
      if (p.node !== undefined) out.node = p.node;
      if (p.at !== undefined) out.at = p.at;
      return out;
    });
  }

  toJSON(): SavedIndex {
    return { format: 'mesh-llm-index', version: 1, nextId: this.nextId, passages: [...this.passages.values()], index: this.search.toJSON() };
  }

  save(file: string): void {
    fs.writeFileSync(file, JSON.stringify(this.toJSON()));
  }

  static load(file: string): PassageIndex {
    let saved: SavedIndex;
    try {
      saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new MeshLlmError(`index ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (saved?.format !== 'mesh-llm-index' || saved.version !== 1) throw new MeshLlmError(`index ${file} is not a mesh-llm index (build one with mesh-llm index --corpus DIR --out FILE)`);
    const index = new PassageIndex(MiniSearch.loadJS(saved.index as never, OPTIONS));
    index.nextId = saved.nextId;
    for (const p of saved.passages) {
      index.passages.set(p.id, p);
      if (p.kind !== 'document') index.history.push(p.id);
    }
    return index;
  }
}
