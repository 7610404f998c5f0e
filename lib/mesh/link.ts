/**
 * The head link over MQTT: what the mesh runner (runner.ts) sends and waits for, on the topics
 * of lib/mesh/wire.ts. Broadcast and result bodies go over a BodyBus (the gateway's own MQTT
 * connection, or the embedded aedes broker in-process); session control is JSON at QoS 1, and a
 * session starts once every node has acknowledged it (AckWaiter, shared with assignments).
 */
import { Aedes } from 'aedes';
import { MqttClient } from 'mqtt';
import { subscribe } from './mqtt';
import { HeadLink, HeadNodesLost } from './runner';
import { AckMessage, NodeState, PROTOCOL_VERSION, Topics, TokenMessage, encodeControl } from './wire';

/** Where the gateway sends bodies and per-token messages, and hears result bodies. */
export interface BodyBus {
  publish(topic: string, payload: Buffer): void;
  subscribe(pattern: string, onMessage: (topic: string, payload: Buffer) => void): Promise<void>;
}

/** Bodies over the gateway's own MQTT connection (they arrive through the client's message handler). */
export function clientBodyBus(client: MqttClient): BodyBus {
  return {
    publish: (topic, payload) => client.publish(topic, payload, { qos: 0 }),
    subscribe: (pattern) => subscribe(client, [pattern], 0),
  };
}

/** Bodies through the embedded broker in this process: no TCP round trip through the gateway's own client. */
export function aedesBodyBus(aedes: Aedes): BodyBus {
  return {
    publish: (topic, payload) => aedes.publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }, () => undefined),
    subscribe: (pattern, onMessage) =>
      new Promise((resolve) =>
        aedes.subscribe(pattern, (packet, cb) => {
          onMessage(packet.topic, packet.payload as Buffer);
          cb();
        }, () => resolve()),
      ),
  };
}

/**
 * A wait that the caller awaits only after publishing what it waits for: marked handled, so
 * a publish that throws first does not leave its rejection unhandled (the caller still sees it).
 */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

const ALIVE: ReadonlySet<NodeState> = new Set(['online', 'loading', 'ready']);

/** Whether a node in this state is up. */
export function isAlive(state: NodeState): boolean {
  return ALIVE.has(state);
}

/**
 * Acknowledgements the gateway waits for: every listed node's ack of one assignment or session
 * operation, within a timeout; a node that goes away or refuses fails the wait, named.
 */
export class AckWaiter {
  private readonly waiters = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  /** Set by abort(): every later wait fails at once with this. */
  private closed: Error | null = null;

  constructor(
    private readonly timeoutMs: number,
    /** The node's last known state (undefined: never heard of). */
    private readonly stateOf: (node: string) => NodeState | undefined,
  ) {}

  wait(nodes: readonly string[], kind: AckMessage['kind'], id: string): Promise<void> {
    const pending = new Set(nodes);
    const keys = nodes.map((n) => `${n}|${kind}|${id}`);
    if (this.closed) return handled(Promise.reject(this.closed));
    if (nodes.length === 0) return Promise.resolve();
    return handled(new Promise<void>((resolve, reject) => {
      const finish = (err?: Error) => {
        clearTimeout(timer);
        keys.forEach((k) => this.waiters.delete(k));
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => finish(new HeadNodesLost(`head node${pending.size > 1 ? 's' : ''} ${[...pending].join(', ')} did not acknowledge ${kind} ${id} within ${this.timeoutMs} ms`, [...pending])), this.timeoutMs);
      nodes.forEach((node, i) => {
        this.waiters.set(keys[i], {
          resolve: () => {
            pending.delete(node);
            if (pending.size === 0) finish();
          },
          reject: (e) => finish(e),
        });
      });
      const gone = nodes.find((n) => {
        const state = this.stateOf(n);
        return state !== undefined && !isAlive(state);
      });
      if (gone) finish(new HeadNodesLost(`head node ${gone} is ${this.stateOf(gone)}`, [gone]));
    }));
  }

  /** An ack arrived; false when nobody waits for it. */
  received(m: AckMessage): boolean {
    const waiter = this.waiters.get(`${m.node}|${m.kind}|${m.id}`);
    if (!waiter) return false;
    if (m.ok) waiter.resolve();
    else waiter.reject(new HeadNodesLost(`head node ${m.node} refused ${m.kind} ${m.id}: ${m.error ?? 'no reason given'}`, [m.node]));
    return true;
  }

  /** A node went away: every wait that includes it fails. */
  nodeLost(node: string, state: NodeState): void {
    for (const [key, w] of this.waiters) if (key.startsWith(`${node}|`)) w.reject(new HeadNodesLost(`head node ${node} went ${state}`, [node]));
  }

  /** Fails every wait, and every later one (the gateway is closing). */
  abort(error: Error): void {
    this.closed = error;
    for (const w of this.waiters.values()) w.reject(error);
  }
}

export interface MqttHeadLinkOptions {
  client: MqttClient;
  bodies: BodyBus;
  topics: Topics;
  acks: AckWaiter;
  /** Reports a dropped message: a log line and the errors topic. */
  reject: (topic: string, reason: string) => void;
}

/** The runner's HeadLink on MQTT. */
export class MqttHeadLink implements HeadLink {
  constructor(private readonly o: MqttHeadLinkOptions) {}

  broadcast(body: Buffer): void {
    this.o.bodies.publish(this.o.topics.broadcast, body);
  }

  startSession(session: number, assignment: string, nodes: readonly string[]): Promise<void> {
    const acks = this.o.acks.wait(nodes, 'session', `start:${session}`);
    this.publishSession('start', session, assignment);
    return acks;
  }

  endSession(session: number, assignment: string): void {
    this.publishSession('end', session, assignment);
  }

  dropped(node: string, reason: string): void {
    this.o.reject(this.o.topics.result(node), reason);
  }

  /** One token for whoever watches the tokens topic. */
  publishToken(m: TokenMessage): void {
    this.o.bodies.publish(this.o.topics.tokens, Buffer.from(encodeControl('token', m)));
  }

  private publishSession(op: 'start' | 'end', session: number, assignment: string): void {
    this.o.client.publish(this.o.topics.session, encodeControl('session', { protocol: PROTOCOL_VERSION, op, session, assignment }), { qos: 1 });
  }
}
