// The gateway's radio modem, host build: the radio-modem firmware's serial side
// (core/modem.cpp, the bridge's documented framing) on a serial port (a socat pseudo-terminal
// in the tests), its radio a simulated SX1262 on the simulated channel as the gateway's radio
// (host/radio/sim_radio.cpp, address 0). The ESP32-S3 build (esp32/modem_main.cpp) has the
// same serial side on USB CDC with RadioLib as its radio.
//
//   mesh-llm-modem --serial PATH --socket PATH [--log debug|info|warn]
//
// A TX is checked against the modem's modulation (bad parameter), handed to the channel at
// the instant its tmst names, and answered with TX_ACK (sent, too late, busy, duty cycle) once
// the channel has said; every frame the channel delivers goes to the host as an RX, and the
// channel's clock waits until the host's RX_ACK (the simulated modem's pacing).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "json.h"
#include "link.h"
#include "modem.h"
#include "sim_radio.h"

namespace {

volatile sig_atomic_t stopSignal = 0;
void onSignal(int sig) { stopSignal = sig; }
int logThreshold = 1;

void logLine(int level, const char* name, const std::string& m) {
  if (level >= logThreshold) fprintf(stderr, "[modem] %s: %s\n", name, m.c_str());
}

int usage(const std::string& why) {
  fprintf(stderr, "mesh-llm-modem: %s\nusage: mesh-llm-modem --serial PATH --socket PATH [--log debug|info|warn]\n", why.c_str());
  return 2;
}

bool writeAll(int fd, const std::vector<uint8_t>& b) {
  for (size_t at = 0; at < b.size();) {
    const ssize_t n = write(fd, b.data() + at, b.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    at += (size_t)n;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string serialPath, socketPath;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--serial") serialPath = argv[i + 1];
    else if (a == "--socket") socketPath = argv[i + 1];
    else if (a == "--log") logThreshold = !strcmp(argv[i + 1], "debug") ? 0 : !strcmp(argv[i + 1], "warn") ? 2 : 1;
    else return usage("unknown option " + a);
  }
  if (serialPath.empty() || socketPath.empty()) return usage("--serial and --socket are required");
#ifdef __linux__
  prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
  signal(SIGTERM, onSignal);
  signal(SIGINT, onSignal);
  signal(SIGPIPE, SIG_IGN);

  const int port = open(serialPath.c_str(), O_RDWR | O_NOCTTY);
  if (port < 0) {
    logLine(3, "error", "cannot open " + serialPath + ": " + strerror(errno));
    return 1;
  }
  termios tio{};
  if (tcgetattr(port, &tio) == 0) {
    cfmakeraw(&tio);
    cfsetspeed(&tio, B115200);
    tcsetattr(port, TCSANOW, &tio);
  }

  MlSimRadio radio;
  std::string err;
  if (!radio.connect(socketPath, &err) || !radio.hello(ML_SIM_GATEWAY_ADDRESS)) {
    logLine(3, "error", err);
    return 1;
  }
  uint8_t type = 0;
  std::vector<uint8_t> body;
  JsonValue w;
  if (!radio.next(&type, &body) || type != ML_SIM_WELCOME || !json_parse((const char*)body.data(), body.size(), &w, &err) || !w.get("sf")) {
    logLine(3, "error", "no WELCOME for the gateway's radio from the simulated channel");
    return 1;
  }
  const int sf = (int)w.get("sf")->number, bw = (int)w.get("bandwidthKHz")->number, cr = (int)w.get("codingRate")->number;
  radio.setNow(w.get("nowMs")->number);
  radio.done();
  logLine(1, "info", ml_format("on the channel as the gateway's radio: SF%d/%d kHz, 4/%d; serial %s", sf, bw, cr, serialPath.c_str()));

  MlModemReader reader;
  std::deque<std::pair<uint8_t, std::vector<uint8_t>>> stash;  // channel messages that came while a TX waited
  std::vector<uint16_t> unacked;                                // RX tokens whose DONE waits for the host's RX_ACK
  uint16_t nextToken = 1;
  uint64_t tx = 0, rx = 0, refused = 0;
  auto onSerial = [&](const MlModemMessage& m) {
    if (m.type == ML_MODEM_RX_ACK) {
      for (size_t i = 0; i < unacked.size(); i++)
        if (unacked[i] == m.token) {
          unacked.erase(unacked.begin() + (long)i);
          radio.done();
          break;
        }
      return;
    }
    if (m.type != ML_MODEM_TX) return;
    MlModemMessage ack;
    ack.type = ML_MODEM_TX_ACK;
    ack.token = m.token;
    if (m.sf != sf || m.bandwidthKHz != bw || m.codingRate != cr || m.payload.empty() || m.payload.size() > 255) {
      ack.status = ML_TX_BAD_PARAMETER;
    } else {
      const double at = ml_from_timestamp_us(m.tmst, radio.nowMs());
      std::string why;
      radio.transmit(m.payload.data(), m.payload.size(), m.frequencyHz, at, (MlTxPurpose)0, &why);
      // the channel answers in order; what else it sends meanwhile waits in the stash
      uint8_t t = 0;
      std::vector<uint8_t> b;
      while (radio.next(&t, &b) && t != ML_SIM_TX_RESULT) stash.emplace_back(t, b);
      const uint8_t code = b.empty() ? 2 : b[0];
      ack.status = code == 0 ? ML_TX_OK : code == 1 ? ML_TX_DUTY_CYCLE : code == 3 ? ML_TX_TOO_LATE : ML_TX_BUSY;
      if (code) logLine(2, "warn", "refused a frame: " + std::string(b.begin() + (b.empty() ? 0 : 1), b.end()));
    }
    if (ack.status == ML_TX_OK) tx++;
    else refused++;
    writeAll(port, ml_modem_encode(ack));
  };
  auto onChannel = [&](uint8_t t, const std::vector<uint8_t>& b) {
    if (t != ML_SIM_RX || b.size() < 15) return;
    const double endMs = ml_read_f64(&b[4]);
    radio.setNow(endMs);
    MlModemMessage m;
    m.type = ML_MODEM_RX;
    m.token = nextToken;
    nextToken = (uint16_t)(nextToken % 0xffff + 1);
    m.tmst = ml_timestamp_us(endMs);
    m.frequencyHz = ml_read_le(&b[0], 4);
    m.sf = (uint8_t)sf;
    m.bandwidthKHz = (uint16_t)bw;
    m.codingRate = (uint8_t)cr;
    m.rssi = (int16_t)ml_read_le(&b[12], 2);
    m.snrQuarterDb = (int8_t)b[14];
    m.payload.assign(b.begin() + 15, b.end());
    unacked.push_back(m.token);
    rx++;
    writeAll(port, ml_modem_encode(m));
  };

  while (!stopSignal) {
    while (!stash.empty()) {
      auto m = stash.front();
      stash.pop_front();
      onChannel(m.first, m.second);
    }
    if (radio.buffered()) {
      if (!radio.next(&type, &body)) break;
      onChannel(type, body);
      continue;
    }
    pollfd p[2] = {{port, POLLIN, 0}, {radio.fd(), POLLIN, 0}};
    if (poll(p, 2, -1) < 0) continue;
    if (p[0].revents & POLLIN) {
      uint8_t buf[1024];
      const ssize_t n = read(port, buf, sizeof buf);
      if (n > 0) reader.push(buf, (size_t)n, onSerial);
    }
    if (p[1].revents & (POLLIN | POLLHUP)) {
      if (!radio.next(&type, &body)) break;
      onChannel(type, body);
    }
  }
  logLine(1, "info", ml_format("stopping: %llu frames sent, %llu received, %llu refused, %llu malformed serial frames", (unsigned long long)tx, (unsigned long long)rx, (unsigned long long)refused, (unsigned long long)reader.malformed));
  return 0;
}
