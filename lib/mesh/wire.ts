/**
 * The mesh's MQTT side, defined once: the topic tree of a mesh and the JSON control messages
 * (each checked against its JSON Schema in schemas/ by ajv wherever it is received). The
 * binary messages on `broadcast` and `result/{node}` are head-link bodies (lib/link/body.ts).
 * docs/PROTOCOL.md describes the same format for people; this file is what every process runs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv, { ValidateFunction } from 'ajv';
import { Encoding, WeightFormat } from '../llm/quant';
import { packageRoot } from '../llm/resolve';
import { MeshLlmError } from '../llm/errors';

export const PROTOCOL_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Topic tree: everything of one mesh lives under mesh-llm/{mesh}/.

const ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Mesh and node ids are one topic level each: letters, digits, '_', '.', '-'. */
export function checkId(kind: 'mesh' | 'node', id: string): string {
  if (!ID_PATTERN.test(id)) throw new MeshLlmError(`${kind} id "${id}" must be 1-64 characters of A-Z a-z 0-9 _ . -`);
  return id;
}

export function topicsFor(meshId: string) {
  const root = `mesh-llm/${checkId('mesh', meshId)}`;
  return {
    root,
    /** Broadcast bodies (lib/link/body.ts), gateway -> every node (QoS 0). */
    broadcast: `${root}/broadcast`,
    /** Result bodies, node -> gateway (QoS 0). */
    result: (node: string) => `${root}/result/${node}`,
    results: `${root}/result/+`,
    /** JSON status, retained; the broker publishes the node's last will (offline). */
    status: (node: string) => `${root}/status/${node}`,
    statuses: `${root}/status/+`,
    /** JSON head-group assignment, gateway -> one node. */
    assign: (node: string) => `${root}/assign/${node}`,
    /** JSON session control, gateway -> every node. */
    session: `${root}/session`,
    /** JSON acknowledgements of assignments and session operations, node -> gateway. */
    ack: (node: string) => `${root}/ack/${node}`,
    acks: `${root}/ack/+`,
    /** JSON heartbeats, node -> anyone. */
    telemetry: (node: string) => `${root}/telemetry/${node}`,
    telemetries: `${root}/telemetry/+`,
    /** JSON generated tokens, gateway -> anyone. */
    tokens: `${root}/tokens`,
    /** JSON reports of dropped messages, anyone -> anyone. */
    errors: `${root}/errors`,
    /** JSON sensor readings (schemas/sensors.json), node -> anyone. */
    sensors: (node: string) => `${root}/sensors/${node}`,
    sensorsAll: `${root}/sensors/+`,
    /** JSON steering of one node (schemas/steering.json), gateway -> node. */
    steer: (node: string) => `${root}/steer/${node}`,
    /** JSON per-token attribution of the steering to nodes, gateway -> anyone. */
    attribution: `${root}/attribution`,
    /** JSON sensor baselines of one node (schemas/baseline.json), retained, calibration -> anyone. */
    baseline: (node: string) => `${root}/baseline/${node}`,
    baselines: `${root}/baseline/+`,
    /** JSON alert messages (schemas/alert.json), the alert node -> anyone; QoS 1, not retained. */
    alerts: `${root}/alerts`,
    /** "ON" while any alert of the node is active, else "OFF"; retained (Home Assistant's binary_sensor). */
    alertState: (node: string) => `${root}/alert-state/${checkId('node', node)}`,
    /** JSON mesh events (schemas/event.json: broadcasts, results, tokens, radio), every gateway path -> anyone; QoS 0. */
    events: `${root}/events`,
    /** Generation requests (schemas/generate-request.json), anyone -> the gateway's flow. */
    generate: `${root}/generate`,
    /** JSON presence of a gateway that takes durable jobs (schemas/gateway.json), retained; its last will says offline. */
    gateway: `${root}/gateway`,
    /** JSON progress of one durable job (schemas/job.json), the gateway -> anyone; QoS 1, states retained. */
    job: (id: string) => `${root}/jobs/${id}`,
    jobs: `${root}/jobs/+`,
    /** JSON control of the simulated sensors (schemas/sim-control.json), the dashboard -> the simulation. */
    simControl: `${root}/sim/control`,
  };
}

