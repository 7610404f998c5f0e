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
import { modulation } from '../lib/radio/airtime';
import { GatewayRadioLink } from '../lib/radio/mac';
import { RadioBridge } from '../gateway-bridge/bridge';
import { SimulatedRadioMesh, TokenRadioReport } from '../gateway-bridge/radio-mesh';
import { SerialModemLink } from '../gateway-bridge/serial';
import { SemtechUdpLink } from '../gateway-bridge/semtech';
import { SimulatedChannelLink } from '../gateway-bridge/sim-link';
import { Done, Send, registerNode, throttledStatus } from './common';

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

interface Running {
  mesh: SimulatedRadioMesh;
  bridge: RadioBridge;
  link: GatewayRadioLink;
}

function numberOr(text: string | undefined, fallback: number): number {
  const n = Number(text);
  return text !== undefined && text !== '' && Number.isFinite(n) ? n : fallback;
}

export = function register(RED: NodeAPI): void {
  registerNode<BridgeDef>(RED, 'mesh-llm-lora-bridge', function (this: Node, def: BridgeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const status = throttledStatus(node);
    const linkKind = def.link || 'sim';
    let running: Running | null = null;

    const start = async (): Promise<Running> => {
      const paths = resolveModelPaths({ model: def.model || undefined });
      const key = def.key ? Buffer.from(def.key, 'hex') : undefined;
      if (key && key.length !== 16) throw new Error('the network key must be 32 hex digits (16 bytes)');
      if ((linkKind !== 'sim' || def.timeScale) && !key) node.warn('no network key set: a random one is used, which real radios cannot know');
      const mesh = new SimulatedRadioMesh({
        modelPath: paths.model,
        nodes: numberOr(def.nodes, 4),
        quant: def.quant === 'int8' ? 'int8' : 'f32',
        region: def.region || 'EU868',
        sf: numberOr(def.sf, 7) as 7,
        bandwidthKHz: numberOr(def.bw, 125) as 125,
        channels: numberOr(def.channels, 1),
        loss: linkKind === 'sim' ? numberOr(def.loss, 0) : 0,
        // Real radios live in real time; the simulated channel may run faster (or as fast as possible: 0).
        timeScale: linkKind === 'sim' ? numberOr(def.timeScale, 1) : 1,
        key,
        nodesOnChannel: linkKind === 'sim',
      });
      const m = modulation(mesh.config.modulation);
      let link: GatewayRadioLink;
      if (linkKind === 'serial') {
        if (!def.serialPath) throw new Error('the serial link needs a serial port path');
        link = await SerialModemLink.open({ path: def.serialPath, baudRate: numberOr(def.baudRate, 115200), clock: mesh.clock, modulation: m });
      } else if (linkKind === 'udp') {
        link = await SemtechUdpLink.listen({ clock: mesh.clock, modulation: m, host: '0.0.0.0', port: numberOr(def.udpPort, 1700) });
      } else {
        link = new SimulatedChannelLink(mesh.attachGatewayRadio());
      }
      const mac = mesh.createMac(link);
      const collect = mac.onLayer;
      mac.onLayer = (r) => {
        collect(r);
        if (r.layer !== mesh.g.nLayers - 1) return;
        const t = mesh.report().perToken.find((p) => p.pos === r.pos) as TokenRadioReport;
        status({ fill: 'green', shape: 'dot', text: `position ${t.pos}: ${t.simulatedSeconds.toFixed(1)} s on air (${t.ratio.toFixed(2)}x bound)` });
        node.send({ topic: 'radio', payload: t });
      };
      const bridge = await RadioBridge.connect({
        url: def.broker || 'mqtt://127.0.0.1:1883',
        meshId: def.meshId || 'default',
        mac,
        g: mesh.g,
        transport: mesh.transport,
        nodes: mesh.infos,
        log: (level, text) => (level === 'error' ? node.error(text) : level === 'warn' ? node.warn(text) : node.debug(text)),
      });
      return { mesh, bridge, link };
    };

    status({ fill: 'yellow', shape: 'ring', text: 'connecting' }, true);
    const starting = start().then(
      (r) => {
        running = r;
        status({ fill: 'green', shape: 'ring', text: `${r.mesh.infos.length} radio node(s) on ${linkKind}` }, true);
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
        s({ ...msg, topic: 'radio-report', payload: r.mesh.report() });
        done();
      });
    });
    node.on('close', (done: () => void) => {
      starting
        .then(async () => {
          const r = running;
          running = null;
          if (!r) return;
          await r.bridge.close();
          await r.link.close();
        })
        .then(done, () => done());
    });
  });
};
