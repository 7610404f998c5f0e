/**
 * A head node's energy budget: an ESP32-S3 with an SX1262, from the currents of their
 * datasheets (typical, 3.3 V; docs/POWER.md names each figure and where it comes from), and
 * the times the planner's schedule gives per token: the node transmits its replies at the
 * configured power, receives every broadcast frame, keeps its MCU active while its radio is and
 * while it computes its heads, and sleeps otherwise.
 *
 * Energy per token, battery life at a token rate, and the solar panel and battery a node needs
 * at a daily insolation, as plain arithmetic (test/radio-power.test.ts checks a case by hand).
 */
import { MeshLlmError } from '../llm/errors';

/** SX1262 transmit current at the PA's output power, mA (SX1261/2 datasheet rev 2.1, high-power PA, DC-DC). */
export const SX1262_TX_MA: Readonly<Record<number, number>> = { 14: 45, 17: 90, 20: 102, 22: 118 };
export const CURRENTS_MA = {
  /** SX1262 receive, LoRa 125 kHz, DC-DC (datasheet: 4.2 mA). */
  radioRx: 4.2,
  /** SX1262 sleep, warm start (configuration kept): 0.6 uA. */
  radioSleep: 0.0006,
  /** ESP32-S3 active, both cores at 240 MHz, no Wi-Fi or Bluetooth (the datasheet's modem-sleep row, ~66 mA). */
  mcuActive: 66,
  /** ESP32-S3 light-sleep (RAM and PSRAM kept, 240 uA): between layers a node must keep its weights and KV cache. */
  mcuSleep: 0.24,
} as const;
export const SUPPLY_VOLTS = 3.3;

export interface PowerOptions {
  /** Transmit power, dBm: one of SX1262_TX_MA's (default 14). */
  txDbm?: number;
  /** Tokens an hour the mesh generates (default: back to back, 3600 / seconds per token). */
  tokensPerHour?: number;
  /** Battery capacity, mAh (default 3000, an 18650 cell). */
  batteryMah?: number;
  /** Daily insolation, peak-sun hours (kWh/m2 a day; default 4). */
  sunHoursPerDay?: number;
  /** Days the battery must carry the node without sun (default 3). */
  autonomyDays?: number;
}

/** Per token, what a node's radio and MCU do, s. */
export interface NodeActivity {
  txSeconds: number;
  rxSeconds: number;
  computeSeconds: number;
}

export interface NodePower {
  txDbm: number;
  /** Charge per token by part, mC (mA x s), and the energy, J. */
  chargePerToken: { tx: number; rx: number; mcu: number };
  energyPerTokenJoules: number;
  /** Seconds a token takes on the mesh (the schedule), and the token rate assumed. */
  secondsPerToken: number;
  tokensPerHour: number;
  /** Mean current at that rate, sleeping when idle, mA; battery life, hours. */
  averageMa: number;
  batteryMah: number;
  batteryLifeHours: number;
  /** Energy a day, Wh; the panel that replaces it at the insolation (70% charge efficiency), W; the battery for the autonomy days (80% depth of discharge), mAh at 3.7 V. */
  dailyWattHours: number;
  solarPanelWatts: number;
  solarBatteryMah: number;
}

/** Charging losses (panel to cell) and the usable share of a lithium cell. */
export const SOLAR = { chargeEfficiency: 0.7, depthOfDischarge: 0.8, cellVolts: 3.7 } as const;

export function nodePower(a: NodeActivity, secondsPerToken: number, o: PowerOptions = {}): NodePower {
  const txDbm = o.txDbm ?? 14;
  const txMa = SX1262_TX_MA[txDbm];
  if (txMa === undefined) throw new MeshLlmError(`--tx-power ${txDbm} dBm: expected one of ${Object.keys(SX1262_TX_MA).join(', ')} (the SX1262 datasheet's rows)`);
  const maxRate = 3600 / secondsPerToken;
  const tokensPerHour = o.tokensPerHour ?? maxRate;
  if (!(tokensPerHour > 0) || tokensPerHour > maxRate * (1 + 1e-9)) throw new MeshLlmError(`--tokens-per-hour ${tokensPerHour}: the mesh makes at most ${maxRate.toFixed(2)} tokens an hour`);
  const mcuSeconds = a.txSeconds + a.rxSeconds + a.computeSeconds;
  // mC per token: the radio's TX and RX, the MCU while the radio works or it computes
  const chargePerToken = { tx: txMa * a.txSeconds, rx: CURRENTS_MA.radioRx * a.rxSeconds, mcu: CURRENTS_MA.mcuActive * mcuSeconds };
  const activeCharge = chargePerToken.tx + chargePerToken.rx + chargePerToken.mcu;
  const energyPerTokenJoules = (activeCharge / 1000) * SUPPLY_VOLTS;
  // an hour: the tokens' active charge, then both chips asleep for the rest of it
  const sleepSeconds = 3600 - tokensPerHour * mcuSeconds;
  const sleepMa = CURRENTS_MA.mcuSleep + CURRENTS_MA.radioSleep;
  const averageMa = (tokensPerHour * activeCharge + sleepSeconds * sleepMa) / 3600;
  const batteryMah = o.batteryMah ?? 3000;
  const dailyWattHours = (averageMa / 1000) * SUPPLY_VOLTS * 24;
  const sun = o.sunHoursPerDay ?? 4;
  const autonomy = o.autonomyDays ?? 3;
  return {
    txDbm,
    chargePerToken,
    energyPerTokenJoules,
    secondsPerToken,
    tokensPerHour,
    averageMa,
    batteryMah,
    batteryLifeHours: batteryMah / averageMa,
    dailyWattHours,
    solarPanelWatts: dailyWattHours / (sun * SOLAR.chargeEfficiency),
    solarBatteryMah: ((dailyWattHours * autonomy) / SOLAR.depthOfDischarge / SOLAR.cellVolts) * 1000,
  };
}