export type Topics = ReturnType<typeof topicsFor>;

/** The last level of a per-node topic (".../result/node-3" -> "node-3"). */
export function nodeOfTopic(topic: string): string {
  return topic.slice(topic.lastIndexOf('/') + 1);
}

// ---------------------------------------------------------------------------------------------
// JSON control messages. The shapes below mirror schemas/*.json; ajv checks every received one.

export type NodeState = 'online' | 'loading' | 'ready' | 'offline' | 'failed';

export interface StatusMessage {
  protocol: 1;
  node: string;
  state: NodeState;
  pid?: number;
  /** A fixed slot (a radio node's flashed radio address): the gateway assigns the node this slot. */
  slot?: number;
  assignment?: string;
  heads?: number[];
  kvHeads?: number[];
  weights?: WeightFormat;
  weightBytes?: number;
  reason?: string;
}

export interface ModelShape {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
}

export interface AssignmentMessage {
  protocol: 1;
  assignment: string;
  slot: number;
  heads: number[];
  weights: WeightFormat;
  transport: Encoding;
  model: ModelShape;
}

export interface SessionMessage {
  protocol: 1;
  op: 'start' | 'end';
  session: number;
  assignment: string;
}

export interface AckMessage {
  protocol: 1;
  node: string;
  kind: 'assignment' | 'session' | 'steering';
  id: string;
  ok: boolean;
  error?: string;
}

export interface TelemetryMessage {
  protocol: 1;
  node: string;
  uptimeMs: number;
  rssBytes: number;
  weightBytes: number;
  cacheBytes: number;
  sessions: number;
  framesIn: number;
  framesOut: number;
  dropped: number;
}

export interface TokenMessage {
  protocol: 1;
  session: number;
  pos: number;
  token: number;
  piece: string;
}

export interface ErrorMessage {
  protocol: 1;
  source: string;
  topic: string;
  reason: string;
}

/** What a node adds to its head outputs at one layer: alpha * sum over channels of reading * share. */
export interface SteeringMessage {
  protocol: 1;
  id: string;
  /** The heads the shares were cut for (the node's assigned heads, ascending). */
  heads: number[];
  layer: number;
  alpha: number;
  /** share: [heads.length * headSize]; reading in [-1, 1]. */
  channels: { name: string; reading: number; share: number[] }[];
}

/** A node's sensor baselines from a calibration window: per channel the median and scaled MAD. */
export interface BaselineMessage {
  protocol: 1;
  node: string;
  /** When the calibration ran, ms since the Unix epoch. */
  at: number;
  channels: Record<string, { median: number; mad: number; samples: number }>;
}

/** One mesh event (schemas/event.json), by kind; `at` is ms since the Unix epoch. */
export type MeshEventMessage = { protocol: 1; at: number } & (
  | { kind: 'run-start'; run: string; session: number; source: 'cli' | 'flow' | 'radio'; prompt: string; steps: number; temperature: number; promptTokens: number; steered?: boolean }
  | { kind: 'assigned'; nodes: { node: string; slot?: number; heads: number[] }[] }
  | { kind: 'broadcast'; session: number; pos: number; layer: number }
  | { kind: 'result'; session: number; pos: number; layer: number; node: string; ms: number }
  | { kind: 'gather'; session: number; pos: number; layer: number; ms: number; nodes: { node: string; ms: number }[] }
  | { kind: 'late'; session: number; pos: number; layer: number; ms: number; nodes: string[] }
  | { kind: 'failed'; session?: number; pos?: number; layer?: number; reason: string; nodes: string[] }
  | { kind: 'failover'; session: number; pos: number; layer: number; lost: string[]; moves: { heads: number[]; from: string; to: string }[]; replayed: number; replayMs: number }
  | { kind: 'token'; run: string; session: number; pos: number; token: number; piece: string; sampled: boolean; probability?: number; kl?: number | null; node?: string | null; secondsPerToken?: number }
  | { kind: 'run-end'; run: string; session?: number; tokens: number; text?: string; seconds: number; error?: string }
  | {
      kind: 'radio';
      session?: number;
      pos: number;
      simulatedSeconds: number;
      boundSeconds: number;
      airtimeSeconds: Record<string, number>;
      framesLost: number;
      framesResent: number;
      dutyCycle: { band: string; used: number }[];
      nodes?: { node: string; rssi?: number; snr?: number }[];
    }
);

