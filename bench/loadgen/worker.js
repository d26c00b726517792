// One subscriber process of the load generator. It opens its share of the socket.io
// clients, checks every delivery every client gets (seq order, duplicates, gaps), records
// the latency of each measured delivery, and reports to the coordinator (loadgen.js) over
// IPC. The coordinator runs several of these so that receiving is spread over processes.
//
// IPC, coordinator -> worker:
//   {type: 'config', ...}         first message: what to connect to and how many clients
//   {type: 'start'}               measured posting begins (starts the CPU/ELU window)
//   {type: 'finish', lastSeq}     posting is over; report once every client has lastSeq
// worker -> coordinator:
//   {type: 'connected'}           every client connected and sent its subscription
//   {type: 'ready'}               every client knows the seq its stream starts after
//   {type: 'result', ...}         counts, violations, latencies, resource use
//   {type: 'error', message}      fatal: the run cannot go on

const { performance } = require('node:perf_hooks');
const { io } = require('socket.io-client');
const { nowMs, parseMeasuredPath } = require('./common');

const MAX_EXAMPLES = 10; // violation examples kept per worker, enough to see what went wrong

let cfg;
const clients = [];
const violations = { stale: 0, duplicate: 0, out_of_order: 0, gap: 0, wrong_project: 0, resubscribe_failed: 0 };
const examples = [];
const disconnectReasons = {};
let latencies = new Float64Array(1 << 16);
let latencyCount = 0;
// Per measured change (by index): when its last delivery to any of our clients arrived.
let lastDeliveryMs;
let finalSeq = null; // set by 'finish'
let completeClients = 0; // clients that have every seq up to finalSeq, once it is known
let reported = false;
let startElu;
let startCpu;
let startWall;

function fatal(message) {
  process.send({ type: 'error', message }, () => process.exit(1));
}

function violation(kind, client, detail) {
  violations[kind] += 1;
  if (examples.length < MAX_EXAMPLES) examples.push({ kind, client: client.index, ...detail });
}

function recordLatency(ms) {
  if (latencyCount === latencies.length) {
    const grown = new Float64Array(latencies.length * 2);
    grown.set(latencies);
    latencies = grown;
  }
  latencies[latencyCount++] = ms;
}

class Client {
  constructor(index) {
    this.index = index;
    // Every seq after `base` must be delivered exactly once and in order. In vidsync mode
    // it is the since_seq we subscribe with; the seed protocol has no since_seq, so there
    // it is fixed by the first event received (the coordinator primes every client
    // before measuring).
    this.base = cfg.mode === 'vidsync' ? cfg.sinceSeq : null;
    this.last = this.base; // highest seq delivered so far
    this.unique = 0; // distinct seqs delivered after base
    this.measured = 0; // deliveries of measured (timed) changes
    this.seen = new Uint8Array(4096); // seen[seq - base - 1], grown on demand
    this.socket = null;
  }

  // Resolves once connected and subscribed (acked in vidsync mode); rejects on a fatal error.
  open() {
    return new Promise((resolve, reject) => {
      const options = { transports: ['websocket'], forceNew: true };
      if (cfg.mode === 'vidsync') options.auth = { token: cfg.token };
      const socket = io(cfg.url, options);
      this.socket = socket;
      let opened = false;

      socket.on('connect', () => {
        this.subscribe().then(
          () => {
            if (!opened) {
              opened = true;
              if (cfg.mode === 'vidsync') clientReady(); // the ack fixed the stream's start
              resolve();
            }
          },
          (err) => {
            if (!opened) reject(err);
            else violation('resubscribe_failed', this, { error: String(err.message || err) });
          },
        );
      });
      socket.on('connect_error', (err) => {
        // An error from the server's auth middleware leaves the socket inactive (no retry);
        // transport errors are retried by the client itself.
        if (!socket.active) reject(new Error(`connect_error: ${err.message} ${JSON.stringify(err.data || null)}`));
      });
      socket.on('disconnect', (reason) => {
        if (reason === 'io client disconnect') return;
        disconnectReasons[reason] = (disconnectReasons[reason] || 0) + 1;
        // The protocol lets the server drop a subscriber that falls behind; a real client
        // reconnects and resumes with since_seq, and so do we (the 'connect' handler
        // resubscribes). The client retries transport losses on its own, but not a
        // server-initiated disconnect.
        if (reason === 'io server disconnect') socket.connect();
      });
      socket.on('project:event', (event) => this.onEvent(event));
    });
  }

  subscribe() {
    if (cfg.mode === 'seed') {
      this.socket.emit('subscribe:project', cfg.projectId);
      return Promise.resolve();
    }
    const request = { projectId: cfg.projectId, since_seq: this.last };
    return this.socket
      .timeout(cfg.ackTimeoutMs)
      .emitWithAck('subscribe:project', request)
      .then((ack) => {
        if (!ack || ack.ok !== true) throw new Error(`subscribe refused: ${JSON.stringify(ack)}`);
      });
  }

