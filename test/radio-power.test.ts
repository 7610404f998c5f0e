/** The node energy budget (lib/radio/power.ts) against a case worked by hand. */
import { CURRENTS_MA, nodePower } from '../lib/radio/power';

test('a hand-checked node: 1 s TX at +14 dBm, 4 s RX, 0.5 s compute per 60 s token, 10 tokens an hour', () => {
  const p = nodePower({ txSeconds: 1, rxSeconds: 4, computeSeconds: 0.5 }, 60, { txDbm: 14, tokensPerHour: 10, batteryMah: 3000, sunHoursPerDay: 4, autonomyDays: 3 });
  // charge per token: TX 45 mA x 1 s = 45 mC; RX 4.2 mA x 4 s = 16.8 mC; MCU 66 mA x (1 + 4 + 0.5) s = 363 mC
  expect(p.chargePerToken.tx).toBeCloseTo(45, 9);
  expect(p.chargePerToken.rx).toBeCloseTo(16.8, 9);
  expect(p.chargePerToken.mcu).toBeCloseTo(363, 9);
  // 424.8 mC x 3.3 V = 1.40184 J
  expect(p.energyPerTokenJoules).toBeCloseTo(1.40184, 9);
  // an hour: 10 x 424.8 = 4248 mC active; asleep 3600 - 10 x 5.5 = 3545 s at 0.2406 mA = 852.927 mC; mean 5100.927 / 3600 mA
  expect(p.averageMa).toBeCloseTo(5100.927 / 3600, 9);
  expect(p.batteryLifeHours).toBeCloseTo(3000 / (5100.927 / 3600), 6);
  // a day: 1.416924 mA x 3.3 V x 24 h = 0.1122204 Wh; panel 0.1122204 / (4 x 0.7) W; battery 3 days / 0.8 / 3.7 V
  const wh = (5100.927 / 3600 / 1000) * 3.3 * 24;
  expect(p.dailyWattHours).toBeCloseTo(wh, 9);
  expect(p.solarPanelWatts).toBeCloseTo(wh / 2.8, 9);
  expect(p.solarBatteryMah).toBeCloseTo(((wh * 3) / 0.8 / 3.7) * 1000, 6);
  expect(CURRENTS_MA.mcuSleep + CURRENTS_MA.radioSleep).toBeCloseTo(0.2406, 9);
});

test('back to back by default; a rate the mesh cannot make and a power the SX1262 table lacks are refused', () => {
  const p = nodePower({ txSeconds: 1, rxSeconds: 4, computeSeconds: 0.5 }, 60);
  expect(p.tokensPerHour).toBe(60);
  expect(p.txDbm).toBe(14);
  expect(() => nodePower({ txSeconds: 1, rxSeconds: 4, computeSeconds: 0.5 }, 60, { tokensPerHour: 61 })).toThrow('--tokens-per-hour 61: the mesh makes at most 60.00 tokens an hour');
  expect(() => nodePower({ txSeconds: 1, rxSeconds: 4, computeSeconds: 0.5 }, 60, { txDbm: 30 })).toThrow(/--tx-power 30 dBm: expected one of 14, 17, 20, 22/);
});
