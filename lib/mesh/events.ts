/**
 * The mesh event stream: what happens on the mesh, told as it happens (schemas/event.json,
 * published on mesh-llm/{mesh}/events). The gateway that runs the mesh owns one stream; its
 * runner tells it of every broadcast, result, gather, late node and failure, and the gateway
 * paths (the CLI's generate, steered runs, the radio run, the Node-RED flow) add the run's
 * start, each token and the end. Watchers subscribe with on(): the bus publisher, the flow's
 * node statuses, the CLI's --events file. The dashboard and the alert node read the bus.
 */
import { probabilities } from '../llm/fidelity';
import type { GatherListener } from './runner';
import { MeshEventMessage, PROTOCOL_VERSION } from './wire';

/** An event as a path makes it: the stream adds protocol and time. */
export type MeshEventInput = MeshEventMessage extends infer E ? (E extends unknown ? Omit<E, 'protocol' | 'at'> : never) : never;

export type MeshEventSink = (event: MeshEventMessage) => void;

/**
 * A result slower than this (ms after its broadcast) is told on its own, as it arrives; faster
 * ones only in their layer's gather event. On a mesh answering in a millisecond a person sees
 * nothing of single results and the bus would carry thousands a second; on the radio, where a
 * layer takes seconds, every one is told.
 */
export const RESULT_EVENT_MIN_MS = 50;

/** Each event, given to every watcher in turn; a watcher that throws does not stop the others. */
export class MeshEventStream {
  private readonly sinks = new Set<MeshEventSink>();

  /** Adds a watcher; returns what removes it. */
  on(sink: MeshEventSink): () => void {
    this.sinks.add(sink);
    return () => this.sinks.delete(sink);
  }

  emit(input: MeshEventInput): MeshEventMessage {
    const event = { protocol: PROTOCOL_VERSION, at: Date.now(), ...input } as MeshEventMessage;
    for (const sink of this.sinks) {
      try {
        sink(event);
      } catch {
        // a watcher's failure is its own (the bus publisher logs its own errors)
      }
    }
    return event;
  }

  /** The runner's listener: broadcast, result, gather, late and failed events of the session `session()` names. */
  gatherListener(session: () => number): GatherListener {
    let times: { node: string; ms: number }[] = [];
    return {
      started: (pos, layer) => {
        times = [];
        this.emit({ kind: 'broadcast', session: session(), pos, layer });
      },
      received: (pos, layer, node, ms) => {
        times.push({ node, ms: round(ms) });
        if (ms >= RESULT_EVENT_MIN_MS) this.emit({ kind: 'result', session: session(), pos, layer, node, ms: round(ms) });
      },
      done: (pos, layer, ms) => this.emit({ kind: 'gather', session: session(), pos, layer, ms: round(ms), nodes: times }),
      late: (pos, layer, missing, waitedMs) => this.emit({ kind: 'late', session: session(), pos, layer, ms: round(waitedMs), nodes: missing }),
      failed: (reason, nodes) => this.emit({ kind: 'failed', session: session() || undefined, reason: reason.slice(0, 2000), nodes }),
      failover: (f) => this.emit({ kind: 'failover', session: f.session, pos: f.pos, layer: f.layer, lost: [...f.lost], moves: f.moves.map((m) => ({ heads: [...m.heads], from: m.from, to: m.to })), replayed: f.replayed, replayMs: round(f.replayMs) }),
    };
  }
}

/** Milliseconds to the microsecond, so the JSON stays short. */
function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** The probability of `token` under softmax(logits): the model's own distribution, before temperature. */
export function tokenProbability(logits: Float32Array, token: number): number {
  return Math.min(1, Math.max(0, probabilities(logits)[token]));
}

/** How many alternatives a token's record keeps (lib/runs). */
export const TOP_K = 5;

/** A sampled token's probability and the TOP_K most probable tokens, under softmax(logits). */
export function tokenDistribution(logits: Float32Array, token: number): { probability: number; topK: [number, number][] } {
  const p = probabilities(logits);
  const top: [number, number][] = [];
  for (let i = 0; i < p.length; i++) {
    if (top.length < TOP_K || p[i] > top[top.length - 1][1]) {
      top.push([i, p[i]]);
      top.sort((a, b) => b[1] - a[1]);
      if (top.length > TOP_K) top.pop();
    }
  }
  return { probability: Math.min(1, Math.max(0, p[token])), topK: top };
}

/** How far the sensors moved a sampled token's distribution, for the token event of a steered run. */
export interface TokenSteering {
  /** KL(steered || unsteered), nats. */
  kl: number;
  /** The node whose steering moved it most, or null. */
  node: string | null;
}

/** Builds the token events of one run: the wall time of each position, the probability of each sampled token. */
export class RunEvents {
  private lastMs = performance.now();
  private count = 0;

  constructor(
    readonly stream: MeshEventStream,
    readonly run: string,
    private readonly session: () => number,
  ) {}

  start(o: { source: 'cli' | 'flow' | 'radio'; prompt: string; steps: number; temperature: number; promptTokens: number; steered?: boolean }): void {
    this.lastMs = performance.now();
    this.stream.emit({ kind: 'run-start', run: this.run, session: this.session(), ...o });
  }

  /** The token after position pos-1; logits are those it was sampled from (null: fed from the prompt). */
  token(pos: number, token: number, piece: Buffer | string, logits: Float32Array | null, steering?: TokenSteering): void {
    const now = performance.now();
    const secondsPerToken = round((now - this.lastMs) / 1000);
    this.lastMs = now;
    this.count++;
    const text = typeof piece === 'string' ? piece : piece.toString('utf8');
    this.stream.emit({
      kind: 'token',
      run: this.run,
      session: this.session(),
      pos,
      token,
      piece: text.slice(0, 1000),
      sampled: logits !== null,
      ...(logits ? { probability: tokenProbability(logits, token) } : {}),
      ...(steering ? { kl: steering.kl, node: steering.node } : {}),
      secondsPerToken,
    });
  }

  end(o: { tokens: number; seconds: number; text?: string; error?: string }): void {
    this.stream.emit({ kind: 'run-end', run: this.run, session: this.session() || undefined, tokens: o.tokens, seconds: o.seconds, ...(o.text !== undefined ? { text: o.text.slice(0, 100000) } : {}), ...(o.error ? { error: o.error.slice(0, 2000) } : {}) });
  }

  /** Tokens told so far. */
  get tokens(): number {
    return this.count;
  }
}
