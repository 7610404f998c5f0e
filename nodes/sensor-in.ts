/**
 * mesh-llm-sensor-in: the mesh's sensor telemetry as messages. Subscribes to
 * mesh-llm/{mesh}/sensors/+ and sends each reading that passes schemas/sensors.json as
 * msg.payload (msg.topic = the node id). A message that fails is dropped with a warning and
 * a report on the mesh's errors topic.
 */
import type { Node, NodeAPI } from 'node-red';
import type { MqttClient } from 'mqtt';
import { connectMqtt, endClient, subscribe } from '../lib/mesh/mqtt';
import { PROTOCOL_VERSION, encodeControl, nodeOfTopic, topicsFor } from '../lib/mesh/wire';
import { parseSensorMessage } from '../lib/steering/sensors';
import { StepNodeDef, meshOf, registerNode, throttledStatus } from './common';

export = function register(RED: NodeAPI): void {
  registerNode<StepNodeDef>(RED, 'mesh-llm-sensor-in', function (this: Node, def: StepNodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const status = throttledStatus(node, 500);
    let client: MqttClient | null = null;
    let closing = false;
    let received = 0;
    try {
      const { bus } = meshOf(RED, node, def.mesh);
      const t = topicsFor(bus.meshId);
      status({ fill: 'yellow', shape: 'ring', text: `connecting to ${bus.url}` }, true);
      connectMqtt({ url: bus.url, username: bus.username, password: bus.password, clientId: `mesh-llm-${bus.meshId}-sensor-in-${node.id}`.slice(0, 64) })
        .then(async (c) => {
          if (closing) return endClient(c);
          client = c;
          c.on('message', (topic, payload) => {
            try {
              const m = parseSensorMessage(payload);
              if (m.node !== nodeOfTopic(topic)) throw new Error(`sensor message of node ${m.node} on the topic of ${nodeOfTopic(topic)}`);
              received++;
              status({ fill: 'green', shape: 'dot', text: `${received} readings, last from ${m.node}` });
              node.send({ topic: m.node, payload: m });
            } catch (e) {
              const reason = (e as Error).message;
              node.warn(`dropped a message on ${topic}: ${reason}`);
              c.publish(t.errors, encodeControl('error', { protocol: PROTOCOL_VERSION, source: `node-red:${node.id}`, topic, reason: reason.slice(0, 500) }));
            }
          });
          await subscribe(c, [t.sensorsAll], 0);
          status({ fill: 'green', shape: 'ring', text: `listening on ${t.sensorsAll}` }, true);
        })
        .catch((e: Error) => {
          status({ fill: 'red', shape: 'ring', text: e.message.slice(0, 60) }, true);
          node.error(`mesh-llm-sensor-in cannot reach the bus: ${e.message}`);
        });
    } catch (e) {
      node.error((e as Error).message);
    }
    node.on('close', (done: () => void) => {
      closing = true;
      const c = client;
      client = null;
      if (!c) return done();
      endClient(c).then(done, () => done());
    });
  });
};
