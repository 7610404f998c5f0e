/** `mesh-llm generate --radio sim`: the real command line, its JSON, and its usage errors. */
import { goldenIds } from './support/fixtures';
import { runCli } from './support/cli';

test('generate --radio sim --json: the golden tokens, simulated seconds per token, the bound and the airtime breakdown', async () => {
  const r = await runCli(['generate', '--radio', 'sim', '--nodes', '4', '--region', 'US915', '--channels', '8', '--loss', '0.1', '--prompt', 'Once upon a time', '--steps', '64', '--temperature', '0', '--json']);
  expect(r.stderr).not.toMatch(/error/);
  expect(r.code).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out.tokens).toEqual(goldenIds('once-greedy-64'));
  expect(out.text.startsWith('Once upon a time')).toBe(true);
  expect(out.tokensPerSecond).toBeGreaterThan(0);
  expect(out.simulatedSecondsPerToken).toBeGreaterThan(out.boundSecondsPerToken);
  expect(Object.keys(out.airtimeSeconds).sort()).toEqual(['broadcast', 'nack', 'resent', 'result']);
  expect(out.airtimeSeconds.broadcast).toBeGreaterThan(0);
  expect(out.airtimeSeconds.resent).toBeGreaterThan(0);
  expect(out.radio).toMatchObject({ region: 'US915', sf: 7, bandwidthKHz: 125, channels: 8, nodes: 4, loss: 0.1, positions: 64 });
});

test('generate --radio: usage errors exit 2 with one line', async () => {
  for (const args of [['--radio', 'lora'], ['--radio', 'sim', '--channels', '3'], ['--radio', 'sim', '--mesh', '2'], ['--radio', 'sim', '--region', 'AS923'], ['--radio', 'sim', '--loss', '1']]) {
    const r = await runCli(['generate', ...args, '--steps', '2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mesh-llm: error: /);
  }
});

test('generate --radio sim --native --channel-plan eu868-fsk: one line saying the firmware radio node speaks LoRa only, exit 1', async () => {
  const r = await runCli(['generate', '--radio', 'sim', '--native', '--nodes', '2', '--channel-plan', 'eu868-fsk', '--steps', '2']);
  expect(r.code).toBe(1);
  expect(r.stderr.trim()).toBe("mesh-llm: error: channel plan eu868-fsk sends FSK frames (869.525 MHz 125 kHz FSK 50 kbps); the firmware's radio node (--native) speaks LoRa only: use eu868-wide, or TypeScript radio nodes on the simulated channel");
});
