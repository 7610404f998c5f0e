/** Link (c): the gateway's MAC on a radio of the simulated channel, in the same process. */
import { Radio } from '../lib/radio/channel';
import { GatewayRadioLink, SignalQuality } from '../lib/radio/mac';
import { Channel } from '../lib/radio/regions';

export class SimulatedChannelLink implements GatewayRadioLink {
  constructor(private readonly radio: Radio) {}

  transmit(frame: Buffer, channel: Channel, atMs: number): Promise<void> {
    try {
      this.radio.transmit(frame, channel, atMs);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  onReceive(handler: (frame: Buffer, channel: Channel, endMs: number, quality?: SignalQuality) => void): void {
    this.radio.onReceive = (r) => handler(r.bytes, r.channel, r.endMs, { rssi: r.rssi, snr: r.snr });
  }

  close(): Promise<void> {
    this.radio.onReceive = () => undefined;
    return Promise.resolve();
  }
}