  onEvent(event) {
    const receivedMs = nowMs();
    if (event.project_id !== cfg.projectId) {
      violation('wrong_project', this, { project_id: event.project_id, seq: event.seq });
      return;
    }
    const seq = event.seq;
    if (this.base === null) {
      this.base = seq - 1;
      this.last = this.base;
      clientReady();
    }
    if (seq <= this.base) {
      violation('stale', this, { seq, base: this.base });
      return;
    }
    const slot = seq - this.base - 1;
    if (slot >= this.seen.length) {
      const grown = new Uint8Array(Math.max(this.seen.length * 2, slot + 1));
      grown.set(this.seen);
      this.seen = grown;
    }
    if (this.seen[slot]) {
      violation('duplicate', this, { seq });
      return;
    }
    this.seen[slot] = 1;
    this.unique += 1;
    if (seq < this.last) violation('out_of_order', this, { seq, after: this.last });
    else if (seq > this.last + 1) violation('gap', this, { seq, after: this.last });
    if (seq > this.last) this.last = seq;

    const measured = parseMeasuredPath(event.change && event.change.path);
    if (measured !== null) {
      const [index, sentMs] = measured;
      this.measured += 1;
      recordLatency(receivedMs - sentMs);
      if (receivedMs > lastDeliveryMs[index]) lastDeliveryMs[index] = receivedMs;
    }
    // unique grows by one per call, so this counts each client once.
    if (finalSeq !== null && this.unique === finalSeq - this.base) clientComplete();
  }

  complete() {
    return this.base !== null && this.unique >= finalSeq - this.base;
  }
}

function clientComplete() {
  completeClients += 1;
  if (completeClients === clients.length) report();
}

let readyClients = 0;
function clientReady() {
  readyClients += 1;
  if (readyClients === clients.length) process.send({ type: 'ready' });
}

async function openAll() {
  for (let i = 0; i < cfg.count; i++) clients.push(new Client(cfg.firstIndex + i));
  // Bounded concurrency: a burst of 1000 simultaneous handshakes would overflow the
  // server's listen backlog and measure SYN retries instead of the server.
  let next = 0;
  const lane = async () => {
    while (next < clients.length) await clients[next++].open();
  };
  await Promise.all(Array.from({ length: Math.min(cfg.connectConcurrency, clients.length) }, lane));
}

function report() {
  if (reported) return;
  reported = true;
  const elu = performance.eventLoopUtilization(startElu);
  const cpu = process.cpuUsage(startCpu);
  const wallMs = performance.now() - startWall;
  let missing = 0;
  let incomplete = 0;
  let minMeasured = Infinity;
  let maxMeasured = 0;
  for (const c of clients) {
    const expected = c.base === null ? finalSeq : finalSeq - c.base;
    if (c.unique < expected) {
      missing += expected - c.unique;
      incomplete += 1;
    }
    minMeasured = Math.min(minMeasured, c.measured);
    maxMeasured = Math.max(maxMeasured, c.measured);
  }
  const result = {
    type: 'result',
    clients: clients.length,
    deliveries: latencyCount,
    minPerClient: minMeasured,
    maxPerClient: maxMeasured,
    missing,
    incompleteClients: incomplete,
    violations,
    examples,
    disconnectReasons,
    latencies: latencies.subarray(0, latencyCount),
    lastDeliveryMs,
    // How busy this process was while measuring. A busy loop alone does not mean it fell
    // behind: the coordinator's last_delivery_after_answer_ms tells that.
    eventLoopUtilization: elu.utilization,
    cpuCores: (cpu.user + cpu.system) / 1000 / wallMs,
  };
  for (const c of clients) c.socket.disconnect();
  // The latency array makes this a large message: leave only once it is fully written.
  process.send(result, () => process.exit(0));
}

process.on('message', async (msg) => {
  if (msg.type === 'config') {
    cfg = msg;
    lastDeliveryMs = new Float64Array(cfg.events);
    try {
      await openAll();
    } catch (err) {
      fatal(String(err.message || err));
      return;
    }
    process.send({ type: 'connected' });
  } else if (msg.type === 'start') {
    startElu = performance.eventLoopUtilization();
    startCpu = process.cpuUsage();
    startWall = performance.now();
  } else if (msg.type === 'finish') {
    finalSeq = msg.lastSeq;
    for (const c of clients) if (c.complete()) clientComplete();
    setTimeout(report, cfg.drainTimeoutMs);
  }
});

process.on('disconnect', () => process.exit(0)); // the coordinator went away
