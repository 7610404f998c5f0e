/**
 * Steering over the MQTT mesh. The gateway side sends every head node its steering message
 * (schemas/steering.json on mesh-llm/{mesh}/steer/{node}: its block of each channel's
 * direction and its normalised readings) and waits for the node's acknowledgement; it
 * publishes each token's attribution on mesh-llm/{mesh}/attribution. The node side turns a
 * steering message into the vector its HeadGroup adds to the head outputs.
 */
import { MqttClient } from 'mqtt';
import { GenerateOptions, GenerationResult, TokenListener } from '../llm/engine';
import { HeadSteering } from '../llm/head';
import { safeReading } from '../llm/steering-vector';
import { MeshGateway } from '../mesh/gateway';
import { BrokerAddress, connectMqtt, endClient, subscribe } from '../mesh/mqtt';
import { AckMessage, PROTOCOL_VERSION, SteeringMessage, Topics, encodeControl, nodeOfTopic, parseControl, topicsFor } from '../mesh/wire';
import { TokenAttribution, generateWithAttribution } from './attribution';
import { parseWithSchema } from './schemas';
import { NodeShare } from './shares';
import { NodeReadings, Steering } from './steer';

/** The steering message for one node: its shares and readings (readings clipped to [-1, 1], bad ones neutral). */
export function steeringMessage(id: string, share: NodeShare, readings: Record<string, number>, alpha: number): SteeringMessage {
  return {
    protocol: PROTOCOL_VERSION,
    id,
    heads: share.heads,
    layer: share.layer,
    alpha,
    channels: Object.entries(share.channels).map(([name, v]) => ({ name, reading: safeReading(readings[name]), share: Array.from(v) })),
  };
}

/**
 * The steering message of a node that holds heads of other nodes after a failover: the
 * shares move with the heads. Every channel of every node whose heads it now computes, named
 * `owner.channel`, with that owner's reading and its share laid over the node's heads (zeros
 * for the heads of other owners), so each head gets exactly what its owner would have added.
 * A node that holds exactly its own heads gets its usual message.
 */
export function heldSteeringMessage(id: string, shares: readonly NodeShare[], node: string, heads: readonly number[], headSize: number, readings: NodeReadings, alpha: number): SteeringMessage {
  const own = shares.find((s) => s.node === node);
  if (own && own.heads.length === heads.length && own.heads.every((h, i) => h === heads[i])) return steeringMessage(id, own, readings[node] ?? {}, alpha);
  const width = heads.length * headSize;
  const channels: SteeringMessage['channels'] = [];
  for (const owner of shares) {
    const held = owner.heads.map((h, i) => [i, heads.indexOf(h)] as const).filter(([, j]) => j >= 0);
    if (held.length === 0) continue;
    for (const [name, v] of Object.entries(owner.channels)) {
      const share = new Array<number>(width).fill(0);
      for (const [i, j] of held) for (let d = 0; d < headSize; d++) share[j * headSize + d] = v[i * headSize + d];
      channels.push({ name: `${owner.node}.${name}`.slice(0, 64), reading: safeReading(readings[owner.node]?.[name]), share });
    }
  }
  return { protocol: PROTOCOL_VERSION, id, heads: [...heads], layer: shares[0]?.layer ?? 0, alpha, channels };
}

/** The attribution of one token as published on mesh-llm/{mesh}/attribution (schemas/attribution.json). */
export interface AttributionMessage {
  protocol: 1;
  session: number;
  pos: number;
  token: number;
  piece: string;
  top: string | null;
  nodes: { node: string; kl: number }[];
}

export function parseAttributionMessage(payload: Buffer | string): AttributionMessage {
  return parseWithSchema<AttributionMessage>('attribution', payload);
}

/** The gateway's steering connection to a mesh: sends steering, waits for acks, publishes attributions. */
export class MeshSteering {
  private readonly t: Topics;
  private readonly waiters = new Map<string, (m: AckMessage) => void>();
  private count = 0;

  private constructor(
    private readonly client: MqttClient,
    meshId: string,
  ) {
    this.t = topicsFor(meshId);
  }

  static async connect(o: BrokerAddress & { meshId: string }): Promise<MeshSteering> {
    const client = await connectMqtt({ ...o, clientId: `mesh-llm-${o.meshId}-steering-${process.pid}`.slice(0, 64) });
    const s = new MeshSteering(client, o.meshId);
    client.on('message', (topic, payload) => s.onAck(topic, payload));
    await subscribe(client, [s.t.acks], 1);
    return s;
  }

  private onAck(topic: string, payload: Buffer): void {
    let m: AckMessage;
    try {
      m = parseControl('ack', payload);
    } catch {
      return; // the gateway reports malformed acks; this connection only waits for its own
    }
    if (m.kind !== 'steering' || m.node !== nodeOfTopic(topic)) return;
    this.waiters.get(`${m.node}|${m.id}`)?.(m);
  }

