/**
 * The mesh runner: the HeadRunner of a mesh of head nodes, over a small HeadLink (what carries
 * head-link bodies to the nodes and back: MQTT, and through the LoRa bridge the radio). It owns
 * everything about running on the mesh: session and sequence numbers, the gather of each
 * layer's results, its gather timeout, the failure that ends a run, and the one request queue
 * (one run at a time per mesh). The CLI, the Node-RED flow, steered runs and the radio path all
 * run through it; lib/mesh/gateway.ts only discovers nodes and gives the runner its assignment.
 */
import { randomInt } from 'node:crypto';
import { Geometry } from '../llm/config';
import { HeadRunner, broadcastGroupSize } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { INT8_GROUP_SIZE } from '../llm/head';
import { Encoding } from '../llm/quant';
import { Body, BodyType, GATEWAY_SENDER, decodeBody, encodeBody } from '../link/body';

/** The mesh failed to do what was asked; the message names the node(s) at fault. */
export class MeshError extends MeshLlmError {
  constructor(message: string) {
    super(message);
    this.name = 'MeshError';
  }
}

/** What the runner needs from the transport between gateway and head nodes. */
export interface HeadLink {
  /** Sends a broadcast body to every node. */
  broadcast(body: Buffer): void;
  /** Starts a session (a fresh KV cache) on the nodes; resolves once every one has acknowledged, rejects naming those that did not. */
  startSession(session: number, assignment: string, nodes: readonly string[]): Promise<void>;
  /** Ends a session: the nodes drop its KV cache. */
  endSession(session: number, assignment: string): void;
  /** Reports a result body that was dropped (a log line, and the errors topic). */
  dropped(node: string, reason: string): void;
}

/** One assigned node: its slot (the sender number in its result bodies) and its query heads. */
export interface RunnerSlot {
  node: string;
  slot: number;
  heads: number[];
}

export interface RunnerAssignment {
  id: string;
  slots: RunnerSlot[];
  transport: Encoding;
}

/** Result bodies dropped, by reason. */
export interface ResultCounters {
  malformed: number;
  stale: number;
  duplicate: number;
  unassigned: number;
}

interface Gather {
  session: number;
  seq: number;
  pos: number;
  layer: number;
  out: Float32Array;
  /** Per slot index: 1 once its result arrived. */
  received: Uint8Array;
  remaining: number;
  startNs: bigint;
  resolve: () => void;
  reject: (e: Error) => void;
  /** Set once the gather has been reported late to the listener. */
  late?: boolean;
}

/**
 * Who watches the gathers (the Node-RED heads node's status, through the flow runtime). It
 * only hears; the runner behaves the same with or without one.
 */
export interface GatherListener {
  started(pos: number, layer: number): void;
  done(pos: number, layer: number, ms: number): void;
  /** Nodes that have not answered within half the gather timeout (the run fails at the whole timeout). */
  late(pos: number, layer: number, missing: string[], waitedMs: number): void;
  /** One node's result arrived, ms after the broadcast. */
  received?(pos: number, layer: number, node: string, ms: number): void;
  /** The run failed (the first failure of a session only), naming the nodes at fault where known. */
  failed?(reason: string, nodes: string[]): void;
}

export interface MeshRunnerOptions {
  /** How long a layer waits for every node's result before the run fails (default 2000 ms). */
  gatherTimeoutMs?: number;
  /** Where dropped results are counted (the gateway shares its counters). */
  counters?: ResultCounters;
}

/**
 * run() sends one broadcast body and resolves when every assigned node's result has been
 * placed into `out`. While a session is open a watchdog fails a gather that outlives the
 * timeout, naming the nodes that did not answer. A failure ends the run in progress; the next
 * session start (reset) clears it if every assigned node acknowledges, so the nodes that are
 * still there are used again without reloading anything.
 */
export class MeshRunner implements HeadRunner {
  /** Broadcast-to-last-result time of every layer of the current session (ms). */
  readonly roundTripsMs: number[] = [];
  readonly gatherTimeoutMs: number;
  readonly counters: ResultCounters;
  /** Told of each gather's start and end, and of late nodes (optional). */
  listener: GatherListener | null = null;
  private readonly link: HeadLink;
  private readonly g: Geometry;
  private assignment: RunnerAssignment | null = null;
  private readonly indexOfNode = new Map<string, number>();
  private sessionId = 0;
  private sessionCounter = randomInt(1, 0x40000000);
  /** Sequence numbers run on across sessions (on the radio they name the message), from a random start. */
  private seq = randomInt(0, 0x40000000);
  private pending: Gather | null = null;
  private failure: Error | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(link: HeadLink, g: Geometry, o: MeshRunnerOptions = {}) {
    this.link = link;
    this.g = g;
    this.gatherTimeoutMs = o.gatherTimeoutMs ?? 2000;
    this.counters = o.counters ?? { malformed: 0, stale: 0, duplicate: 0, unassigned: 0 };
  }

  /** The open session's id (0: none). */
  get session(): number {
    return this.sessionId;
  }

  /** The assigned nodes, in slot order. */
  get nodes(): string[] {
    return this.assignment?.slots.map((s) => s.node) ?? [];
  }

  get assigned(): boolean {
    return this.assignment !== null;
  }

  hasNode(node: string): boolean {
    return this.indexOfNode.has(node);
  }

  /** Takes a new assignment (null: none); a run in progress fails. */
  use(assignment: RunnerAssignment | null): void {
    this.fail(new MeshError('the mesh was reassigned'));
    this.end();
    this.assignment = assignment;
    this.indexOfNode.clear();
    assignment?.slots.forEach((s, i) => this.indexOfNode.set(s.node, i));
    this.failure = null;
  }

