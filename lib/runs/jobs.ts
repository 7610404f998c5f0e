/**
 * Durable jobs on the run store: what the Node-RED flow (and any gateway) calls to make each
 * generation a job that is committed before it is acknowledged, recorded token by token, and
 * resumed after a restart from its last committed position.
 *
 *   accept (queued, committed) -> begun (running, the mesh) -> token ... -> finished | failed
 *
 * A gateway that stops mid-run leaves the job running; the next one finds it among
 * unfinished() and resumes it with resumeOf(): the recorded tokens are fed again (the KV
 * caches fill again) and the rest is generated, the same tokens as an uninterrupted run.
 */
import { createHash, randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { BOS } from '../llm/config';
import { GenerateOptions, GenerationResult } from '../llm/engine';
import { GatherRecord, JobRow, MeshRecord, RunStore, StoredSettings } from './store';
import type { JobMessage } from '../mesh/wire';

/** A token's record beyond the token: what the flow runtime's sample() tells (lib/flow/runtime.ts TokenDetail). */
export interface TokenExtra {
  probability?: number;
  topK?: [number, number][];
  kl?: number;
  node?: string | null;
}

/** The steering in force when a token is recorded (lib/flow/runtime.ts SteeringInForce). */
export interface SteeringRecord {
  readings: Record<string, Record<string, number>>;
  alpha: number;
  baselines?: unknown;
  vectors: Record<string, unknown>;
}

/** The Jobs of each mesh in this process (by mesh id), for the nodes that record into the run holding it (alerts). */
const ofMesh = new Map<string, Jobs>();

export function registerMeshJobs(meshId: string, jobs: Jobs): () => void {
  ofMesh.set(meshId, jobs);
  return () => {
    if (ofMesh.get(meshId) === jobs) ofMesh.delete(meshId);
  };
}

export function jobsOfMesh(meshId: string): Jobs | undefined {
  return ofMesh.get(meshId);
}

/** sha256 of the model's checkpoint and tokenizer: a resumed job must run on the same model. */
export function modelDigest(modelPath: string, tokenizerPath: string): string {
  const h = createHash('sha256');
  h.update(fs.readFileSync(modelPath));
  h.update(fs.readFileSync(tokenizerPath));
  return h.digest('hex');
}

export function settingsOf(o: GenerateOptions): StoredSettings {
  return { prompt: o.prompt, steps: o.steps, temperature: o.temperature, topP: o.topP, seed: o.seed.toString() };
}

export function optionsOf(s: StoredSettings): GenerateOptions {
  return { prompt: s.prompt, steps: s.steps, temperature: s.temperature, topP: s.topP, seed: BigInt(s.seed) };
}

/** The model a gateway runs: the path it was loaded from and its digest. */
export interface ModelIdentity {
  path: string;
  digest: string;
}

/** What a job as seen over HTTP (GET /jobs/:id) carries: its state and its tokens so far. */
export interface JobView {
  id: string;
  state: JobRow['state'];
  source: string;
  request: StoredSettings;
  position: number;
  tokens: number[];
  text: string;
  error: string | null;
  mesh: MeshRecord | null;
}

/** A line of the past-runs list: id, state, where it came from, prompt, tokens committed, when. */
export interface JobSummary {
  id: string;
  state: JobRow['state'];
  source: string;
  prompt: string;
  steps: number;
  tokens: number;
  createdMs: number;
  updatedMs: number;
}

export type Resume = { tokens: number[] } | { refused: string };

export class Jobs {
  readonly store: RunStore;
  /** Set while the gateway stops: runs aborted then stay unfinished, to be resumed. */
  closing = false;
  /** Runtime run id -> job id, for the runs in progress in this process. */
  private readonly ofRun = new Map<string, string>();
  /** Runtime run id -> its prompt's token count, BOS included (a token at a later position was sampled). */
  private readonly promptTokens = new Map<string, number>();
  /** Jobs claimed by this process (queued or running here). */
  private readonly claimed = new Set<string>();
  /** The job whose run holds the mesh (one at a time), and its gathers since its last token. */
  private current: string | null = null;
  private gathers: GatherRecord[] = [];
  /** The last position recorded of the current job, and the steering recorded with it. */
  private currentPos = 0;
  private recordedSteering = new Map<string, SteeringRecord | null>();

  /** Told each committed change of a job (the gateway publishes it on mesh-llm/{mesh}/jobs/{id}: lib/runs/bus.ts). */
  onChange: ((m: JobMessage) => void) | null = null;

  constructor(store: RunStore) {
    this.store = store;
  }

  /** A new job (with the id the request chose, if it did), committed as queued before this returns. */
  accept(options: GenerateOptions, source: string, model: ModelIdentity, id: string = randomUUID()): JobRow {
    const job = this.store.addJob({ id, source, settings: settingsOf(options), model: model.path, modelDigest: model.digest });
    this.claimed.add(job.id);
    this.tellState(job.id);
    return job;
  }

  /** A job's state as its message tells it: with the tokens and pieces so far, and at the end the text. */
  stateOf(jobId: string, extra: Partial<JobMessage> = {}): JobMessage | null {
    const job = this.store.job(jobId);
    if (!job) return null;
    const tokens = this.store.tokens(jobId);
    return {
      protocol: 1,
      job: job.id,
      state: job.state,
      position: job.position,
      tokens: [BOS, ...tokens.map((t) => t.token)],
      pieces: tokens.map((t) => t.piece),
      ...(job.state === 'done' && job.text !== null ? { text: job.text } : {}),
      ...(job.error ? { error: job.error.slice(0, 2000) } : {}),
      ...extra,
    };
  }

  /** Tells a job's state again (a repeated request for a job that exists). */
  tellState(jobId: string, extra: Partial<JobMessage> = {}): void {
    if (!this.onChange) return;
    const m = this.stateOf(jobId, extra);
    if (m) this.onChange(m);
  }

  /** Claims an unfinished job for this process; false if it is already queued or running here. */
  claim(id: string): boolean {
    if (this.claimed.has(id)) return false;
    this.claimed.add(id);
    return true;
  }

  /**
   * The recorded tokens to resume a job with, or why it cannot be: its model changed
   * (the job is then marked refused, with the reason).
   */
  resumeOf(job: JobRow, model: ModelIdentity): Resume {
    if (job.modelDigest !== model.digest) {
      const refused = `job ${job.id} was accepted for the model with digest ${job.modelDigest.slice(0, 12)}… (${job.model}); this gateway runs ${model.digest.slice(0, 12)}… (${model.path}): refused rather than continued on another model`;
      this.store.setState(job.id, 'refused', refused);
      this.release(job.id);
      this.tellState(job.id);
      return { refused };
    }
    const tokens = this.store.tokens(job.id);
    const contiguous: number[] = [];
    for (const t of tokens) {
      if (t.pos !== contiguous.length + 1) break;
      contiguous.push(t.token);
    }
    return { tokens: contiguous };
  }

  /** The job's run started on the mesh (its runtime run id, the mesh it runs on). */
  begun(jobId: string, runId: string, mesh: MeshRecord, promptTokens: number): void {
    this.ofRun.set(runId, jobId);
    this.promptTokens.set(runId, promptTokens);
    this.current = jobId;
    this.gathers = [];
    this.currentPos = 0;
    this.store.started(jobId, mesh);
    this.tellState(jobId);
  }

  jobOfRun(runId: string): string | undefined {
    return this.ofRun.get(runId);
  }

  /** A layer's gather of the run holding the mesh; written with the position's token. */
  gather(pos: number, layer: number, ms: number, nodes: readonly { node: string; ms: number }[] = []): void {
    if (!this.current) return;
    this.gathers.push({ pos, layer, node: '', ms });
    for (const n of nodes) this.gathers.push({ pos, layer, node: n.node, ms: n.ms });
  }

  /** An alert raised while a run holds the mesh: recorded with the run, at its last recorded position. */
  alert(alert: unknown, atMs = Date.now()): void {
    if (this.current) this.store.addAlert(this.current, { pos: this.currentPos || null, atMs, alert });
  }

  /**
   * A token of a run: committed with its gathers unless it is already recorded (a resumed
   * run feeding its recorded tokens again). True if it is new.
   */
  token(runId: string, t: { pos: number; token: number; piece: string }, extra: TokenExtra = {}, steering: SteeringRecord | null = null): boolean {
    const jobId = this.ofRun.get(runId);
    if (!jobId) return true;
    const gathers = this.gathers;
    this.gathers = [];
    const job = this.store.job(jobId);
    if (job && t.pos <= job.position) return false;
    if (jobId === this.current) this.currentPos = t.pos;
    const sampled = t.pos >= (this.promptTokens.get(runId) ?? 0);
    if (steering && this.recordedSteering.get(jobId) !== steering) this.steeringInForce(jobId, t.pos, steering, job?.settings);
    this.store.addToken(jobId, { pos: t.pos, token: t.token, piece: t.piece, sampled, ...extra }, gathers);
    this.onChange?.({ protocol: 1, job: jobId, state: 'running', position: t.pos, token: { pos: t.pos, token: t.token, piece: t.piece } });
    return true;
  }

  /** The steering in force from position pos: each node's readings, baselines and vector; the run's alpha with the first. */
  private steeringInForce(jobId: string, pos: number, s: SteeringRecord, settings: StoredSettings | undefined): void {
    const first = !this.recordedSteering.has(jobId);
    this.recordedSteering.set(jobId, s);
    const nodes = [...new Set([...Object.keys(s.readings), ...Object.keys(s.vectors)])].sort();
    const baselines = (s.baselines ?? {}) as Record<string, unknown>;
    for (const node of nodes) this.store.addReading(jobId, { pos, node, readings: s.readings[node] ?? {}, baselines: baselines[node], vector: s.vectors[node] });
    if (first && settings && settings.alpha === undefined) this.store.setSettings(jobId, { ...settings, alpha: s.alpha, sensors: 'flow' });
  }

  finished(runId: string, result: GenerationResult): void {
    const jobId = this.ofRun.get(runId);
    if (!jobId) return;
    this.store.finish(jobId, result.text);
    this.tellState(jobId, { tokensPerSecond: Math.max(0, result.tokensPerSecond) });
    this.end(runId, jobId);
  }

  /** A run that failed: its job fails with the reason, unless the gateway is stopping (it is resumed then). */
  failed(runId: string, error: Error): void {
    const jobId = this.ofRun.get(runId);
    if (!jobId) return;
    if (!this.closing) {
      this.store.setState(jobId, 'failed', error.message);
      this.tellState(jobId);
    }
    this.end(runId, jobId);
  }

  /** The run holding the mesh ended with an error (the runtime says which run only by its turn). */
  ended(error: Error): void {
    const runId = [...this.ofRun].find(([, job]) => job === this.current)?.[0];
    if (runId) this.failed(runId, error);
  }

  /** A job that failed before its run began (a request the model cannot take). */
  refusedAtStart(jobId: string, error: Error): void {
    if (!this.closing) {
      this.store.setState(jobId, 'failed', error.message);
      this.tellState(jobId);
    }
    this.release(jobId);
  }

  /** The newest jobs, as the dashboard's past-runs panel lists them. */
  recent(limit = 20): JobSummary[] {
    return this.store.jobs(limit).map((j) => ({ id: j.id, state: j.state, source: j.source, prompt: j.settings.prompt, steps: j.settings.steps, tokens: j.position, createdMs: j.createdMs, updatedMs: j.updatedMs }));
  }

  /** The job as GET /jobs/:id answers it, or null. */
  view(id: string): JobView | null {
    const job = this.store.find(id);
    if (!job) return null;
    const tokens = this.store.tokens(job.id);
    return {
      id: job.id,
      state: job.state,
      source: job.source,
      request: job.settings,
      position: job.position,
      tokens: [BOS, ...tokens.map((t) => t.token)],
      text: job.text ?? tokens.map((t) => t.piece).join(''),
      error: job.error,
      mesh: job.mesh,
    };
  }

  private end(runId: string, jobId: string): void {
    this.ofRun.delete(runId);
    this.recordedSteering.delete(jobId);
    this.promptTokens.delete(runId);
    if (this.current === jobId) this.current = null;
    this.release(jobId);
  }

  private release(jobId: string): void {
    this.claimed.delete(jobId);
  }
}
