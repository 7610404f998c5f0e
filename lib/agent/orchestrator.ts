/**
 * The orchestrator (the gateway of the agentic mesh): runs one request through the roles on
 * the bus: retrieve -> reason (passages in the prompt, the sensing role's steering applied by
 * the reasoning role) -> filter -> accept, or reason again with the filter's reasons, up to
 * maxAttempts drafts. The answer cites the passages its draft was written from.
 */
import { MeshLlmError } from '../llm/errors';
import { AgentBus } from './bus';
import { AGENT_SAMPLING } from './calibrate';
import { DraftMessage, Passage, PassagesMessage, ReasonMessage, RoleStatusMessage, VerdictMessage } from './messages';
import { Role } from './topics';

export interface AskOptions {
  /** Passages to retrieve (0: none). */
  k?: number;
  /** Drafts at most, the first included. */
  maxAttempts?: number;
  tokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  /** How long one role may take to answer. */
  timeoutMs?: number;
  /** Each message of the request as it arrives, for progress. */
  onEvent?: (e: { kind: 'passages'; passages: Passage[] } | { kind: 'draft'; draft: DraftMessage } | { kind: 'verdict'; verdict: VerdictMessage }) => void;
}

export const ASK_DEFAULTS = { k: 3, maxAttempts: 4, tokens: AGENT_SAMPLING.tokens, temperature: AGENT_SAMPLING.temperature, topP: AGENT_SAMPLING.topP, seed: 1, timeoutMs: 60000 } as const;

export interface Attempt {
  attempt: number;
  draft: DraftMessage;
  verdict: VerdictMessage;
}

export interface AgentResult {
  id: string;
  prompt: string;
  /** What retrieval returned. */
  passages: Passage[];
  attempts: Attempt[];
  /** Whether the last draft was accepted (else maxAttempts drafts were all rejected). */
  accepted: boolean;
  /** The last draft's text (the accepted one when there is one). */
  text: string;
  /** Sources of the passages the final draft was written from. */
  citations: string[];
  /** prompt + text, then the citations: what a person reads. */
  answer: string;
}

/** The answer as a person reads it: the prompt continued by the draft, then its sources numbered. */
export function answerText(prompt: string, text: string, citations: readonly string[]): string {
  const cited = citations.length ? `\n\nSources: ${citations.map((c, i) => `[${i + 1}] ${c}`).join('; ')}` : '';
  return `${prompt}${text}${cited}`;
}

type Waiter<T> = { resolve: (m: T) => void; timer: NodeJS.Timeout };

export class Orchestrator {
  private readonly statuses = new Map<Role, RoleStatusMessage>();
  private readonly waiting = new Map<string, Waiter<unknown>>();
  private requests = 0;

  private constructor(readonly bus: AgentBus) {}

  static async connect(bus: AgentBus): Promise<Orchestrator> {
    const o = new Orchestrator(bus);
    await bus.on('status', (s) => o.statuses.set(s.role, s));
    await bus.on('passages', (m) => o.settle(`passages:${m.id}`, m));
    await bus.on('draft', (m) => o.settle(`draft:${m.id}:${m.attempt}`, m));
    await bus.on('verdict', (m) => o.settle(`verdict:${m.id}:${m.attempt}`, m));
    return o;
  }

  private settle(key: string, m: unknown): void {
    const w = this.waiting.get(key);
    if (!w) return;
    this.waiting.delete(key);
    w.resolve(m);
  }

  private expect<T>(key: string, role: Role, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new MeshLlmError(`the ${role} role did not answer within ${timeoutMs} ms (${this.describe(role)})`));
      }, timeoutMs);

      this.waiting.set(key, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as T);
        },
        timer,
      });
    });
  }

  private describe(role: Role): string {
    const s = this.statuses.get(role);
    return s ? `its status: ${s.state}${s.pid ? `, pid ${s.pid}` : ''}` : `no ${role} role has announced itself on mesh ${this.bus.meshId}: start \`mesh-llm role ${role} --broker URL\``;
  }

  /** The roles' last statuses. */
  roles(): Map<Role, RoleStatusMessage> {
    return new Map(this.statuses);
  }

  /** Resolves once every role named is ready, or rejects naming the missing ones. */
  async waitForRoles(roles: readonly Role[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const missing = () => roles.filter((r) => this.statuses.get(r)?.state !== 'ready');
    while (missing().length > 0) {
      if (Date.now() > deadline) throw new MeshLlmError(`roles not ready on mesh ${this.bus.meshId} after ${timeoutMs} ms: ${missing().join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async ask(prompt: string, options: AskOptions = {}): Promise<AgentResult> {
    const id = `q${++this.requests}-${Date.now().toString(36)}-${process.pid}`;
    try {
      return await this.run(id, prompt, { ...ASK_DEFAULTS, ...options });
    } finally {
      // a request that failed leaves no timer behind (it would hold the process for its timeout)
      for (const [key, w] of this.waiting) {
        if (key.split(':')[1] === id) {
          clearTimeout(w.timer);
          this.waiting.delete(key);
        }
      }
    }
  }

  private async run(id: string, prompt: string, o: Required<Omit<AskOptions, 'onEvent'>> & Pick<AskOptions, 'onEvent'>): Promise<AgentResult> {
    let passages: Passage[] = [];
    if (o.k > 0) {
      const reply = this.expect<PassagesMessage>(`passages:${id}`, 'retrieval', o.timeoutMs);
      await this.bus.publish('query', { protocol: 1, id, prompt, k: o.k });
      passages = (await reply).passages;
      o.onEvent?.({ kind: 'passages', passages });
    }
    const attempts: Attempt[] = [];
    const feedback: ReasonMessage['feedback'] = [];
    for (let attempt = 1; attempt <= o.maxAttempts; attempt++) {
      const draftReply = this.expect<DraftMessage>(`draft:${id}:${attempt}`, 'reasoning', o.timeoutMs);
      const verdictReply = this.expect<VerdictMessage>(`verdict:${id}:${attempt}`, 'filter', 2 * o.timeoutMs);
      verdictReply.catch(() => undefined);
      await this.bus.publish('reason', { protocol: 1, id, attempt, prompt, passages, feedback: [...feedback], tokens: o.tokens, temperature: o.temperature, topP: o.topP, seed: o.seed });
      const draft = await draftReply;
      o.onEvent?.({ kind: 'draft', draft });
      const verdict = await verdictReply;
      o.onEvent?.({ kind: 'verdict', verdict });
      attempts.push({ attempt, draft, verdict });
      if (verdict.accepted) break;
      for (const c of verdict.checks) if (!c.ok) feedback.push({ check: c.check, reason: c.reason, ...(c.words ? { words: c.words } : {}) });
    }
    const last = attempts[attempts.length - 1];
    const citations = last.draft.sources;
    return { id, prompt, passages, attempts, accepted: last.verdict.accepted, text: last.draft.text, citations, answer: answerText(prompt, last.draft.text, citations) };
  }
}
