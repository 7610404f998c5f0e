/**
 * The run store: one SQLite database (better-sqlite3, WAL) that holds every generation as a
 * durable job and a recorded run. A job is a request with its state and the position it
 * reached; its run is what happened: prompt and settings, model and digest, the mesh it ran
 * on, and per token, per gather, per reading and per alert a row.
 *
 * Every write is one transaction committed before the call returns, so what a caller has
 * been told is stored survives a SIGKILL at any point (a commit is in the write-ahead log,
 * which the operating system holds once write() returns). What survives a power cut as well:
 * with `synchronous` NORMAL (the default) every change of a job (accepted, started, its
 * state, finished) is committed with an fsync (FULL), which also makes every token committed
 * before it durable; a token's own commit is not fsynced, so a power cut may lose the tokens
 * since the job's last such commit (the job then resumes from the position before them). With
 * `synchronous` FULL every commit is fsynced. A database that cannot be opened
 * (corrupt, not SQLite, locked by another process) is a MeshLlmError naming the file:
 * there is no in-memory fallback.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { MeshLlmError } from '../llm/errors';

/** The file name of the store in a data folder. */
export const RUN_STORE_FILE = 'runs.sqlite';

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'refused';

/**
 * How commits reach the disk: NORMAL fsyncs the commits that change a job and not those of
 * tokens, gathers, readings and alerts; FULL fsyncs every commit (one fsync per token).
 */
export type Synchronous = 'NORMAL' | 'FULL';

/** A generation request as stored (the seed as a decimal string: it is a 64-bit integer). */
export interface StoredSettings {
  prompt: string;
  steps: number;
  temperature: number;
  topP: number;
  seed: string;
  /** Steering in force for the whole run, if any (alpha and where readings came from). */
  alpha?: number;
  sensors?: string;
}

/** The mesh a run ran on. */
export interface MeshRecord {
  kind: 'engine' | 'mqtt' | 'radio';
  nodes: { node: string; heads: number[]; runtime?: string }[];
  quant?: string;
  /** Radio settings (region, SF, bandwidth, channels, loss) when it ran over the radio. */
  radio?: Record<string, unknown>;
}

export interface JobRow {
  id: string;
  seq: number;
  source: string;
  state: JobState;
  settings: StoredSettings;
  model: string;
  modelDigest: string;
  /** The last position whose token is committed (0: none yet). */
  position: number;
  error: string | null;
  mesh: MeshRecord | null;
  text: string | null;
  createdMs: number;
  updatedMs: number;
}

export interface TokenRecord {
  pos: number;
  token: number;
  piece: string;
  /** False for a prompt token (fed, not sampled). */
  sampled: boolean;
  probability?: number | null;
  /** The most probable alternatives: [token, probability]. */
  topK?: [number, number][] | null;
  /** KL(steered || unsteered) of this position's distribution. */
  kl?: number | null;
  /** The node the steering effect of this token is attributed to. */
  node?: string | null;
}

export interface GatherRecord {
  pos: number;
  layer: number;
  /** The node, or '' for the whole gather. */
  node: string;
  ms?: number | null;
  airtimeMs?: number | null;
}

export interface ReadingRecord {
  pos: number;
  node: string;
  readings: unknown;
  baselines?: unknown;
  vector?: unknown;
}

export interface AlertRecord {
  pos: number | null;
  atMs: number;
  alert: unknown;
}

