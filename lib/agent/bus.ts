/**
 * How the roles talk: an AgentBus carries the agent messages (schema-checked both ways) on the
 * topics of topics.ts. MqttAgentBus is a real MQTT connection (each role its own process);
 * LocalAgentBus is the same topics inside one process (`mesh-llm agent` without --broker, and
 * the measurements), delivering asynchronously as a broker does, retained messages included.
 */
import { MqttClient } from 'mqtt';
import { BrokerAddress, Logger, connectMqtt, endClient, subscribe, withinMs, GOODBYE_MS } from '../mesh/mqtt';
import { AgentKind, AgentMessages, encodeAgentMessage, parseAgentMessage } from './messages';
import { AgentTopics, Role, agentTopics } from './topics';

export type Handler<K extends AgentKind> = (message: AgentMessages[K]) => void;
export type RawHandler = (topic: string, payload: Buffer) => void;

export interface AgentBus {
  readonly meshId: string;
  readonly topics: AgentTopics;
  publish<K extends AgentKind>(kind: K, message: AgentMessages[K], retain?: boolean): Promise<void>;
  /** Every valid message of a kind (status: of every role); invalid ones are logged and dropped. */
  on<K extends AgentKind>(kind: K, handler: Handler<K>): Promise<void>;
  /** Any topic (the head mesh's sensors and alerts), unparsed. */
  onTopic(filter: string, handler: RawHandler): Promise<void>;
  close(): Promise<void>;
}

function topicOf<K extends AgentKind>(topics: AgentTopics, kind: K, message: AgentMessages[K]): string {
  return kind === 'status' ? topics.status((message as AgentMessages['status']).role) : (topics[kind as Exclude<AgentKind, 'status'>] as string);
}

function filterOf(topics: AgentTopics, kind: AgentKind): string {
  return kind === 'status' ? topics.statuses : (topics[kind as Exclude<AgentKind, 'status'>] as string);
}

/** MQTT topic filter matching with + and #. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** Routes received payloads to the handlers whose filters match (shared by both buses). */
class Router {
  private readonly routes: { filter: string; handler: RawHandler }[] = [];
  constructor(private readonly log: Logger) {}

  add(filter: string, handler: RawHandler): void {
    this.routes.push({ filter, handler });
  }

  typed<K extends AgentKind>(kind: K, handler: Handler<K>): RawHandler {
    return (topic, payload) => {
      let message: AgentMessages[K];
      try {
        message = parseAgentMessage(kind, payload);
      } catch (e) {
        this.log('warn', `dropped a message on ${topic}: ${(e as Error).message}`);
        return;
      }
      handler(message);
    };
  }

  deliver(topic: string, payload: Buffer): void {
    for (const r of this.routes) {
      if (!topicMatches(r.filter, topic)) continue;
      try {
        r.handler(topic, payload);
      } catch (e) {
        this.log('error', `handling ${topic}: ${(e as Error).message}`);
      }
    }
  }
}

export interface MqttBusOptions extends BrokerAddress {
  meshId: string;
  clientId: string;
  /** The role this connection serves: its offline status is the connection's last will. */
  role?: Role;
  log: Logger;
}

export class MqttAgentBus implements AgentBus {
  readonly topics: AgentTopics;
  private readonly router: Router;

  private constructor(
    readonly meshId: string,
    readonly client: MqttClient,
    log: Logger,
  ) {
    this.topics = agentTopics(meshId);
    this.router = new Router(log);
    client.on('message', (topic, payload) => this.router.deliver(topic, payload));
  }

  static async connect(o: MqttBusOptions): Promise<MqttAgentBus> {
    const topics = agentTopics(o.meshId);
    const will = o.role ? { topic: topics.status(o.role), payload: encodeAgentMessage('status', { protocol: 1, role: o.role, state: 'offline' }), retain: true, qos: 1 as const } : undefined;
    const client = await connectMqtt({ url: o.url, username: o.username, password: o.password, clientId: o.clientId, will });
    return new MqttAgentBus(o.meshId, client, o.log);
  }

  publish<K extends AgentKind>(kind: K, message: AgentMessages[K], retain = false): Promise<void> {
    const payload = encodeAgentMessage(kind, message);
    return new Promise((resolve, reject) => this.client.publish(topicOf(this.topics, kind, message), payload, { qos: 1, retain }, (e) => (e ? reject(e) : resolve())));
  }

  async on<K extends AgentKind>(kind: K, handler: Handler<K>): Promise<void> {
    const filter = filterOf(this.topics, kind);
    this.router.add(filter, this.router.typed(kind, handler));
    await subscribe(this.client, [filter], 1);
  }

  async onTopic(filter: string, handler: RawHandler): Promise<void> {
    this.router.add(filter, handler);
    await subscribe(this.client, [filter], 0);
  }

  async close(): Promise<void> {
    await withinMs(GOODBYE_MS, endClient(this.client));
  }
}

/** The same topics in one process: what a broker does for the roles, without sockets. */
export class LocalAgentBus implements AgentBus {
  readonly topics: AgentTopics;
  private readonly router: Router;
  private readonly retained = new Map<string, Buffer>();
  private closed = false;

  constructor(
    readonly meshId = 'default',
    log: Logger = () => undefined,
  ) {
    this.topics = agentTopics(meshId);
    this.router = new Router(log);
  }

  async publish<K extends AgentKind>(kind: K, message: AgentMessages[K], retain = false): Promise<void> {
    this.publishRaw(topicOf(this.topics, kind, message), encodeAgentMessage(kind, message), retain);
  }

  /** Any payload on any topic (a sensor reading, an alert, or a malformed message in a test). */
  publishRaw(topic: string, payload: string | Buffer, retain = false): void {
    const bytes = Buffer.from(payload);
    if (retain) this.retained.set(topic, bytes);
    setImmediate(() => {
      if (!this.closed) this.router.deliver(topic, bytes);
    });
  }

  async on<K extends AgentKind>(kind: K, handler: Handler<K>): Promise<void> {
    await this.subscribeRaw(filterOf(this.topics, kind), this.router.typed(kind, handler));
  }

  async onTopic(filter: string, handler: RawHandler): Promise<void> {
    await this.subscribeRaw(filter, handler);
  }

  private async subscribeRaw(filter: string, handler: RawHandler): Promise<void> {
    this.router.add(filter, handler);
    // a new subscription receives the retained messages it matches
    for (const [topic, payload] of this.retained) {
      if (topicMatches(filter, topic)) setImmediate(() => !this.closed && handler(topic, payload));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
