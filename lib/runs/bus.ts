/**
 * Durable jobs on the bus. The gateway's side (JobBus): a retained presence on
 * mesh-llm/{mesh}/gateway (schemas/gateway.json; its last will says offline) and each job's
 * progress on mesh-llm/{mesh}/jobs/{job} (schemas/job.json), published only after the run
 * store committed it. The client's side (followJob, `mesh-llm generate --broker` when a
 * gateway is online): a request with a job id of its own on the generate topic, then the
 * job's tokens as they come, to its end; a gateway that restarts mid-job resumes it, and the
 * follower picks the tokens up again from the job's state message.
 */
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { GenerateOptions } from '../llm/engine';
import { MeshLlmError } from '../llm/errors';
import { BrokerAddress, connectMqtt, endClient, subscribe } from '../mesh/mqtt';
import { GatewayMessage, JobMessage, PROTOCOL_VERSION, Topics, encodeControl, parseControl, topicsFor } from '../mesh/wire';

export interface JobBusOptions extends BrokerAddress {
  meshId: string;
  clientId: string;
  log?: (text: string) => void;
}

/** The gateway's publisher of its presence and of its jobs' progress. */
export class JobBus {
  private client: MqttClient | null = null;
  private readonly waiting: JobMessage[] = [];
  private closed = false;
  private readonly t: Topics;

  constructor(private readonly o: JobBusOptions) {
    this.t = topicsFor(o.meshId);
    const offline: GatewayMessage = { protocol: PROTOCOL_VERSION, state: 'offline', jobs: true };
    connectMqtt({ url: o.url, username: o.username, password: o.password, clientId: o.clientId, will: { topic: this.t.gateway, payload: encodeControl('gateway', offline), retain: true, qos: 1 } }).then(
      (c) => {
        if (this.closed) return void endClient(c);
        this.client = c;
        c.publish(this.t.gateway, encodeControl('gateway', { protocol: PROTOCOL_VERSION, state: 'online', jobs: true, pid: process.pid }), { qos: 1, retain: true });
        for (const m of this.waiting.splice(0)) this.tell(m);
      },
      (e: Error) => o.log?.(`jobs are not told on the bus: ${e.message}`),
    );
  }

  /** A job's progress: states retained (a follower that comes late still sees the last), tokens not. */
  tell(m: JobMessage): void {
    if (this.closed) return;
    if (!this.client) {
      this.waiting.push(m);
      return;
    }
    this.client.publish(this.t.job(m.job), encodeControl('job', m), { qos: 1, retain: m.token === undefined });
  }

  async close(): Promise<void> {
    this.closed = true;
    const c = this.client;
    this.client = null;
    if (!c) return;
    // with the broker gone the publish would wait for its acknowledgement for ever; the will says offline then
    if (c.connected)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 2000); // a broker that dies meanwhile answers nothing
        c.publish(this.t.gateway, encodeControl('gateway', { protocol: PROTOCOL_VERSION, state: 'offline', jobs: true }), { qos: 1, retain: true }, () => {
          clearTimeout(timer);
          resolve();
        });
      });
    await endClient(c);
  }
}

/** Whether a gateway that takes jobs is online on the mesh (its retained presence, within waitMs). */
export async function gatewayOnline(o: BrokerAddress & { meshId: string; waitMs?: number }): Promise<boolean> {
  const t = topicsFor(o.meshId);
  const c = await connectMqtt({ url: o.url, username: o.username, password: o.password, clientId: `mesh-llm-probe-${randomUUID().slice(0, 8)}` });
  try {
    let online = false;
    const seen = new Promise<void>((resolve) => {
      c.on('message', (_topic, payload) => {
        try {
          const g = parseControl('gateway', payload);
          online = g.state === 'online' && g.jobs === true;
        } catch {
          online = false;
        }
        resolve();
      });
    });
    await subscribe(c, [t.gateway], 1).catch((e: Error) => {
      // the embedded broker of mesh-llm start lets a client without a login only observe
      throw new MeshLlmError(`the broker ${o.url} refused ${o.username ? o.username : 'a client without a login'} the gateway's presence (${e.message}): give the gateway's login (--data DIR, the data folder of mesh-llm start, or --username/--password)`);
    });
    await Promise.race([seen, new Promise((r) => setTimeout(r, o.waitMs ?? 300))]);
    return online;
  } finally {
    await endClient(c);
  }
}

