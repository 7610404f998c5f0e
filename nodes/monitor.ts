/**
 * mesh-llm-monitor: what the dashboard shows. Subscribes to the mesh's events
 * (mesh-llm/{mesh}/events, schemas/event.json) and its nodes' statuses, folds them into the
 * dashboard's model (lib/dashboard/state.ts) and sends a snapshot (msg.payload) at most every
 * 200 ms while something changes. Events given on its input (a recorded run, say) are
 * folded in the same way. A message that fails its schema is dropped with the reason
 * (done(err) for an input, a warning and the errors topic for the bus) and the node goes on.
 */
import type { Node, NodeAPI, NodeMessageInFlow } from 'node-red';
import type { MqttClient } from 'mqtt';
import { DashboardModel } from '../lib/dashboard/state';
import { connectMqtt, endClient, subscribe } from '../lib/mesh/mqtt';
import { PROTOCOL_VERSION, encodeControl, parseControl, topicsFor } from '../lib/mesh/wire';
import { Done, Send, StepNodeDef, meshOf, registerNode, throttledStatus } from './common';

/** The fastest the dashboard is sent a snapshot (ms): a person reads no faster, the websocket stays light. */
const SNAPSHOT_MS = 200;

export = function register(RED: NodeAPI): void {
  registerNode<StepNodeDef>(RED, 'mesh-llm-monitor', function (this: Node, def: StepNodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const status = throttledStatus(node, 500);
    const model = new DashboardModel();
    let client: MqttClient | null = null;
    let closing = false;
    let dirty = false;
    let events = 0;
    let dropped = 0;
    const timer = setInterval(() => {
      if (!dirty) return;
      dirty = false;
      const s = model.snapshot();
      node.send({ topic: 'mesh-llm/dashboard', payload: s });
      const p = s.progress;
      status(p.state === 'running' ? { fill: 'blue', shape: 'dot', text: `pos ${p.pos}/${p.steps} layer ${p.layer ?? '-'} · ${s.nodes.length} nodes` } : { fill: p.state === 'failed' ? 'red' : 'green', shape: 'ring', text: `${p.state} · ${events} events${dropped ? `, ${dropped} dropped` : ''}` });
    }, SNAPSHOT_MS);

    /** Folds one message in by its topic (…/events or …/status/<node>); throws the reason for one that fails. */
    const fold = (topic: string, payload: unknown) => {
      const text = typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload);
      if (/\/status\/[^/]+$/.test(topic)) model.status(parseControl('status', text));
      else model.event(parseControl('event', text));
      events++;
      dirty = true;
    };

    try {
      const { bus } = meshOf(RED, node, def.mesh);
      const t = topicsFor(bus.meshId);
      connectMqtt({ url: bus.url, username: bus.username, password: bus.password, clientId: `mesh-llm-${bus.meshId}-monitor-${node.id}`.slice(0, 64) })
        .then(async (c) => {
          if (closing) return endClient(c);
          client = c;
          c.on('message', (topic, payload) => {
            try {
              fold(topic, payload);
            } catch (e) {
              dropped++;
              const reason = (e as Error).message;
              node.warn(`dropped a message on ${topic}: ${reason}`);
              c.publish(t.errors, encodeControl('error', { protocol: PROTOCOL_VERSION, source: `node-red:${node.id}`, topic, reason: reason.slice(0, 500) }));
            }
          });
          await subscribe(c, [t.events, t.statuses], 0);
          status({ fill: 'green', shape: 'ring', text: `watching ${t.events}` }, true);
        })
        .catch((e: Error) => {
          status({ fill: 'red', shape: 'ring', text: e.message.slice(0, 60) }, true);
          node.error(`mesh-llm-monitor cannot reach the bus: ${e.message}`);
        });
    } catch (e) {
      node.error((e as Error).message);
    }

    node.on('input', (msg: NodeMessageInFlow, _send: Send, done: Done) => {
      try {
        fold(typeof msg.topic === 'string' ? msg.topic : '', msg.payload);
        done();
      } catch (e) {
        dropped++;
        done(e as Error);
      }
    });

    node.on('close', (done: () => void) => {
      closing = true;
      clearInterval(timer);
      const c = client;
      client = null;
      if (!c) return done();
      endClient(c).then(done, () => done());
    });
  });
};
