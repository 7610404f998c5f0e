// The clock HAL: the time the radio schedule runs on (ms), and a wakeup. On the ESP32 it is
// esp_timer; on the host against the simulated channel it is the simulator's clock (virtual
// or paced), so a slot booked by the core starts exactly when the gateway's MAC expects it.
#pragma once

class MlClockHal {
 public:
  virtual ~MlClockHal() = default;
  virtual double nowMs() = 0;
  // Asks to be woken (the platform calls the core's onTimer) at or after atMs. Requests add
  // up: each one is answered once.
  virtual void wakeAt(double atMs) = 0;
};
