/**
 * What the dashboard shows, folded from the mesh events (schemas/event.json) and the nodes'
 * statuses: one tile per head node with its live state, the run's progress, the answer token by
 * token with how far the sensors moved each, and the radio's side. The mesh-llm-monitor node
 * keeps one of these and sends a snapshot to the dashboard's templates a few times a second.
 */
import { MeshEventMessage, StatusMessage } from '../mesh/wire';

/** A head node as the mesh map shows it. */
export type TileState = 'idle' | 'receiving' | 'computing' | 'sent' | 'late' | 'failed' | 'offline';

export interface NodeTile {
  node: string;
  heads: number[];
  state: TileState;
  /** The layer it is on or last finished (null between runs). */
  layer: number | null;
  /** Its last result's time after the broadcast, ms. */
  ms: number | null;
  rssi: number | null;
  snr: number | null;
  /** Behind the LoRa bridge (its status announces a fixed radio slot). */
  radio: boolean;
}

export interface TokenView {
  pos: number;
  piece: string;
  sampled: boolean;
  probability: number | null;
  /** KL(steered || unsteered), nats; null in an unsteered run. */
  kl: number | null;
  /** The node its steering moved the token most, or null. */
  node: string | null;
}

export interface ProgressView {
  state: 'idle' | 'running' | 'done' | 'failed';
  run: string | null;
  source: string | null;
  prompt: string;
  steps: number;
  pos: number;
  layer: number | null;
  layers: number | null;
  secondsPerToken: number | null;
  etaSeconds: number | null;
  elapsedSeconds: number;
  error: string | null;
  /** Failovers of the run so far: lost nodes whose heads moved to others (the run went on). */
  failovers: number;
}

export interface RadioView {
  pos: number;
  simulatedSeconds: number;
  boundSeconds: number;
  airtimeSeconds: Record<string, number>;
  dutyCycle: { band: string; used: number }[];
  framesLost: number;
  framesResent: number;
}

export interface DashboardState {
  nodes: NodeTile[];
  progress: ProgressView;
  tokens: TokenView[];
  radio: RadioView | null;
}

/** Tokens a snapshot keeps of the run (the seed's stories fit; a longer run shows its tail). */
export const MAX_TOKENS = 1024;
/** Positions the seconds-per-token average runs over. */
const RATE_WINDOW = 16;

function idleProgress(): ProgressView {
  return { state: 'idle', run: null, source: null, prompt: '', steps: 0, pos: 0, layer: null, layers: null, secondsPerToken: null, etaSeconds: null, elapsedSeconds: 0, error: null, failovers: 0 };
}

export class DashboardModel {
  private readonly tiles = new Map<string, NodeTile>();
  private progress = idleProgress();
  private tokens: TokenView[] = [];
  private radio: RadioView | null = null;
  private readonly recent: number[] = [];
  private startedAt = 0;
  private maxLayer = -1;
  private viaRadio = false;

