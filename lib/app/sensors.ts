/**
 * Simulated sensors for the simulated head nodes: a scenario's trace (lib/steering/sensors.ts:
 * a calm minute for calibration, then the event) published in real time on each node's
 * sensors topic, then calm again, over and over. The dashboard steers it over the bus
 * (schemas/sim-control.json on mesh-llm/{mesh}/sim/control): a scenario's event at once, a
 * channel of a node held at a value (the sliders). (The same topic's timeScale paces the
 * simulated radio of `start --radio sim`.)
 */
import type { MqttClient } from 'mqtt';
import { connectMqtt, endClient, subscribe } from '../mesh/mqtt';
import { SimControlMessage, receiveControl, topicsFor } from '../mesh/wire';
import { ChannelName, ScenarioName, simulate } from '../steering/sensors';

export interface SensorSimulationOptions {
  brokerUrl: string;
  /** The broker login (the gateway's, on a bus with credentials). */
  username?: string;
  password?: string;
  meshId: string;
  nodes: readonly string[];
  scenario: ScenarioName;
  /** Seconds of calm before each event (the calibration window). */
  calmSeconds?: number;
  /** Seconds of the event before the trace starts over. */
  eventSeconds?: number;
  /** Simulated seconds per wall second (1 = real time). */
  timeScale?: number;
}

export interface RunningSensors {
  published(): number;
  stop(): Promise<void>;
}

export async function startSensorSimulation(o: SensorSimulationOptions): Promise<RunningSensors> {
  const client: MqttClient = await connectMqtt({ url: o.brokerUrl, username: o.username, password: o.password, clientId: `mesh-llm-${o.meshId}-sensors-${process.pid}`.slice(0, 64) });
  const t = topicsFor(o.meshId);
  const scale = o.timeScale ?? 1;
  let round = 0;
  let count = 0;
  let timer: NodeJS.Timeout | null = null;
  const traceOf = (scenario: ScenarioName, calmSeconds: number) => simulate({ scenario, nodes: o.nodes, calmSeconds, eventSeconds: o.eventSeconds ?? 30, seed: 1 + round });
  let trace = traceOf(o.scenario, o.calmSeconds ?? 60);
  let index = 0;
  let start = Date.now();
  /** node -> channel -> the value it is held at (a slider). */
  const held = new Map<string, Partial<Record<ChannelName, number>>>();
  const restart = (next: ReturnType<typeof simulate>) => {
    trace = next;
    index = 0;
    start = Date.now();
  };
  const tick = () => {
    const now = (Date.now() - start) * scale;
    while (index < trace.length && trace[index].at <= now) {
      const m = { ...trace[index], at: start + trace[index].at / scale };
      const hold = held.get(m.node);
      if (hold) m.readings = { ...m.readings, ...hold };
      client.publish(t.sensors(m.node), JSON.stringify(m), { qos: 0 });
      index++;
      count++;
    }
    if (index >= trace.length) {
      round++;
      restart(traceOf(o.scenario, o.calmSeconds ?? 60));
    }
    timer = setTimeout(tick, Math.max(10, 250 / scale));
  };
  const control = (m: SimControlMessage) => {
    if (m.scenario !== undefined) restart(traceOf(m.scenario, 0)); // the event now; the usual loop after it
    if (m.node !== undefined && m.channel !== undefined) {
      const hold = held.get(m.node) ?? {};
      if (m.value === null || m.value === undefined) delete hold[m.channel];
      else hold[m.channel] = m.value;
      held.set(m.node, hold);
    }
  };
  client.on('message', (topic, payload) => {
    if (topic !== t.simControl) return;
    const m = receiveControl('sim-control', payload, (reason) => client.publish(t.errors, JSON.stringify({ protocol: 1, source: 'sensor simulation', topic, reason: reason.slice(0, 2000) })));
    if (m) control(m);
  });
  await subscribe(client, [t.simControl], 0);
  tick();
  return {
    published: () => count,
    stop: async () => {
      if (timer) clearTimeout(timer);
      await endClient(client);
    },
  };
}
