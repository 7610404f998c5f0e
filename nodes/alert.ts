/**
 * mesh-llm-alert: environmental-sensor alert hooks. Runs the configured detectors
 * (lib/alerts) over sensor messages, node statuses and per-token KL values, and sends
 * schema-checked alert messages (output 1, topic mesh-llm/{mesh}/alerts), each node's alert
 * state (output 2, retained ON/OFF for Home Assistant's binary_sensor) and Home Assistant
 * discovery configs (output 3, retained). Bad settings are refused at deploy (node.error and a
 * red status); a bad input goes to done(err).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow } from 'node-red';
import { AlertHooks, HookMessages } from '../lib/alerts/hooks';
import { CHANNEL_NAMES } from '../lib/steering/sensors';
import { Done, Send, registerNode } from './common';
import { jobsOfMesh } from '../lib/runs/jobs';

interface AlertDef extends NodeDef {
  meshId: string;
  detectors: unknown;
  discovery: boolean;
  discoveryPrefix: string;
}

/** The editor's copy of the settings checks: lib/alerts/settings.js (which imports nothing) as a browser script. */
function editorSettingsScript(): string {
  const source = fs.readFileSync(path.join(__dirname, '..', 'lib', 'alerts', 'settings.js'), 'utf8').replace(/\/\/# sourceMappingURL=.*$/m, '');
  return `(function () {\nvar exports = {};\n${source}\nexports.SENSOR_CHANNELS = ${JSON.stringify(CHANNEL_NAMES)};\nwindow.meshLlmAlertSettings = exports;\n})();\n`;
}

export = function register(RED: NodeAPI): void {
  RED.httpAdmin.get('/mesh-llm-alert/settings.js', RED.auth.needsPermission('mesh-llm-alert.read'), (_req, res) => {
    res.type('application/javascript').send(editorSettingsScript());
  });

  registerNode<AlertDef>(RED, 'mesh-llm-alert', function (this: Node, def: AlertDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    let hooks: AlertHooks | null = null;
    let refused = '';
    try {
      hooks = new AlertHooks(def.detectors, { meshId: def.meshId || 'default', discoveryPrefix: def.discovery === false ? null : def.discoveryPrefix || 'homeassistant' });
    } catch (e) {
      refused = (e as Error).message;
      node.status({ fill: 'red', shape: 'ring', text: refused.slice(0, 60) });
      node.error(`mesh-llm-alert "${def.name || node.id}": ${refused}`);
    }

    const showStatus = (h: AlertHooks) => {
      const active = h.engine.active();
      node.status(active.length ? { fill: 'red', shape: 'dot', text: `${active.length} active: ${active.map((a) => `${a.node} ${a.channel}`).join(', ')}`.slice(0, 80) } : { fill: 'green', shape: 'ring', text: 'no active alert' });
    };
    /** Sends each output's messages (Node-RED takes an array of messages per output). */
    const sendAll = (h: AlertHooks, out: HookMessages, send: Send) => {
      for (const a of out.alerts) jobsOfMesh(def.meshId || 'default')?.alert(a.payload); // recorded with the run in progress, if any
      if (out.alerts.length || out.states.length || out.discovery.length) send([out.alerts, out.states, out.discovery] as unknown as NodeMessage[]);
      if (out.alerts.length || out.states.length) showStatus(h);
    };

    if (hooks) showStatus(hooks);
    const timer = setInterval(() => {
      if (hooks) sendAll(hooks, hooks.tick(Date.now()), (m) => node.send(m));
    }, 1000);

    node.on('input', (msg: NodeMessageInFlow, send: Send, done: Done) => {
      if (!hooks) return done(new Error(`mesh-llm-alert "${def.name || node.id}" has bad settings: ${refused}`));
      try {
        sendAll(hooks, hooks.handle(msg.payload, msg.topic, Date.now()), send);
        done();
      } catch (e) {
        done(e as Error);
      }
    });

    node.on('close', (doneClosing: () => void) => {
      clearInterval(timer);
      doneClosing();
    });
  });
};
