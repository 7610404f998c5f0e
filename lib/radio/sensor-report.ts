/**
 * A node's sensor report on the radio: its readings of the channels the project steers by,
 * compact, carried in frames of kind `sensors` (frame.ts FRAME_KINDS) to the gateway, whose
 * bridge publishes them as the sensor telemetry the MQTT mesh carries (schemas/sensors.json
 * on mesh-llm/{mesh}/sensors/{node}), stamped with the time it heard them. The firmware
 * writes the same bytes (firmware/core/sensor_report.h ml_sensor_report_encode).
 *
 *   byte  size  field
 *   0     1     version (1)
 *   1     1     channel mask: bit c set when channel c is present (REPORT_CHANNELS order)
 *   2     4k    per present channel, in order, its reading as float32 (little-endian);
 *               NaN: the sensor gave nothing this time (null in the JSON)
 */
import { BodyError } from '../link/body';
import { RADIO_HEADER_BYTES, MIC_BYTES } from './frame';

export const SENSOR_REPORT_VERSION = 1;
/** The channels in mask-bit order (the firmware's MlSensorChannel). */
export const REPORT_CHANNELS = ['soundDb', 'vibrationG', 'lightLux', 'temperatureC', 'humidityPct'] as const;
export type ReportChannel = (typeof REPORT_CHANNELS)[number];
export type SensorReadings = Partial<Record<ReportChannel, number | null>>;
/** The largest report: every channel present. */
export const SENSOR_REPORT_MAX_BYTES = 2 + 4 * REPORT_CHANNELS.length;
/** The frame of the largest report (a report always travels in one frame of the mesh's sizes). */
export const SENSOR_REPORT_FRAME_BYTES = RADIO_HEADER_BYTES + SENSOR_REPORT_MAX_BYTES + MIC_BYTES;

/** Encodes readings: present channels only; null or NaN is a sensor that gave nothing. Infinite readings are refused. */
export function encodeSensorReport(r: SensorReadings): Buffer {
  const present = REPORT_CHANNELS.filter((c) => r[c] !== undefined);
  const out = Buffer.alloc(2 + 4 * present.length);
  out[0] = SENSOR_REPORT_VERSION;
  present.forEach((c, i) => {
    const v = r[c] ?? NaN;
    if (v === Infinity || v === -Infinity) throw new RangeError(`sensor reading ${c} is ${v}`);
    out[1] |= 1 << REPORT_CHANNELS.indexOf(c);
    out.writeFloatLE(v, 2 + 4 * i);
  });
  return out;
}

/** Decodes a report, or throws BodyError naming what is wrong with it. */
export function decodeSensorReport(b: Buffer): SensorReadings {
  if (b.length < 2) throw new BodyError(`a sensor report of ${b.length} bytes; it has at least 2`);
  if (b[0] !== SENSOR_REPORT_VERSION) throw new BodyError(`sensor report version ${b[0]}, expected ${SENSOR_REPORT_VERSION}`);
  const mask = b[1];
  if (mask >> REPORT_CHANNELS.length) throw new BodyError(`sensor report channel mask 0x${mask.toString(16)} names channels that do not exist`);
  const present = REPORT_CHANNELS.filter((_, i) => mask & (1 << i));
  if (b.length !== 2 + 4 * present.length) throw new BodyError(`a sensor report of ${b.length} bytes; its mask (${present.length} channels) implies ${2 + 4 * present.length}`);
  const out: SensorReadings = {};
  present.forEach((c, i) => {
    const v = b.readFloatLE(2 + 4 * i);
    if (v === Infinity || v === -Infinity) throw new BodyError(`sensor reading ${c} is not finite (${v})`);
    out[c] = Number.isNaN(v) ? null : v;
  });
  return out;
}
