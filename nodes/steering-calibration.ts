/**
 * mesh-llm-steering-calibration: turns sensor telemetry into calibrated steering. Per node
 * and channel it keeps a window of readings; once a node has `window` readings on each of
 * its channels (or on a message with topic "calibrate") it computes robust baselines
 * (median, MAD), publishes them retained on mesh-llm/{mesh}/baseline/{node}, and from then on
 * normalises every reading to [-1, 1]. Output 1: baselines. Output 2: the node's normalised
 * readings. Output 3: alerts, a reading at or beyond the alert level. With "steer the mesh"
 * on, the normalised readings of all nodes are sent to the head nodes as steering vectors.
 */
import type { Node, NodeAPI, NodeMessage, NodeMessageInFlow } from 'node-red';
import type { MqttClient } from 'mqtt';
import { connectMqtt, endClient } from '../lib/mesh/mqtt';
import { BaselineMessage, PROTOCOL_VERSION, encodeControl, topicsFor } from '../lib/mesh/wire';
import { Calibrator } from '../lib/steering/calibration';
import { SensorMessage, parseSensorMessage } from '../lib/steering/sensors';
import { Done, Send, StepNodeDef, meshOf, numberOr, registerNode, throttledStatus } from './common';

interface CalibrationDef extends StepNodeDef {
  window: string;
  fullScale: string;
  alertLevel: string;
  steer: boolean;
  alpha: string;
  steerIntervalMs: string;
}

export = function register(RED: NodeAPI): void {
  registerNode<CalibrationDef>(RED, 'mesh-llm-steering-calibration', function (this: Node, def: CalibrationDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const mesh = meshOf(RED, node, def.mesh);
    const t = topicsFor(mesh.bus.meshId);
    const window = Math.max(3, Math.round(numberOr(def.window, 60)));
    const calibrator = new Calibrator({ window, fullScale: numberOr(def.fullScale, 6) });
    const alertLevel = numberOr(def.alertLevel, 0.8);
    const steerEvery = numberOr(def.steerIntervalMs, 1000);
    const status = throttledStatus(node, 500);
    const calibrated = new Set<string>();
    const samples = new Map<string, Map<string, number>>();
    let client: Promise<MqttClient> | null = null;
    let lastSteer = 0;

    const bus = () => (client ??= connectMqtt({ url: mesh.bus.url, username: mesh.bus.username, password: mesh.bus.password, clientId: `mesh-llm-${mesh.bus.meshId}-calibration-${node.id}`.slice(0, 64) }));

    /** Calibrates every node (or the ones given) and returns their baseline messages. */
    const calibrate = (only?: string): BaselineMessage[] => {
      const all = calibrator.calibrate();
      const at = Date.now();
      return Object.entries(all)
        .filter(([n]) => only === undefined || n === only)
        .map(([n, channels]) => {
          calibrated.add(n);
          return { protocol: PROTOCOL_VERSION, node: n, at, channels };
        });
    };

    const publish = (baselines: BaselineMessage[]) =>
      bus().then((c) => {
        for (const b of baselines) c.publish(t.baseline(b.node), encodeControl('baseline', b), { qos: 1, retain: true });
      });

    /** Counts a node's accepted readings per channel; true once every channel has a full window. */
    const windowFull = (m: SensorMessage, rejected: Set<string>): boolean => {
      let counts = samples.get(m.node);
      if (!counts) samples.set(m.node, (counts = new Map()));
      for (const [channel, v] of Object.entries(m.readings)) if (v !== null && !rejected.has(channel)) counts.set(channel, (counts.get(channel) ?? 0) + 1);
      return counts.size > 0 && [...counts.values()].every((n) => n >= window);
    };

    node.on('input', (msg: NodeMessageInFlow, send: Send, done: Done) => {
      try {
        if (msg.topic === 'calibrate') {
          const baselines = calibrate();
          send([{ topic: 'baselines', payload: baselines }, null, null]);
          publish(baselines).then(() => done(), done);
          status({ fill: 'green', shape: 'dot', text: `calibrated ${baselines.length} nodes` }, true);
          return;
        }
        const m = typeof msg.payload === 'object' && msg.payload !== null && !Buffer.isBuffer(msg.payload) ? parseSensorMessage(JSON.stringify(msg.payload)) : parseSensorMessage(String(msg.payload));
        const rejected = calibrator.addMessage(m);
        for (const r of rejected) node.warn(`${m.node}: ${r.reason}`);
        const out: (NodeMessage | null)[] = [null, null, null];
        if (!calibrated.has(m.node) && windowFull(m, new Set(rejected.map((r) => r.channel)))) {
          const baselines = calibrate(m.node);
          out[0] = { topic: m.node, payload: baselines[0] };
          void publish(baselines).catch((e: Error) => node.warn(`could not publish baselines: ${e.message}`));
        }
        if (calibrated.has(m.node)) {
          const readings = calibrator.normalised(m.node, m.at);
          out[1] = { topic: m.node, payload: { node: m.node, at: m.at, readings } };
          const alerts = Object.entries(readings).filter(([, r]) => Math.abs(r) >= alertLevel);
          if (alerts.length > 0) out[2] = { topic: 'alert', payload: { node: m.node, at: m.at, channels: Object.fromEntries(alerts), raw: m.readings } };
          status({ fill: alerts.length ? 'red' : 'green', shape: 'dot', text: `${m.node}: ${Object.entries(readings).map(([c, r]) => `${c} ${r.toFixed(2)}`).join(' ')}` });
          if (def.steer && m.at - lastSteer >= steerEvery) {
            lastSteer = m.at;
            mesh
              .runtime()
              .then((rt) => rt.steer(calibrator.allNormalised(m.at), def.alpha ? numberOr(def.alpha, 0.3) : undefined, calibrator.baselines()))
              .catch((e: Error) => node.warn(`steering the mesh failed: ${e.message}`));
          }
        } else {
          status({ fill: 'yellow', shape: 'ring', text: `${m.node}: calibrating (${Math.min(...(samples.get(m.node)?.values() ?? [0]))}/${window})` });
        }
        send(out);
        done();
      } catch (e) {
        done(e as Error);
      }
    });

    node.on('close', (doneClosing: () => void) => {
      const c = client;
      client = null;
      if (!c) return doneClosing();
      c.then((x) => endClient(x)).then(doneClosing, () => doneClosing());
    });
  });
};
