/**
 * The agentic mesh's messages, one definition: the shapes below mirror schemas/agent-*.json,
 * and every message is checked by ajv where it is sent and where it is received.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv, { ValidateFunction } from 'ajv';
import { schemaDir } from '../mesh/wire';
import { Role } from './topics';

export type PassageKind = 'document' | 'reading' | 'alert';

export interface Passage {
  /** file#paragraph, or node@ISO time for a reading or an alert. */
  source: string;
  kind: PassageKind;
  text: string;
  score: number;
  node?: string;
  at?: number;
}

export type CheckName = 'degeneration' | 'coherence' | 'safety';

export interface QueryMessage {
  protocol: 1;
  id: string;
  prompt: string;
  k: number;
}

export interface PassagesMessage {
  protocol: 1;
  id: string;
  passages: Passage[];
}

export interface ReasonMessage {
  protocol: 1;
  id: string;
  attempt: number;
  prompt: string;
  passages: Passage[];
  feedback: { check: CheckName; reason: string; words?: string[] }[];
  tokens: number;
  temperature: number;
  topP: number;
  seed: number;
}

export interface DraftSteering {
  source: string;
  alpha: number;
  nodes: number;
}

export interface DraftMessage {
  protocol: 1;
  id: string;
  attempt: number;
  prompt: string;
  text: string;
  tokens: number[];
  modelPrompt: string;
  /** Sources of the passages in the model's prompt. */
  sources: string[];
  temperature: number;
  seed: number;
  steering: DraftSteering | null;
}

export interface Check {
  check: CheckName;
  ok: boolean;
  value: number;
  threshold: number;
  reason: string;
  /** safety: the lexicon words found. */
  words?: string[];
}

export interface VerdictMessage {
  protocol: 1;
  id: string;
  attempt: number;
  accepted: boolean;
  checks: Check[];
  text: string;
}

export interface AgentSteeringMessage {
  protocol: 1;
  source: string;
  at: number;
  alpha?: number;
  readings: Record<string, Record<string, number>>;
}

export interface RoleStatusMessage {
  protocol: 1;
  role: Role;
  state: 'ready' | 'offline';
  pid?: number;
  detail?: string;
}

export interface AgentMessages {
  query: QueryMessage;
  passages: PassagesMessage;
  reason: ReasonMessage;
  draft: DraftMessage;
  verdict: VerdictMessage;
  steering: AgentSteeringMessage;
  status: RoleStatusMessage;
}

export type AgentKind = keyof AgentMessages;
export const AGENT_KINDS: readonly AgentKind[] = ['query', 'passages', 'reason', 'draft', 'verdict', 'steering', 'status'];

const ajv = new Ajv({ allErrors: false, strict: true, strictTypes: false });
const validators = new Map<AgentKind, ValidateFunction>();

function validatorFor(kind: AgentKind): ValidateFunction {
  let v = validators.get(kind);
  if (!v) {
    v = ajv.compile(JSON.parse(fs.readFileSync(path.join(schemaDir(), `agent-${kind}.json`), 'utf8')));
    validators.set(kind, v);
  }
  return v;
}

/** A received agent message that is not JSON or fails its schema; the message says which and why. */
export class AgentMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentMessageError';
  }
}

/** Checks a value against schemas/agent-{kind}.json. */
export function checkAgentMessage<K extends AgentKind>(kind: K, value: unknown): AgentMessages[K] {
  const validate = validatorFor(kind);
  if (!validate(value)) {
    const first = validate.errors?.[0];
    throw new AgentMessageError(`${kind} message fails schemas/agent-${kind}.json: ${first?.instancePath || '(root)'} ${first?.message ?? 'is invalid'}`);
  }
  return value as AgentMessages[K];
}

export function parseAgentMessage<K extends AgentKind>(kind: K, payload: Buffer | string): AgentMessages[K] {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString());
  } catch (e) {
    throw new AgentMessageError(`${kind} message is not JSON: ${(e as Error).message}`);
  }
  return checkAgentMessage(kind, value);
}

/** Serialises a message; the sender validates too, so a bug shows where it is made. */
export function encodeAgentMessage<K extends AgentKind>(kind: K, message: AgentMessages[K]): string {
  checkAgentMessage(kind, message);
  return JSON.stringify(message);
}