export interface RunRecord {
  job: JobRow;
  tokens: TokenRecord[];
  gathers: GatherRecord[];
  readings: ReadingRecord[];
  alerts: AlertRecord[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  source TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'refused')),
  settings TEXT NOT NULL,
  model TEXT NOT NULL,
  model_digest TEXT NOT NULL,
  position INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  mesh TEXT,
  text TEXT,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS tokens (
  job INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
  pos INTEGER NOT NULL,
  token INTEGER NOT NULL,
  piece TEXT NOT NULL,
  sampled INTEGER NOT NULL,
  probability REAL,
  top_k TEXT,
  kl REAL,
  node TEXT,
  PRIMARY KEY (job, pos)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gathers (
  job INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
  pos INTEGER NOT NULL,
  layer INTEGER NOT NULL,
  node TEXT NOT NULL,
  ms REAL,
  airtime_ms REAL,
  PRIMARY KEY (job, pos, layer, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings (
  job INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
  pos INTEGER NOT NULL,
  node TEXT NOT NULL,
  readings TEXT NOT NULL,
  baselines TEXT,
  vector TEXT,
  PRIMARY KEY (job, pos, node)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerts (
  job INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE,
  pos INTEGER,
  at_ms INTEGER NOT NULL,
  alert TEXT NOT NULL
);
`;
const SCHEMA_VERSION = '1';

interface JobSqlRow {
  seq: number;
  id: string;
  source: string;
  state: JobState;
  settings: string;
  model: string;
  model_digest: string;
  position: number;
  error: string | null;
  mesh: string | null;
  text: string | null;
  created_ms: number;
  updated_ms: number;
}

interface TokenSqlRow {
  pos: number;
  token: number;
  piece: string;
  sampled: number;
  probability: number | null;
  top_k: string | null;
  kl: number | null;
  node: string | null;
}

function jobOf(r: JobSqlRow): JobRow {
  return {
    id: r.id,
    seq: r.seq,
    source: r.source,
    state: r.state,
    settings: JSON.parse(r.settings),
    model: r.model,
    modelDigest: r.model_digest,
    position: r.position,
    error: r.error,
    mesh: r.mesh ? JSON.parse(r.mesh) : null,
    text: r.text,
    createdMs: r.created_ms,
    updatedMs: r.updated_ms,
  };
}

function tokenOf(r: TokenSqlRow): TokenRecord {
  return { pos: r.pos, token: r.token, piece: r.piece, sampled: r.sampled === 1, probability: r.probability, topK: r.top_k ? JSON.parse(r.top_k) : null, kl: r.kl, node: r.node };
}

const json = (v: unknown): string | null => (v === undefined || v === null ? null : JSON.stringify(v));

/** Why a database could not be opened, as the person running mesh-llm needs to hear it. */
function openError(file: string, e: unknown): MeshLlmError {
  const err = e as Error & { code?: string };
  const code = err.code ?? '';
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return new MeshLlmError(`the run store ${file} is locked by another process (another mesh-llm start on the same --data?): ${err.message}`);
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) return new MeshLlmError(`the run store ${file} is corrupt or not an SQLite database (${err.message}); move it away to start a new one`);
  return new MeshLlmError(`cannot open the run store ${file}: ${err.message}`);
}

export class RunStore {
  readonly file: string;
  private readonly db: Database.Database;
  readonly synchronous: Synchronous;
  private readonly statements: ReturnType<RunStore['prepare']>;

  private constructor(file: string, db: Database.Database, synchronous: Synchronous) {
    this.file = file;
    this.db = db;
    this.synchronous = synchronous;
    this.statements = this.prepare();
  }

  /** Runs `write` as one transaction committed with an fsync, whatever the store's `synchronous`. */
  private durable<T>(write: () => T): T {
    if (this.synchronous === 'FULL') return write();
    this.db.pragma('synchronous = FULL');
    try {
      return write();
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  /**
   * Opens (or creates) the store at `file`. Checks it: an integrity check, and a write
   * transaction within `busyMs` (another process holding one is "locked").
   */
  static open(file: string, o: { busyMs?: number; readonly?: boolean; synchronous?: Synchronous } = {}): RunStore {
    const synchronous = o.synchronous ?? 'NORMAL';
    const abs = path.resolve(file);
    if (o.readonly && !fs.existsSync(abs)) throw new MeshLlmError(`no run store at ${abs} (it is created by mesh-llm start in its --data folder)`);
    fs.mkdirSync(path.dirname(abs), { recursive: true });
    let db: Database.Database | undefined;
    try {
      db = new Database(abs, { timeout: o.busyMs ?? 2000, readonly: o.readonly ?? false, fileMustExist: o.readonly ?? false });
      if (!o.readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma(`synchronous = ${synchronous}`);
        db.pragma('foreign_keys = ON');
      }
      const check = db.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw Object.assign(new Error(String(check)), { code: 'SQLITE_CORRUPT' });
      if (!o.readonly) {
        db.exec('BEGIN IMMEDIATE');
        db.exec(SCHEMA);
        db.prepare('INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)').run('schema', SCHEMA_VERSION);
        db.exec('COMMIT');
      }
      const version = (db.prepare("SELECT value FROM meta WHERE key = 'schema'").get() as { value: string } | undefined)?.value;
      if (version !== SCHEMA_VERSION) throw new MeshLlmError(`the run store ${abs} has schema ${version ?? 'none'}; this mesh-llm reads schema ${SCHEMA_VERSION}`);
      return new RunStore(abs, db, synchronous);
    } catch (e) {
      db?.close();
      if (e instanceof MeshLlmError) throw e;
      throw openError(abs, e);
    }
  }

  /** The store of a data folder: DIR/runs.sqlite. */
  static inDataDir(dataDir: string, o: { readonly?: boolean } = {}): RunStore {
    return RunStore.open(path.join(dataDir, RUN_STORE_FILE), o);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private prepare() {
    const db = this.db;
    return {
      insertJob: db.prepare('INSERT INTO jobs (id, source, state, settings, model, model_digest, created_ms, updated_ms) VALUES (@id, @source, @state, @settings, @model, @digest, @now, @now)'),
      job: db.prepare('SELECT * FROM jobs WHERE id = ?'),
      jobByPrefix: db.prepare("SELECT * FROM jobs WHERE id LIKE ? || '%' ORDER BY seq LIMIT 2"),
      jobs: db.prepare('SELECT * FROM jobs ORDER BY seq DESC LIMIT ?'),
      unfinished: db.prepare("SELECT * FROM jobs WHERE state IN ('queued', 'running') ORDER BY seq"),
      setState: db.prepare('UPDATE jobs SET state = @state, error = @error, updated_ms = @now WHERE id = @id'),
      setMesh: db.prepare("UPDATE jobs SET state = 'running', mesh = @mesh, updated_ms = @now WHERE id = @id"),
      finish: db.prepare("UPDATE jobs SET state = 'done', text = @text, error = NULL, updated_ms = @now WHERE id = @id"),
      insertToken: db.prepare('INSERT INTO tokens (job, pos, token, piece, sampled, probability, top_k, kl, node) VALUES (@job, @pos, @token, @piece, @sampled, @probability, @topK, @kl, @node)'),
      advance: db.prepare('UPDATE jobs SET position = @pos, updated_ms = @now WHERE id = @id AND position < @pos'),
      tokens: db.prepare('SELECT pos, token, piece, sampled, probability, top_k, kl, node FROM tokens WHERE job = ? ORDER BY pos'),
      insertGather: db.prepare('INSERT OR REPLACE INTO gathers (job, pos, layer, node, ms, airtime_ms) VALUES (@job, @pos, @layer, @node, @ms, @airtimeMs)'),
      gathers: db.prepare('SELECT pos, layer, node, ms, airtime_ms AS airtimeMs FROM gathers WHERE job = ? ORDER BY pos, layer, node'),
      insertReading: db.prepare('INSERT OR REPLACE INTO readings (job, pos, node, readings, baselines, vector) VALUES (@job, @pos, @node, @readings, @baselines, @vector)'),
      readings: db.prepare('SELECT pos, node, readings, baselines, vector FROM readings WHERE job = ? ORDER BY pos, node'),
      insertAlert: db.prepare('INSERT INTO alerts (job, pos, at_ms, alert) VALUES (@job, @pos, @atMs, @alert)'),
      alerts: db.prepare('SELECT pos, at_ms AS atMs, alert FROM alerts WHERE job = ? ORDER BY rowid'),
    };
  }

  /** The job's row number, which keys its tokens, gathers, readings and alerts (ids never change, so it is kept). */
  private readonly seqs = new Map<string, number>();
  private seqOf(id: string): number {
    let seq = this.seqs.get(id);
    if (seq === undefined) {
      seq = (this.db.prepare('SELECT seq FROM jobs WHERE id = ?').get(id) as { seq: number } | undefined)?.seq;
      if (seq === undefined) throw new MeshLlmError(`no job ${id} in the run store ${this.file}`);
      this.seqs.set(id, seq);
    }
    return seq;
  }

  /** A new job, committed (state queued) before this returns. */
  addJob(j: { id: string; source: string; settings: StoredSettings; model: string; modelDigest: string; state?: JobState }): JobRow {
    this.durable(() => this.statements.insertJob.run({ id: j.id, source: j.source, state: j.state ?? 'queued', settings: JSON.stringify(j.settings), model: j.model, digest: j.modelDigest, now: Date.now() }));
    return this.job(j.id) as JobRow;
  }

  job(id: string): JobRow | null {
    const r = this.statements.job.get(id) as JobSqlRow | undefined;
    return r ? jobOf(r) : null;
  }

  /** A job by its id or an unambiguous prefix of it (as `runs show` takes it). */
  find(idOrPrefix: string): JobRow | null {
    const exact = this.job(idOrPrefix);
    if (exact) return exact;
    const rows = this.statements.jobByPrefix.all(idOrPrefix) as JobSqlRow[];
    if (rows.length > 1) throw new MeshLlmError(`run id "${idOrPrefix}" is ambiguous: ${rows.map((r) => r.id).join(', ')}, …`);
    return rows.length ? jobOf(rows[0]) : null;
  }

  /** The newest jobs first. */
  jobs(limit = 100): JobRow[] {
    return (this.statements.jobs.all(limit) as JobSqlRow[]).map(jobOf);
  }

  /** Jobs still to run (queued, or running when the gateway stopped), oldest first. */
  unfinished(): JobRow[] {
    return (this.statements.unfinished.all() as JobSqlRow[]).map(jobOf);
  }

  /** The job started on this mesh. */
  started(id: string, mesh: MeshRecord): void {
    this.durable(() => this.statements.setMesh.run({ id, mesh: JSON.stringify(mesh), now: Date.now() }));
  }

  setState(id: string, state: JobState, error: string | null = null): void {
    this.durable(() => this.statements.setState.run({ id, state, error, now: Date.now() }));
  }

  finish(id: string, text: string): void {
    this.durable(() => this.statements.finish.run({ id, text, now: Date.now() }));
  }

  /** One token, the gathers of its position and the job's position with it, in one transaction. */
  addToken(job: string, t: TokenRecord, gathers: readonly GatherRecord[] = []): void {
    const seq = this.seqOf(job);
    this.db.transaction(() => {
      for (const g of gathers) this.addGather(job, g);
      this.statements.insertToken.run({ job: seq, pos: t.pos, token: t.token, piece: t.piece, sampled: t.sampled ? 1 : 0, probability: t.probability ?? null, topK: json(t.topK), kl: t.kl ?? null, node: t.node ?? null });
      this.statements.advance.run({ id: job, pos: t.pos, now: Date.now() });
    })();
  }

  /** A sampled token's attribution (it arrives after the token: the KL of its top node, and the node). */
  setAttribution(job: string, pos: number, kl: number, node: string | null): void {
    this.db.prepare('UPDATE tokens SET kl = ?, node = ? WHERE job = ? AND pos = ?').run(kl, node, this.seqOf(job), pos);
  }

  /** The settings a run ran with, once known in full (the alpha its steering used). */
  setSettings(id: string, settings: StoredSettings): void {
    this.db.prepare('UPDATE jobs SET settings = ?, updated_ms = ? WHERE id = ?').run(JSON.stringify(settings), Date.now(), id);
  }

  tokens(job: string): TokenRecord[] {
    return (this.statements.tokens.all(this.seqOf(job)) as TokenSqlRow[]).map(tokenOf);
  }

  addGather(job: string, g: GatherRecord): void {
    this.statements.insertGather.run({ job: this.seqOf(job), pos: g.pos, layer: g.layer, node: g.node, ms: g.ms ?? null, airtimeMs: g.airtimeMs ?? null });
  }

  addReading(job: string, r: ReadingRecord): void {
    this.statements.insertReading.run({ job: this.seqOf(job), pos: r.pos, node: r.node, readings: JSON.stringify(r.readings), baselines: json(r.baselines), vector: json(r.vector) });
  }

  addAlert(job: string, a: AlertRecord): void {
    this.statements.insertAlert.run({ job: this.seqOf(job), pos: a.pos, atMs: a.atMs, alert: JSON.stringify(a.alert) });
  }

  /** Everything recorded of a job's run. */
  run(id: string): RunRecord | null {
    const job = this.find(id);
    if (!job) return null;
    const parse = (v: string | null) => (v === null ? undefined : JSON.parse(v));
    return {
      job,
      tokens: this.tokens(job.id),
      gathers: (this.statements.gathers.all(job.seq) as GatherRecord[]).map((g) => ({ ...g })),
      readings: (this.statements.readings.all(job.seq) as { pos: number; node: string; readings: string; baselines: string | null; vector: string | null }[]).map((r) => ({ pos: r.pos, node: r.node, readings: JSON.parse(r.readings), baselines: parse(r.baselines), vector: parse(r.vector) })),
      alerts: (this.statements.alerts.all(job.seq) as { pos: number | null; atMs: number; alert: string }[]).map((a) => ({ pos: a.pos, atMs: a.atMs, alert: JSON.parse(a.alert) })),
    };
  }

  /** A whole run written back (an import of an export): one transaction. */
  importRun(r: RunRecord): void {
    this.durable(() => this.db.transaction(() => {
      this.statements.insertJob.run({ id: r.job.id, source: r.job.source, state: r.job.state, settings: JSON.stringify(r.job.settings), model: r.job.model, digest: r.job.modelDigest, now: r.job.createdMs });
      if (r.job.mesh) this.db.prepare('UPDATE jobs SET mesh = ? WHERE id = ?').run(JSON.stringify(r.job.mesh), r.job.id);
      for (const t of r.tokens) this.addToken(r.job.id, t);
      for (const g of r.gathers) this.addGather(r.job.id, g);
      for (const x of r.readings) this.addReading(r.job.id, x);
      for (const a of r.alerts) this.addAlert(r.job.id, a);
      this.db.prepare('UPDATE jobs SET text = ?, error = ?, position = ?, updated_ms = ? WHERE id = ?').run(r.job.text, r.job.error, r.job.position, r.job.updatedMs, r.job.id);
    })());
  }

  /** Bytes on disk: the database and its write-ahead log. */
  sizeBytes(): number {
    const size = (f: string) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
    return size(this.file) + size(`${this.file}-wal`);
  }
}
