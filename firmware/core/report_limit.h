// A bound on what a node reports on the errors topic, as lib/mesh/report-limit.ts does for the
// node.js nodes: a token bucket (`burst` reports at once, `perSecond` after that). A flood of
// invalid messages must not turn into a flood of reports (every node answered each invalid
// broadcast). What the bucket holds back is counted and said in the next report that goes out.
#pragma once
#include <stdint.h>

#include <string>

class MlReportLimiter {
 public:
  explicit MlReportLimiter(double perSecond = 10, double burst = 20) : perSecond_(perSecond), burst_(burst), tokens_(burst) {}

  // Whether a report may go out at nowMs; if so, *heldBefore is how many were held back
  // before it (to be said in it).
  bool take(uint64_t nowMs, uint64_t* heldBefore) {
    if (started_) {
      const double dt = nowMs > last_ ? (double)(nowMs - last_) / 1000.0 : 0.0;
      tokens_ = tokens_ + dt * perSecond_ > burst_ ? burst_ : tokens_ + dt * perSecond_;
    }
    started_ = true;
    last_ = nowMs;
    if (tokens_ < 1) {
      held_++;
      suppressed_++;
      return false;
    }
    tokens_ -= 1;
    *heldBefore = held_;
    held_ = 0;
    return true;
  }

  // Reports held back in all.
  uint64_t suppressed() const { return suppressed_; }

 private:
  double perSecond_, burst_, tokens_;
  uint64_t last_ = 0, held_ = 0, suppressed_ = 0;
  bool started_ = false;
};

// The reason with the count of reports held back before it, if any (withHeldCount in TS).
inline std::string ml_with_held_count(const std::string& reason, uint64_t heldBefore) {
  if (heldBefore == 0) return reason;
  return reason + " (" + std::to_string(heldBefore) + " more dropped message" + (heldBefore == 1 ? "" : "s") + " not reported: rate limit)";
}
