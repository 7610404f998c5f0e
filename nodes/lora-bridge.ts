/**
 * mesh-llm-lora-bridge: the LoRa-to-MQTT bridge in a flow. While deployed it announces the
 * head nodes behind the gateway radio on the mesh's MQTT topics and carries every layer of a
 * generation over the radio: the simulated channel (with its head nodes computing there), a
 * serial LoRa modem, or a Semtech UDP packet forwarder. Output: one message per completed
 * token position with the radio's account of it. Input: any message asks for the whole run's
 * report so far.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { resolveModelPaths } from '../lib/llm/resolve';
import { BandwidthKHz, SpreadingFactor } from '../lib/radio/airtime';
import * as path from 'node:path';
import { RunningBridge, startBridge } from '../gateway-bridge/service';
import { Done, Send, numberOr, registerNode, throttledStatus } from './common';

interface BridgeDef extends NodeDef {
  broker: string;
  meshId: string;
  model: string;
  quant: 'f32' | 'int8';
  link: 'sim' | 'serial' | 'udp';
  serialPath: string;
  baudRate: string;
  udpPort: string;
  region: string;
  sf: string;
  bw: string;
  channels: string;
  nodes: string;
  loss: string;
  timeScale: string;
  key: string;
}

export = function register(RED: NodeAPI): void {
  registerNode<BridgeDef>(RED, 'mesh-llm-lora-bridge', function (this: Node, def: BridgeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const status = throttledStatus(node);
    const linkKind = def.link || 'sim';
    let running: RunningBridge | null = null;
    // the key is a Node-RED credential (encrypted, not in the flow); a flow from before keeps its plain field until saved again
    const keyHex = (this as unknown as { credentials?: { key?: string } }).credentials?.key || def.key;
    const key = keyHex ? Buffer.from(keyHex, 'hex') : undefined;
    if ((linkKind !== 'sim' || def.timeScale) && !key) node.warn('no network key set: a random one is used, which real radios cannot know');

    status({ fill: 'yellow', shape: 'ring', text: 'connecting' }, true);
    const starting = Promise.resolve().then(() => startBridge({
      brokerUrl: def.broker || 'mqtt://127.0.0.1:1883',
      meshId: def.meshId || 'default',
      modelPath: resolveModelPaths({ model: def.model || undefined }).model,
      quant: def.quant === 'int8' ? 'int8' : 'f32',
      link: linkKind,
      serialPath: def.serialPath || undefined,
      baudRate: numberOr(def.baudRate, 115200),
      udpPort: numberOr(def.udpPort, 1700),
      region: def.region || 'EU868',
      sf: numberOr(def.sf, 7) as SpreadingFactor,
      bandwidthKHz: numberOr(def.bw, 125) as BandwidthKHz,
      channels: numberOr(def.channels, 1),
      nodes: numberOr(def.nodes, 4),
      loss: numberOr(def.loss, 0),
      timeScale: numberOr(def.timeScale, 1),
      key,
      // real radios keep their frame counters and replay windows: the gateway's are kept under Node-RED's user folder
      stateDir: linkKind === 'sim' ? undefined : path.join((RED.settings as { userDir?: string }).userDir ?? '.', 'mesh-llm-radio', def.meshId || 'default'),
      onToken: (t) => {
        status({ fill: 'green', shape: 'dot', text: `position ${t.pos}: ${t.simulatedSeconds.toFixed(1)} s on air (${t.ratio.toFixed(2)}x bound)` });
        node.send({ topic: 'radio', payload: t });
      },
      log: (level, text) => (level === 'error' ? node.error(text) : level === 'warn' ? node.warn(text) : node.debug(text)),
    })).then(
      (r) => {
        running = r;
        status({ fill: 'green', shape: 'ring', text: `${r.nodes} radio node(s) on ${linkKind}` }, true);
        return r;
      },
      (e: Error) => {
        status({ fill: 'red', shape: 'dot', text: e.message.slice(0, 60) }, true);
        node.error(`LoRa bridge could not start: ${e.message}`);
        return null;
      },
    );

    node.on('input', (msg: NodeMessageInFlow, s: Send, done: Done) => {
      starting.then((r) => {
        if (!r) return done(new Error('the LoRa bridge is not running'));
        s({ ...msg, topic: 'radio-report', payload: r.report() });
        done();
      });
    });
    node.on('close', (done: () => void) => {
      starting
        .then(async () => {
          const r = running;
          running = null;
          if (!r) return;
          await r.close();
        })
        .then(done, () => done());
    });
  }, { key: { type: 'password' } }); // the network key is a Node-RED credential
};
