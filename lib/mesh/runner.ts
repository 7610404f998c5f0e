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
import { Encoding } from '../llm/quant';
import { BODY_FIELDS, Body, BodyType, GATEWAY_SENDER, decodeBody, encodeBody } from '../link/body';

/** The mesh failed to do what was asked; the message names the node(s) at fault. */
export class MeshError extends MeshLlmError {
  constructor(message: string) {
    super(message);
    this.name = 'MeshError';
  }
}

/**
 * Head nodes the run lost (they missed the gather timeout, went offline or failed, or did not
 * acknowledge a session): with a Failover the run goes on without them, without one it fails.
 */
export class HeadNodesLost extends MeshError {
  constructor(
    message: string,
    readonly lost: readonly string[],
  ) {
    super(message);
    this.name = 'HeadNodesLost';
  }
}

/** Heads that moved from a lost node to another one. */
export interface HeadMove {
  heads: number[];
  from: string;
  to: string;
}

/** One failover of a session: the nodes lost, where their heads went, the replay that rebuilt the moved heads' KV caches. */
export interface FailoverEvent {
  /** The gather that was running (or about to run) when the nodes were lost. */
  pos: number;
  layer: number;
  lost: string[];
  moves: HeadMove[];
  /** The session the run goes on in (every node of the revised assignment rebuilt its cache in it). */
  session: number;
  /** Broadcast bodies replayed (positions done x layers). */
  replayed: number;
  /** From the loss to the end of the replay (reassignment, session start, replay). */
  replayMs: number;
}

/**
 * Where the runner finds nodes for the heads of lost ones (the gateway: lib/mesh/gateway.ts).
 * Without one a lost node fails the run, as before failover existed.
 */
export interface Failover {
  /**
   * A revised assignment: the heads of `lost` moved to standby or surviving nodes, which have
   * loaded them and acknowledged. Rejects with HeadNodesLost when more nodes are lost on the
   * way, with a MeshError when no node is left to take the heads.
   */
  replace(current: RunnerAssignment, lost: readonly string[]): Promise<{ assignment: RunnerAssignment; moves: HeadMove[] }>;
  /** At the next session start after a failover: assign the planned nodes again if they are back (it calls use()). */
  restore(): Promise<void>;
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
  /** A failover's replay: not told to the listener, not counted in the round trips. */
  replay: boolean;
}

/** Replayed bodies in flight at once during a failover. */
const REPLAY_WINDOW = 32;

const FIELD = Object.fromEntries(BODY_FIELDS.map((f) => [f.name, f.offset])) as Record<(typeof BODY_FIELDS)[number]['name'], number>;

