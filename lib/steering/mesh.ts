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
    const id = `s${++this.count}-${Date.now().toString(36)}`;
    const acks = steering.shares.map(
      (share) =>
        new Promise<void>((resolve, reject) => {
          const key = `${share.node}|${id}`;
          const timer = setTimeout(() => {
            this.waiters.delete(key);
            reject(new Error(`head node ${share.node} did not acknowledge steering ${id} within ${timeoutMs} ms`));
          }, timeoutMs);
          this.waiters.set(key, (m) => {
            clearTimeout(timer);
            this.waiters.delete(key);
            if (m.ok) resolve();
            else reject(new Error(`head node ${share.node} refused steering ${id}: ${m.error ?? 'no reason given'}`));
          });
        }),
    );
    const budgeted = steering.alphaFor(readings, alpha); // every node applies the same alpha, inside the budget
    for (const share of steering.shares) {
      this.client.publish(this.t.steer(share.node), encodeControl('steering', steeringMessage(id, share, readings[share.node] ?? {}, budgeted)), { qos: 1 });
    }
    await Promise.all(acks);
    return steering.vectors(readings, alpha);
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
  let last: TokenAttribution | null = null;
  const told: TokenListener = (token, piece, pos, logits) => {
    events.token(pos, token, piece, logits ?? null, last && last.pos === pos ? { kl: last.kl, node: last.top } : undefined);
    onPiece?.(token, piece, pos, logits);
  };
  return runner.exclusive(async () => {
    await link.configure(steering, readings, alpha);
    return gw.told(events, 'cli', true, (onStart) =>
      generateWithAttribution(gw.gateway, runner, gw.tokenizer, steering.steeredNodes(readings, alpha), options, (a) => {
        last = a;
        link.publishAttribution(runner.session, a);
        onToken?.(a);
      }, told, onStart),
    );
  });
}
