/**
 * Home Assistant MQTT discovery: the retained config messages that make each head node a
 * device in Home Assistant, with one sensor entity per sensor channel (its state read straight
 * from the mesh's sensors topic by a value template) and one binary_sensor for its alerts.
 *
 * Discovery topic: <prefix>/<component>/<object_id>/config (prefix "homeassistant" by default),
 * payload a JSON object; published retained so that Home Assistant finds it when it (re)starts.
 */
import { topicsFor } from '../mesh/wire';
import { CHANNELS } from '../steering/calibration';
import { ChannelName } from '../steering/sensors';

export const DEFAULT_DISCOVERY_PREFIX = 'homeassistant';

/** A message as Node-RED's MQTT out node publishes it. */
export interface DiscoveryMessage {
  topic: string;
  payload: Record<string, unknown>;
  retain: true;
  qos: 1;
}

/** Home Assistant's device class and unit for each channel (its units for these classes: dB, lx, °C, %). */
const CHANNEL_ENTITY: Record<ChannelName, { name: string; deviceClass?: string; unit: string }> = {
  soundDb: { name: 'Sound', deviceClass: 'sound_pressure', unit: 'dB' },
  vibrationG: { name: 'Vibration', unit: CHANNELS.vibrationG.unit },
  lightLux: { name: 'Light', deviceClass: 'illuminance', unit: 'lx' },
  temperatureC: { name: 'Temperature', deviceClass: 'temperature', unit: '°C' },
  humidityPct: { name: 'Humidity', deviceClass: 'humidity', unit: '%' },
};

/** Object ids and unique ids allow letters, digits, '_' and '-': a node id's '.' becomes '_'. */
const objectId = (...parts: string[]): string => parts.join('_').replace(/[^A-Za-z0-9_-]/g, '_');

/** What every entity of one node shares: its device and its availability (the node's retained status). */
function nodeEntity(meshId: string, node: string): Record<string, unknown> {
  return {
    device: { identifiers: [objectId('mesh_llm', meshId, node)], name: `mesh-llm ${node}`, manufacturer: 'mesh-llm', model: 'head node' },
    availability_topic: topicsFor(meshId).status(node),
    availability_template: "{{ 'offline' if value_json.state in ['offline', 'failed'] else 'online' }}",
    payload_available: 'online',
    payload_not_available: 'offline',
  };
}

/** The sensor entity of one channel of one node: its state is the channel's reading in the node's sensor messages. */
export function sensorDiscovery(meshId: string, node: string, channel: ChannelName, prefix = DEFAULT_DISCOVERY_PREFIX): DiscoveryMessage {
  const e = CHANNEL_ENTITY[channel];
  const id = objectId('mesh_llm', meshId, node, channel);
  return {
    topic: `${prefix}/sensor/${id}/config`,
    payload: {
      name: e.name,
      unique_id: id,
      state_topic: topicsFor(meshId).sensors(node),
      value_template: `{{ value_json.readings.${channel} | default(none) }}`,
      unit_of_measurement: e.unit,
      ...(e.deviceClass ? { device_class: e.deviceClass } : {}),
      state_class: 'measurement',
      ...nodeEntity(meshId, node),
    },
    retain: true,
    qos: 1,
  };
}

/** The alert binary_sensor of one node: on while any of its alerts is active (the alert-state topic). */
export function alertDiscovery(meshId: string, node: string, prefix = DEFAULT_DISCOVERY_PREFIX): DiscoveryMessage {
  const id = objectId('mesh_llm', meshId, node, 'alert');
  return {
    topic: `${prefix}/binary_sensor/${id}/config`,
    payload: {
      name: 'Alert',
      unique_id: id,
      state_topic: topicsFor(meshId).alertState(node),
      payload_on: 'ON',
      payload_off: 'OFF',
      device_class: 'problem',
      ...nodeEntity(meshId, node),
    },
    retain: true,
    qos: 1,
  };
}

/** Every discovery message of one node: a sensor per channel it carries, and its alert binary_sensor. */
export function nodeDiscovery(meshId: string, node: string, channels: readonly ChannelName[], prefix = DEFAULT_DISCOVERY_PREFIX): DiscoveryMessage[] {
  return [...channels.map((c) => sensorDiscovery(meshId, node, c, prefix)), alertDiscovery(meshId, node, prefix)];
}
