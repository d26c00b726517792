// Pieces shared by the coordinator (loadgen.js) and the subscriber processes (worker.js).

const { performance } = require('node:perf_hooks');

// Wall-clock milliseconds with sub-millisecond resolution. Each process anchors its
// monotonic clock to the same system wall clock at start-up, so a timestamp taken in the
// poster process can be subtracted from one taken in a subscriber process on this machine.
function nowMs() {
  return performance.timeOrigin + performance.now();
}

// Measured changes carry their send time in the path ("fanout/<index>/<send ms>"), so a
// receiver needs nothing but the event to compute latency. The path is used rather than
// `mtime` because the server is free to validate or normalise mtime, but must echo the
// path. Priming changes (see loadgen.js) use another prefix and are not timed.
const MEASURED_PREFIX = 'fanout/';
const PROBE_PREFIX = 'probe/';

function measuredPath(index, sendMs) {
  return `${MEASURED_PREFIX}${index}/${sendMs.toFixed(3)}`;
}

// [index, send ms] of a measured change, or null for any other path.
function parseMeasuredPath(path) {
  if (typeof path !== 'string' || !path.startsWith(MEASURED_PREFIX)) return null;
  const slash = path.lastIndexOf('/');
  return [Number(path.slice(MEASURED_PREFIX.length, slash)), Number(path.slice(slash + 1))];
}

module.exports = { nowMs, PROBE_PREFIX, measuredPath, parseMeasuredPath };