  /** Folds one event in. */
  event(e: MeshEventMessage): void {
    switch (e.kind) {
      case 'assigned':
        for (const t of this.tiles.values()) t.heads = [];
        for (const n of e.nodes) this.tile(n.node).heads = n.heads;
        break;
      case 'run-start':
        this.progress = { ...idleProgress(), state: 'running', run: e.run, source: e.source, prompt: e.prompt, steps: e.steps, layers: this.maxLayer >= 0 ? this.maxLayer + 1 : null };
        this.tokens = [];
        this.recent.length = 0;
        this.startedAt = e.at;
        this.viaRadio = e.source === 'radio';
        this.radio = null;
        this.setAll((t) => (t.state === 'offline' ? t : { ...t, state: 'idle', layer: null, ms: null }));
        break;
      case 'broadcast':
        this.maxLayer = Math.max(this.maxLayer, e.layer);
        this.progress.layer = e.layer;
        this.progress.pos = Math.max(this.progress.pos, e.pos);
        this.progress.layers = this.maxLayer + 1;
        // over MQTT a broadcast is delivered at once; on the radio it takes its airtime first
        this.setAll((t) => (t.heads.length === 0 || t.state === 'offline' || t.state === 'failed' ? t : { ...t, state: this.viaRadio || t.radio ? 'receiving' : 'computing', layer: e.layer }));
        break;
      case 'result': {
        const t = this.tile(e.node);
        Object.assign(t, { state: 'sent', layer: e.layer, ms: e.ms });
        break;
      }
      case 'gather':
        for (const n of e.nodes) Object.assign(this.tile(n.node), { state: 'sent', layer: e.layer, ms: n.ms });
        break;
      case 'late':
        for (const n of e.nodes) Object.assign(this.tile(n), { state: 'late', layer: e.layer });
        break;
      case 'failed':
        for (const n of e.nodes) this.tile(n).state = 'failed';
        this.progress.error = e.reason;
        break;
      case 'failover':
        // the lost nodes' heads went to others, whose caches were rebuilt: the run goes on
        for (const n of e.lost) this.tile(n).state = 'failed';
        for (const m of e.moves) {
          const from = this.tile(m.from);
          const to = this.tile(m.to);
          from.heads = from.heads.filter((h) => !m.heads.includes(h));
          to.heads = [...new Set([...to.heads, ...m.heads])].sort((a, b) => a - b);
        }
        this.progress.failovers++;
        break;
      case 'token': {
        if (this.progress.run !== e.run) break;
        this.tokens.push({ pos: e.pos, piece: e.piece, sampled: e.sampled, probability: e.probability ?? null, kl: e.kl ?? null, node: e.node ?? null });
        if (this.tokens.length > MAX_TOKENS) this.tokens.splice(0, this.tokens.length - MAX_TOKENS);
        this.progress.pos = e.pos;
        if (e.secondsPerToken !== undefined) {
          this.recent.push(e.secondsPerToken);
          if (this.recent.length > RATE_WINDOW) this.recent.shift();
        }
        const rate = this.recent.length ? this.recent.reduce((a, b) => a + b, 0) / this.recent.length : null;
        this.progress.secondsPerToken = rate;
        this.progress.etaSeconds = rate === null ? null : Math.max(0, this.progress.steps - e.pos) * rate;
        this.progress.elapsedSeconds = (e.at - this.startedAt) / 1000;
        break;
      }
      case 'run-end':
        if (this.progress.run !== e.run) break;
        this.progress.state = e.error ? 'failed' : 'done';
        this.progress.error = e.error ?? this.progress.error;
        this.progress.etaSeconds = 0;
        this.progress.elapsedSeconds = e.seconds;
        this.setAll((t) => (t.state === 'offline' || t.state === 'failed' ? t : { ...t, state: 'idle' }));
        break;
      case 'radio':
        this.radio = { pos: e.pos, simulatedSeconds: e.simulatedSeconds, boundSeconds: e.boundSeconds, airtimeSeconds: e.airtimeSeconds, dutyCycle: e.dutyCycle, framesLost: e.framesLost, framesResent: e.framesResent };
        for (const n of e.nodes ?? []) Object.assign(this.tile(n.node), { rssi: n.rssi ?? null, snr: n.snr ?? null });
        break;
    }
  }

  /** Folds a node's status in: offline and failed show on its tile; a node back up is idle again. */
  status(s: StatusMessage): void {
    const t = this.tile(s.node);
    if (s.slot !== undefined) t.radio = true;
    if (s.state === 'offline') t.state = 'offline';
    else if (s.state === 'failed') t.state = 'failed';
    else if (t.state === 'offline' || t.state === 'failed') t.state = 'idle';
  }

  snapshot(): DashboardState {
    const nodes = [...this.tiles.values()].sort((a, b) => a.node.localeCompare(b.node, 'en', { numeric: true })).map((t) => ({ ...t, heads: [...t.heads] }));
    return { nodes, progress: { ...this.progress }, tokens: this.tokens.map((t) => ({ ...t })), radio: this.radio ? { ...this.radio } : null };
  }

  private tile(node: string): NodeTile {
    let t = this.tiles.get(node);
    if (!t) this.tiles.set(node, (t = { node, heads: [], state: 'idle', layer: null, ms: null, rssi: null, snr: null, radio: false }));
    return t;
  }

  private setAll(f: (t: NodeTile) => NodeTile): void {
    for (const [k, t] of this.tiles) this.tiles.set(k, f(t));
  }
}