  /** Sends every node its steering and resolves once all have applied it. */
  async configure(steering: Steering, readings: NodeReadings, alpha: number, timeoutMs = 5000): Promise<Map<string, HeadSteering>> {
    const id = this.nextId();
    const budgeted = steering.alphaFor(readings, alpha); // every node applies the same alpha, inside the budget
    await this.send(id, steering.shares.map((share) => ({ node: share.node, m: steeringMessage(id, share, readings[share.node] ?? {}, budgeted) })), timeoutMs);
    return steering.vectors(readings, alpha);
  }

  /**
   * After a failover moved heads: sends the nodes whose heads changed (`nodes`, placed as
   * `slots` says) the steering of the heads they now hold (heldSteeringMessage).
   */
  async follow(steering: Steering, readings: NodeReadings, alpha: number, slots: readonly { node: string; heads: number[] }[], nodes: readonly string[], headSize: number, timeoutMs = 5000): Promise<void> {
    const id = this.nextId();
    const budgeted = steering.alphaFor(readings, alpha);
    const changed = slots.filter((s) => nodes.includes(s.node));
    await this.send(id, changed.map((s) => ({ node: s.node, m: heldSteeringMessage(id, steering.shares, s.node, s.heads, headSize, readings, budgeted) })), timeoutMs);
  }

  private nextId(): string {
    return `s${++this.count}-${Date.now().toString(36)}`;
  }

  /** Publishes each node's steering message and resolves once every one has acknowledged. */
  private async send(id: string, messages: readonly { node: string; m: SteeringMessage }[], timeoutMs: number): Promise<void> {
    const acks = messages.map(
      ({ node }) =>
        new Promise<void>((resolve, reject) => {
          const key = `${node}|${id}`;
          const timer = setTimeout(() => {
            this.waiters.delete(key);
            reject(new Error(`head node ${node} did not acknowledge steering ${id} within ${timeoutMs} ms`));
          }, timeoutMs);
          this.waiters.set(key, (m) => {
            clearTimeout(timer);
            this.waiters.delete(key);
            if (m.ok) resolve();
            else reject(new Error(`head node ${node} refused steering ${id}: ${m.error ?? 'no reason given'}`));
          });
        }),
    );
    for (const { node, m } of messages) this.client.publish(this.t.steer(node), encodeControl('steering', m), { qos: 1 });
    await Promise.all(acks);
  }

  publishAttribution(session: number, a: TokenAttribution): void {
    const m: AttributionMessage = { protocol: PROTOCOL_VERSION, session, pos: a.pos, token: a.token, piece: a.piece, top: a.top, nodes: a.nodes };
    const text = JSON.stringify(m);
    parseAttributionMessage(text); // the sender validates too, so a bug shows up where it is made
    this.client.publish(this.t.attribution, text, { qos: 0 });
  }

  async close(): Promise<void> {
    await endClient(this.client);
  }
}

/**
 * A steered generation through an assigned mesh, on the mesh runner like every other run (its
 * turn in the queue, its session, its gather timeout): steering sent to the nodes, the
 * engine's loop with attribution wrapped around the runner, each token's attribution published.
 */
export function generateSteeredOnMesh(
  gw: MeshGateway,
  link: MeshSteering,
  steering: Steering,
  readings: NodeReadings,
  alpha: number,
  options: GenerateOptions,
  onToken?: (a: TokenAttribution) => void,
  onPiece?: TokenListener,
): Promise<GenerationResult & { attributions: TokenAttribution[] }> {
  const runner = gw.runner;
  const events = gw.runEvents();
  // a sampled token is told once its attribution (which follows its piece) says how far the sensors moved it
  let sampled: { token: number; piece: Buffer; pos: number; logits: Float32Array } | null = null;
  const told: TokenListener = (token, piece, pos, logits) => {
    if (logits) sampled = { token, piece, pos, logits };
    else events.token(pos, token, piece, null);
    onPiece?.(token, piece, pos, logits);
  };
  // a failover (or the restore after one) hands heads to other nodes: the steering shares follow them
  const follow = (slots: { node: string; heads: number[] }[], changed: string[]) => link.follow(steering, readings, alpha, slots, changed, gw.g.headSize);
  return runner.exclusive(async () => {
    gw.reassigned.add(follow);
    try {
      await link.configure(steering, readings, alpha);
      return await gw.told(events, 'cli', true, (onStart) =>
        generateWithAttribution(gw.gateway, runner, gw.tokenizer, steering.steeredNodes(readings, alpha), options, (a) => {
          const s = sampled as { token: number; piece: Buffer; pos: number; logits: Float32Array } | null;
          if (s && s.pos === a.pos) events.token(s.pos, s.token, s.piece, s.logits, { kl: a.kl, node: a.top });
          sampled = null;
          link.publishAttribution(runner.session, a);
          onToken?.(a);
        }, told, onStart),
      );
    } finally {
      gw.reassigned.delete(follow);
    }
  });
}