export interface FollowedJob {
  job: string;
  tokens: number[];
  text: string;
  tokensPerSecond: number;
}

/**
 * Enqueues a job on the gateway of the mesh and follows it to its end: onPiece is told each
 * position's piece once, in order (from the token messages, or from a state message when the
 * gateway restarted and some were not told). Rejects if no gateway accepts the job within
 * acceptMs, or when the job fails or is refused.
 */
export async function followJob(o: BrokerAddress & { meshId: string; options: GenerateOptions; onPiece?: (piece: string, pos: number) => void; onJob?: (id: string) => void; onGateway?: (online: boolean) => void; acceptMs?: number }): Promise<FollowedJob> {
  const id = randomUUID();
  const t = topicsFor(o.meshId);
  let printed = 0; // positions told to onPiece
  const tell = (pieces: readonly string[], from: number) => {
    // pieces[i] is position from+i
    for (let i = 0; i < pieces.length; i++) {
      const pos = from + i;
      if (pos === printed + 1) {
        o.onPiece?.(pieces[i], pos);
        printed = pos;
      }
    }
  };
  const c = await connectMqtt({ url: o.url, username: o.username, password: o.password, clientId: `mesh-llm-job-${id.slice(0, 8)}` });
  let timer: NodeJS.Timeout | undefined;
  let onClose: (() => void) | undefined;
  try {
    return await new Promise<FollowedJob>((resolve, reject) => {
      let accepted = false;
      timer = setTimeout(() => {
        if (!accepted) reject(new MeshLlmError(`no gateway on mesh "${o.meshId}" at ${o.url} accepted the job within ${Math.round((o.acceptMs ?? 15000) / 1000)} s (is mesh-llm start running on this broker?)`));
      }, o.acceptMs ?? 15000);
      onClose = () => reject(new MeshLlmError(`lost the broker ${o.url} while following job ${id}`));
      c.on('close', onClose);
      c.on('message', (topic, payload) => {
        if (topic === t.gateway) {
          try {
            o.onGateway?.(parseControl('gateway', payload).state === 'online');
          } catch {
            // not ours to judge: a bad presence message changes nothing
          }
          return;
        }
        let m: JobMessage;
        try {
          m = parseControl('job', payload);
        } catch {
          return;
        }
        if (!accepted) {
          accepted = true;
          clearTimeout(timer);
          o.onJob?.(id);
        }
        if (m.token) tell([m.token.piece], m.token.pos);
        if (m.pieces) tell(m.pieces, 1);
        if (m.state === 'done') resolve({ job: id, tokens: m.tokens ?? [], text: m.text ?? '', tokensPerSecond: m.tokensPerSecond ?? 0 });
        else if (m.state === 'failed' || m.state === 'refused') reject(new MeshLlmError(`job ${id} ${m.state}: ${m.error ?? 'no reason given'}`));
      });
      subscribe(c, [t.job(id), t.gateway], 1).then(() => {
        const g = o.options;
        const request = { prompt: g.prompt, steps: g.steps, temperature: g.temperature, topP: g.topP, seed: Number(g.seed), job: id };
        c.publish(t.generate, JSON.stringify(request), { qos: 1 });
      }, reject);
    });
  } finally {
    clearTimeout(timer);
    if (onClose) c.removeListener('close', onClose); // only ours: mqtt.js's own close handler stays
    await endClient(c);
  }
}