/** A copy of a broadcast body with its session and seq set (the bytes sent may still be in flight: the template is never changed). */
function stamp(template: Buffer, session: number, seq: number): Buffer {
  const body = Buffer.from(template);
  body.writeUInt32LE(session, FIELD.session);
  body.writeUInt32LE(seq, FIELD.seq);
  return body;
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
  /** Heads were moved off lost nodes and their KV caches rebuilt; the run goes on (optional). */
  failover?(event: FailoverEvent): void;
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
  /** Moves the heads of lost nodes elsewhere so a run goes on (the gateway sets it); null: a lost node fails the run. */
  failover: Failover | null = null;
  /** The failovers of the current (or last) session, in order. */
  readonly failovers: FailoverEvent[] = [];
  private readonly link: HeadLink;
  private readonly g: Geometry;
  private assignment: RunnerAssignment | null = null;
  private readonly indexOfNode = new Map<string, number>();
  private sessionId = 0;
  private sessionCounter = randomInt(1, 0x40000000);
  /** Sequence numbers run on across sessions (on the radio they name the message), from a random start. */
  private seq = randomInt(0, 0x40000000);
  /** The gathers in flight, by seq: one in a run, up to REPLAY_WINDOW in a failover's replay. */
  private readonly gathers = new Map<number, Gather>();
  private failure: Error | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * The session's broadcast bodies, in order, for every gather that completed: what a node
   * that takes over heads replays to rebuild their KV cache (session and seq are stamped anew).
   */
  private readonly history: Buffer[] = [];
  /** Nodes lost since the last gather; the next run() moves their heads first. */
  private readonly lostNodes = new Set<string>();
  /** The assignment was revised by a failover (the planned one is restored at the next session if its nodes are back). */
  private revised = false;

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
    this.lostNodes.clear();
    this.install(assignment);
    this.revised = false;
    this.failure = null;
  }

  /** Bytes the recorded broadcasts of the session take (what a failover replays). */
  get historyBytes(): number {
    let n = 0;
    for (const b of this.history) n += b.length;
    return n;
  }

  private install(assignment: RunnerAssignment | null): void {
    this.assignment = assignment;
    this.indexOfNode.clear();
    assignment?.slots.forEach((s, i) => this.indexOfNode.set(s.node, i));
    for (const node of this.lostNodes) if (!this.indexOfNode.has(node)) this.lostNodes.delete(node);
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
    if (!this.assignment) throw new MeshError('no head nodes assigned: call assign() first');
    this.end();
    if (this.revised && this.failover) await this.failover.restore();
    this.history.length = 0;
    this.failovers.length = 0;
    for (;;) {
      const a: RunnerAssignment | null = this.assignment;
      if (!a) throw new MeshError('no head nodes assigned: call assign() first');
      const session = this.nextSessionId();
      try {
        await this.link.startSession(session, a.id, this.nodes);
      } catch (e) {
        // a node that went away between sessions: its heads move before the session starts
        if (!(e instanceof HeadNodesLost) || !this.failover || this.assignment !== a) throw e;
        const startNs = process.hrtime.bigint();
        const { assignment, moves } = await this.failover.replace(a, e.lost);
        this.install(assignment);
        this.revised = true;
        const event: FailoverEvent = { pos: 0, layer: 0, lost: [...e.lost], moves, session, replayed: 0, replayMs: Number(process.hrtime.bigint() - startNs) / 1e6 };
        this.failovers.push(event);
        this.listener?.failover?.(event);
        continue;
      }
      if (this.assignment !== a) throw new MeshError('the mesh was reassigned');
      this.sessionId = session;
      break;
    }
    this.failure = null;
    this.lostNodes.clear();
    this.roundTripsMs.length = 0;
    this.startWatchdog();
  }

  /** Ends the open session, if any. */
  end(): void {
    this.stopWatchdog();
    if (this.sessionId !== 0 && this.assignment) this.link.endSession(this.sessionId, this.assignment.id);
    this.sessionId = 0;
  }

  /**
   * One layer on the mesh: broadcast xb, gather every assigned node's heads into `out`. With a
   * Failover, nodes lost before or during the gather have their heads moved and rebuilt
   * first (recover), and the gather runs again on the revised assignment.
   */
  async run(xb: Float32Array, pos: number, layer: number, out: Float32Array): Promise<void> {
    if (this.failure) throw this.failure;
    const a = this.assignment;
    if (!a || this.sessionId === 0) throw new MeshError('no session is open on the mesh: reset() first');
    const header = { type: BodyType.Broadcast, encoding: a.transport, sender: GATEWAY_SENDER, session: 0, seq: 0, pos, layer };
    const body = encodeBody(header, xb, broadcastGroupSize(a.transport));
    for (;;) {
      try {
        if (this.lostNodes.size > 0 && this.failover) await this.recover(pos, layer);
        await this.gather(body, out, false);
        this.history.push(body);
        return;
      } catch (e) {
        if (!(e instanceof HeadNodesLost) || !this.failover || this.failure || this.sessionId === 0) throw e;
        for (const node of e.lost) if (this.hasNode(node)) this.lostNodes.add(node);
        if (this.lostNodes.size === 0) throw e;
      }
    }
  }

  /** Sends one broadcast body (stamped with the session and a fresh seq) and resolves once every assigned node's result is in `out`. */
  private gather(template: Buffer, out: Float32Array, replay: boolean): Promise<void> {
    const a = this.assignment;
    if (!a || this.sessionId === 0) return Promise.reject(new MeshError('no session is open on the mesh: reset() first'));
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const body = stamp(template, this.sessionId, seq);
    const pos = body.readUInt16LE(FIELD.pos);
    const layer = body.readUInt16LE(FIELD.layer);
    return new Promise<void>((resolve, reject) => {
      this.gathers.set(seq, { session: this.sessionId, seq, pos, layer, out, received: new Uint8Array(a.slots.length), remaining: a.slots.length, startNs: process.hrtime.bigint(), resolve, reject, replay });
      this.link.broadcast(body);
      if (!replay) this.listener?.started(pos, layer);
    });
  }

  /**
   * Moves the heads of the lost nodes (Failover.replace), starts a new session on the revised
   * assignment and replays the session's recorded broadcasts into it, so every node's KV cache
   * holds the positions done; then the run goes on. Nodes lost on the way start it over.
   */
  private async recover(pos: number, layer: number): Promise<void> {
    const failover = this.failover as Failover;
    const startNs = process.hrtime.bigint();
    const before = this.assignment as RunnerAssignment;
    const lost = [...this.lostNodes];
    this.lostNodes.clear();
    const { assignment, moves } = await failover.replace(before, lost);
    if (this.failure) throw this.failure;
    this.install(assignment);
    this.revised = true;
    this.link.endSession(this.sessionId, before.id);
    const session = this.nextSessionId();
    await this.link.startSession(session, assignment.id, this.nodes);
    if (this.failure) throw this.failure;
    this.sessionId = session;
    // the replay is pipelined: its inputs are recorded, so a window of bodies is in flight at once (each node takes them in order)
    const scratch = new Float32Array(this.g.dim);
    for (let i = 0; i < this.history.length; i += REPLAY_WINDOW) await Promise.all(this.history.slice(i, i + REPLAY_WINDOW).map((body) => this.gather(body, scratch, true)));
    const event: FailoverEvent = { pos, layer, lost, moves, session, replayed: this.history.length, replayMs: Number(process.hrtime.bigint() - startNs) / 1e6 };
    this.failovers.push(event);
    this.listener?.failover?.(event);
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

  /** A node that went away: if it is assigned, the gather in progress fails at once (with a Failover, the run goes on without it). */
  nodeLost(node: string, why: string): void {
    if (!this.hasNode(node)) return;
    const error = new HeadNodesLost(`head node ${node} went ${why}`, [node]);
    if (!this.failover) return this.fail(error);
    if (this.sessionId === 0) return; // the next session start finds it gone
    this.lostNodes.add(node);
    this.abandon(error);
  }

  /** Rejects the gathers in progress (the run may go on: nothing is kept failed). */
  private abandon(error: Error): void {
    const all = [...this.gathers.values()];
    this.gathers.clear();
    for (const p of all) p.reject(error);
  }

  /** Fails the gather in progress and every later one until the next session starts. */
  fail(error: Error): void {
    this.stopWatchdog();
    if (!this.failure && this.assignment) {
      this.failure = error;
      if (this.sessionId !== 0) this.listener?.failed?.(error.message, error instanceof HeadNodesLost ? [...error.lost] : []);
    }
    this.abandon(error);
  }

  private place(node: string, body: Body): string | null {
    const a = this.assignment;
    const index = this.indexOfNode.get(node);
    if (!a || index === undefined || a.slots[index].slot !== body.sender) {
      this.counters.unassigned++;
      return null;
    }
    const p = this.gathers.get(body.seq);
    if (!p || body.session !== p.session || body.pos !== p.pos || body.layer !== p.layer) {
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
    if (!p.replay) this.listener?.received?.(p.pos, p.layer, node, ms);
    if (--p.remaining === 0) {
      this.gathers.delete(p.seq);
      if (!p.replay) {
        this.roundTripsMs.push(ms);
        this.listener?.done(p.pos, p.layer, ms);
      }
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
    const p = this.gathers.values().next().value; // the oldest
    if (!p || !this.assignment) return;
    const waitedMs = Number(process.hrtime.bigint() - p.startNs) / 1e6;
    if (this.listener && !p.late && !p.replay && waitedMs > this.gatherTimeoutMs / 2) {
      p.late = true;
      this.listener.late(p.pos, p.layer, this.missing(p), waitedMs);
    }
    if (waitedMs <= this.gatherTimeoutMs) return;
    const missing = this.missing(p);
    const error = new HeadNodesLost(`head node${missing.length > 1 ? 's' : ''} ${missing.join(', ')} did not answer layer ${p.layer} at position ${p.pos} within ${this.gatherTimeoutMs} ms`, missing);
    if (this.failover) this.abandon(error);
    else this.fail(error);
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