export type MeshEventKind = MeshEventMessage['kind'];

/** Steers the simulation: a scenario's event now, a node's channel held at a value (null: let go), the simulated radio's pace. */
export interface SimControlMessage {
  protocol: 1;
  scenario?: 'calm' | 'explosion' | 'bright-flash' | 'earthquake';
  node?: string;
  channel?: 'soundDb' | 'vibrationG' | 'lightLux' | 'temperatureC' | 'humidityPct';
  value?: number | null;
  /** The simulated radio's pace: simulated seconds per wall second. */
  timeScale?: number;
}

/** A durable job's progress (schemas/job.json): a state, or a token just committed. */
export interface JobMessage {
  protocol: 1;
  job: string;
  state: 'queued' | 'running' | 'done' | 'failed' | 'refused';
  position: number;
  token?: { pos: number; token: number; piece: string };
  tokens?: number[];
  pieces?: string[];
  text?: string;
  tokensPerSecond?: number;
  error?: string;
}

/** A gateway that takes durable jobs (schemas/gateway.json). */
export interface GatewayMessage {
  protocol: 1;
  state: 'online' | 'offline';
  jobs?: boolean;
  pid?: number;
}

export interface ControlMessages {
  status: StatusMessage;
  assignment: AssignmentMessage;
  session: SessionMessage;
  ack: AckMessage;
  telemetry: TelemetryMessage;
  token: TokenMessage;
  error: ErrorMessage;
  steering: SteeringMessage;
  baseline: BaselineMessage;
  event: MeshEventMessage;
  'sim-control': SimControlMessage;
  job: JobMessage;
  gateway: GatewayMessage;
}

export type ControlKind = keyof ControlMessages;
export const CONTROL_KINDS: readonly ControlKind[] = ['status', 'assignment', 'session', 'ack', 'telemetry', 'token', 'error', 'steering', 'baseline', 'event', 'sim-control', 'job', 'gateway'];

/** schemas/ of the package. */
export function schemaDir(): string {
  return path.join(packageRoot(), 'schemas');
}

// discriminator: schemas/event.json picks its branch by `kind`, so a bad event's reason names the field of its own kind
const ajv = new Ajv({ allErrors: false, strict: true, discriminator: true });
const validators = new Map<ControlKind, ValidateFunction>();

/** The compiled schema of a kind, compiled on first use (a node needs only a few). */
function validatorFor(kind: ControlKind): ValidateFunction {
  let v = validators.get(kind);
  if (!v) {
    v = ajv.compile(JSON.parse(fs.readFileSync(path.join(schemaDir(), `${kind}.json`), 'utf8')));
    validators.set(kind, v);
  }
  return v;
}

/** A JSON message that is not valid JSON or fails its schema; the message says why. */
export class ControlMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ControlMessageError';
  }
}

/** Parses and validates a received control message against schemas/{kind}.json. */
export function parseControl<K extends ControlKind>(kind: K, payload: Buffer | string): ControlMessages[K] {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString());
  } catch (e) {
    throw new ControlMessageError(`${kind} message is not JSON: ${(e as Error).message}`);
  }
  const validate = validatorFor(kind);
  if (!validate(value)) {
    const first = validate.errors?.[0];
    const where = first?.instancePath || '(root)';
    throw new ControlMessageError(`${kind} message fails schemas/${kind}.json: ${where} ${first?.message ?? 'is invalid'}`);
  }
  return value as ControlMessages[K];
}

/**
 * A received control message, parsed and validated; one that fails goes to `dropped` with the
 * reason (the receiver counts it and reports it) and gives null.
 */
export function receiveControl<K extends ControlKind>(kind: K, payload: Buffer | string, dropped: (reason: string) => void): ControlMessages[K] | null {
  try {
    return parseControl(kind, payload);
  } catch (e) {
    dropped((e as Error).message);
    return null;
  }
}

/** Serialises a control message; the sender validates too, so a bug shows up where it is made. */
export function encodeControl<K extends ControlKind>(kind: K, message: ControlMessages[K]): string {
  const text = JSON.stringify(message);
  parseControl(kind, text);
  return text;
}
