/**
 * Recording a generation that runs outside the flow (engine.generate on any HeadRunner, the
 * mesh gateway's generate): a job row for it, then its gathers and tokens as they happen,
 * each token committed with the gathers of its position.
 */
import { randomUUID } from 'node:crypto';
import { GenerateOptions, GenerationResult, TokenListener } from '../llm/engine';
import { ModelIdentity, settingsOf } from './jobs';
import { GatherRecord, MeshRecord, RunStore } from './store';
import { tokenDistribution } from '../mesh/events';

export class RunRecorder {
  readonly id: string;
  private readonly store: RunStore;
  private readonly promptTokens: number;
  private gathers: GatherRecord[] = [];

  constructor(store: RunStore, o: { options: GenerateOptions; source: string; model: ModelIdentity; mesh: MeshRecord; promptTokens: number }) {
    this.store = store;
    this.id = randomUUID();
    this.promptTokens = o.promptTokens;
    store.addJob({ id: this.id, source: o.source, settings: settingsOf(o.options), model: o.model.path, modelDigest: o.model.digest });
    store.started(this.id, o.mesh);
  }

  /** A layer's gather (round trip, or airtime on the radio), written with the position's token. */
  gather(pos: number, layer: number, ms: number, node = ''): void {
    this.gathers.push({ pos, layer, node, ms });
  }

  /** The token listener to hand to generate(): each token is committed as it arrives. */
  readonly onToken: TokenListener = (token, piece, pos, logits) => {
    const gathers = this.gathers;
    this.gathers = [];
    const sampled = pos >= this.promptTokens;
    // a sampled token's probability and top alternatives, from the logits it was sampled from
    const distribution = sampled && logits ? tokenDistribution(logits, token) : {};
    this.store.addToken(this.id, { pos, token, piece: piece.toString('utf8'), sampled, ...distribution }, gathers);
  };

  finish(result: GenerationResult): void {
    this.store.finish(this.id, result.text);
  }
}
