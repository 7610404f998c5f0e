/**
 * The firmware's host unit tests (firmware/test/test_core, written for Unity: PlatformIO's
 * `pio test -e native` runs the same file), built by npm run build as dist/firmware/firmware-unit.
 */
import { spawnSync } from 'node:child_process';
import { firmwareBinary } from '../lib/firmware/build';

test('the core\'s Unity tests pass on the host: airtime, CRC-32, the frame counter across reboots, LED states, shard refusal, the replay window\'s counter gap and reboot, per-node keys, the radio node\'s slot replies, the modem\'s serial framing, the join record (bad CRC and version refused)', () => {
  const r = spawnSync(firmwareBinary('firmware-unit'), [], { encoding: 'utf8' });
  const passed = r.stdout.split('\n').filter((l) => l.endsWith(':PASS'));
  expect(r.stdout).toMatch(/\n11 Tests 0 Failures 0 Ignored\nOK\n/);
  expect(passed).toHaveLength(11);
  expect(r.status).toBe(0);
});