  /**
   * Runs `work` when the mesh is free (requests wait their turn, one at a time); the session it
   * opened is ended when it settles, however it settles.
   */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const turn = this.queue.then(async () => {
      try {
        return await work();
      } finally {
        this.end();
      }
    });
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  /** A new session: the previous one ends, every assigned node starts an empty KV cache. */
  async reset(): Promise<void> {
    const a = this.assignment;
    if (!a) throw new MeshError('no head nodes assigned: call assign() first');
    this.end();
    const session = this.nextSessionId();
    await this.link.startSession(session, a.id, this.nodes);
    if (this.assignment !== a) throw new MeshError('the mesh was reassigned');
    this.sessionId = session;
    this.failure = null;
    this.roundTripsMs.length = 0;
    this.startWatchdog();
  }

  /** Ends the open session, if any. */
  end(): void {
    this.stopWatchdog();
    if (this.sessionId !== 0 && this.assignment) this.link.endSession(this.sessionId, this.assignment.id);
    this.sessionId = 0;
  }

  run(xb: Float32Array, pos: number, layer: number, out: Float32Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const a = this.assignment;
    if (!a || this.sessionId === 0) return Promise.reject(new MeshError('no session is open on the mesh: reset() first'));
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const header = { type: BodyType.Broadcast, encoding: a.transport, sender: GATEWAY_SENDER, session: this.sessionId, seq, pos, layer };
    const body = encodeBody(header, xb, broadcastGroupSize(a.transport));
    return new Promise<void>((resolve, reject) => {
      this.pending = { session: this.sessionId, seq, pos, layer, out, received: new Uint8Array(a.slots.length), remaining: a.slots.length, startNs: process.hrtime.bigint(), resolve, reject };
      this.link.broadcast(body);
      this.listener?.started(pos, layer);
    });
  }

  /** A result body from `node`; anything that does not belong to the gather in progress is counted and dropped. */
  accept(node: string, payload: Buffer): void {
    let body: Body;
    try {
      body = decodeBody(payload);
    } catch (e) {
      this.counters.malformed++;
      return this.link.dropped(node, (e as Error).message);
    }
    const problem = this.place(node, body);
    if (problem) {
      this.counters.malformed++;
      this.link.dropped(node, problem);
    }
  }

  /** A node that went away: the run fails at once if the node is assigned. */
  nodeLost(node: string, why: string): void {
    if (this.hasNode(node)) this.fail(new MeshError(`head node ${node} went ${why}`), [node]);
  }

  /** Fails the gather in progress and every later one until the next session starts. */
  fail(error: Error, nodes: string[] = []): void {
    this.stopWatchdog();
    if (!this.failure && this.assignment) {
      this.failure = error;
      if (this.sessionId !== 0) this.listener?.failed?.(error.message, nodes);
    }
    const p = this.pending;
    this.pending = null;
    p?.reject(error);
  }

  private place(node: string, body: Body): string | null {
    const a = this.assignment;
    const index = this.indexOfNode.get(node);
    if (!a || index === undefined || a.slots[index].slot !== body.sender) {
      this.counters.unassigned++;
      return null;
    }
    const p = this.pending;
    if (!p || body.session !== p.session || body.seq !== p.seq || body.pos !== p.pos || body.layer !== p.layer) {
      this.counters.stale++;
      return null;
    }
    if (p.received[index]) {
      this.counters.duplicate++;
      return null;
    }
    const heads = a.slots[index].heads;
    const hs = this.g.headSize;
    if (body.type !== BodyType.Result) return `body type ${body.type} on a result topic (expected ${BodyType.Result})`;
    if (body.encoding !== a.transport) return `result encoded ${body.encoding}, the mesh runs ${a.transport}`;
    if (body.values.length !== heads.length * hs) return `result carries ${body.values.length} values; ${heads.length} heads of ${hs} expected`;
    heads.forEach((h, i) => p.out.set(body.values.subarray(i * hs, (i + 1) * hs), h * hs));
    p.received[index] = 1;
    const ms = Number(process.hrtime.bigint() - p.startNs) / 1e6;
    this.listener?.received?.(p.pos, p.layer, node, ms);
    if (--p.remaining === 0) {
      this.roundTripsMs.push(ms);
      this.pending = null;
      this.listener?.done(p.pos, p.layer, ms);
      p.resolve();
    }
    return null;
  }

  private nextSessionId(): number {
    this.sessionCounter = this.sessionCounter >= 0xfffffffe ? 1 : this.sessionCounter + 1;
    return this.sessionCounter;
  }

  /** Fails the gather in progress if it has waited longer than the timeout (and tells the listener at half of it). */
  private checkTimeout(): void {
    const p = this.pending;
    if (!p || !this.assignment) return;
    const waitedMs = Number(process.hrtime.bigint() - p.startNs) / 1e6;
    if (this.listener && !p.late && waitedMs > this.gatherTimeoutMs / 2) {
      p.late = true;
      this.listener.late(p.pos, p.layer, this.missing(p), waitedMs);
    }
    if (waitedMs <= this.gatherTimeoutMs) return;
    const missing = this.missing(p);
    this.fail(new MeshError(`head node${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not answer layer ${p.layer} at position ${p.pos} within ${this.gatherTimeoutMs} ms`), missing);
  }

  /** The assigned nodes whose result for the gather has not arrived. */
  private missing(p: Gather): string[] {
    return (this.assignment?.slots ?? []).filter((_, i) => !p.received[i]).map((s) => s.node);
  }

  private startWatchdog(): void {
    this.stopWatchdog();
    const every = Math.max(5, Math.min(100, Math.floor(this.gatherTimeoutMs / 10)));
    this.watchdog = setInterval(() => this.checkTimeout(), every);
    this.watchdog.unref();
  }

  private stopWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
  }
}
