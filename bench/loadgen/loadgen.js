// Fan-out load generator: N socket.io subscribers to one project, one poster.
//
// The coordinator (this process) forks --procs subscriber processes (worker.js) that
// share the N clients, waits until every client is subscribed, then posts one change
// every --interval-ms to POST /api/projects/:id/files/update. Every change carries its
// send time (see common.js), so every delivery yields one latency sample; every client
// also checks its stream for duplicates, reordering and gaps.
//
// Two protocols:
//   --mode vidsync  our server: token auth, subscribe {projectId, since_seq} with an ack
//   --mode seed     the original Node design (bench/node-ref): subscribe with a bare id,
//                   no ack, no auth
//
// stdout gets one JSON object per line, for the driver (bench/fanout.py):
//   {"type":"subscribed", ...}  all clients subscribed; posting starts after --settle-ms
//   {"type":"posting"}          the measured posts begin
//   {"type":"result", ...}      the measurements
// Progress goes to stderr.

const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { fork } = require('node:child_process');
const { parseArgs } = require('node:util');
const { performance } = require('node:perf_hooks');
const { nowMs, PROBE_PREFIX, measuredPath } = require('./common');

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:5000' },
    mode: { type: 'string', default: 'vidsync' },
    token: { type: 'string', default: '' },
    project: { type: 'string' },
    subscribers: { type: 'string', default: '1000' },
    procs: { type: 'string', default: '2' },
    events: { type: 'string', default: '2000' },
    'interval-ms': { type: 'string', default: '2' },
    // open: post i is due at t0 + i * interval, answered or not (a watcher that does not
    // wait). sequential: one post at a time, each issued interval after the previous answer.
    'post-mode': { type: 'string', default: 'open' },
    'connect-concurrency': { type: 'string', default: '20' },
    'post-concurrency': { type: 'string', default: '16' },
    'settle-ms': { type: 'string', default: '1000' },
    'drain-timeout-s': { type: 'string', default: '120' },
    'subscriber-nice': { type: 'string', default: '10' },
  },
});

const cfg = {
  url: opts.url,
  mode: opts.mode,
  token: opts.token,
  projectId: opts.project,
  subscribers: Number(opts.subscribers),
  procs: Number(opts.procs),
  events: Number(opts.events),
  intervalMs: Number(opts['interval-ms']),
  postMode: opts['post-mode'],
  connectConcurrency: Number(opts['connect-concurrency']),
  postConcurrency: Number(opts['post-concurrency']),
  settleMs: Number(opts['settle-ms']),
  drainTimeoutMs: Number(opts['drain-timeout-s']) * 1000,
  subscriberNice: Number(opts['subscriber-nice']),
};
if (!['vidsync', 'seed'].includes(cfg.mode)) throw new Error(`--mode must be vidsync or seed, not ${cfg.mode}`);
if (!['open', 'sequential'].includes(cfg.postMode)) throw new Error(`--post-mode must be open or sequential, not ${cfg.postMode}`);
if (!cfg.projectId) throw new Error('--project is required');

const log = (...args) => console.error('[loadgen]', ...args);
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- HTTP ---------------------------------------------------------------------------

const target = new URL(cfg.url);
// Keep-alive with a bounded pool: posts that find every connection busy queue here, and
// that wait is charged to their latency (their timestamp is taken when they are issued),
// so a server that answers slower than the post rate shows it instead of hiding it.
const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.postConcurrency });

// body: undefined (none), a Buffer (sent as bytes) or anything else (sent as JSON).
function request(method, urlPath, body) {
  return new Promise((resolve, reject) => {
    const headers = { Authorization: `Bearer ${cfg.token}` };
    let payload = null;
    if (Buffer.isBuffer(body)) {
      payload = body;
      headers['Content-Type'] = 'application/octet-stream';
    } else if (body !== undefined) {
      payload = Buffer.from(JSON.stringify(body));
      headers['Content-Type'] = 'application/json';
    }
    if (payload) headers['Content-Length'] = payload.length;
    const req = http.request(
      { host: target.hostname, port: target.port, path: urlPath, method, headers, agent },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let json = null;
          try {
            json = JSON.parse(text);
          } catch {
            // left null: reported with the raw text below
          }
          resolve({ status: res.statusCode, json, text });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

const projectPath = `/api/projects/${encodeURIComponent(cfg.projectId)}`;

// Every posted change names the same small file content: our server accepts a create only
// for content it stores, and one upload is enough for any number of paths.
const CONTENT = Buffer.from('vidsync fan-out benchmark\n');
const CONTENT_HASH = crypto.createHash('sha256').update(CONTENT).digest('hex');

// Store CONTENT on our server: one block, and the manifest of a one-block file (whose hash
// is the block's).
async function storeContent() {
  const block = await request('PUT', `${projectPath}/blocks/${CONTENT_HASH}`, CONTENT);
  if (block.status !== 200 && block.status !== 201) throw new Error(`PUT block: ${block.status} ${block.text}`);
  const manifest = await request('POST', `${projectPath}/manifests`, {
    hash: CONTENT_HASH,
    size: CONTENT.length,
    blocks: [{ hash: CONTENT_HASH, size: CONTENT.length }],
  });
  if (manifest.status !== 200 && manifest.status !== 201) throw new Error(`POST manifest: ${manifest.status} ${manifest.text}`);
}

function postChange(changePath, mtimeMs) {
  const change = {
    path: changePath,
    op: 'create',
    hash: CONTENT_HASH,
    size: CONTENT.length,
    mtime: Math.floor(mtimeMs),
  };
  return request('POST', `${projectPath}/files/update`, { changes: [change] });
}

// The seq the subscriptions start after: in vidsync mode the project's current last_seq,
// so nothing is replayed and every delivery is a live one.
async function currentSeq() {
  const res = await request('GET', '/api/projects');
  if (res.status !== 200) throw new Error(`GET /api/projects: ${res.status} ${res.text}`);
  const project = res.json.projects.find((p) => p.id === cfg.projectId);
  if (!project) throw new Error(`project ${cfg.projectId} is not in GET /api/projects`);
  return project.last_seq;
}

// ---- subscriber processes ----------------------------------------------------------

function startWorkers(sinceSeq) {
  const workers = [];
  const perProc = Math.ceil(cfg.subscribers / cfg.procs);
  for (let first = 0; first < cfg.subscribers; first += perProc) {
    const count = Math.min(perProc, cfg.subscribers - first);
    // 'advanced' serialization sends the latency arrays as typed arrays, not JSON.
    const child = fork(path.join(__dirname, 'worker.js'), [], { serialization: 'advanced' });
    // Subscribers under load are busy all the time; at a lower priority they cannot delay
    // the poster (this process), so posts still leave on schedule. (They also yield to a
    // server started in the same session; bench/fanout.py starts the server in its own
    // session, where the kernel shares CPU between sessions rather than by priority.)
    os.setPriority(child.pid, cfg.subscriberNice);
    const worker = { child, waiters: {}, inbox: {} };
    child.on('message', (msg) => {
      if (msg.type === 'error') {
        log(`worker ${child.pid}: ${msg.message}`);
        shutdown(workers, 1);
      }
      worker.inbox[msg.type] = msg;
      const waiter = worker.waiters[msg.type];
      if (waiter) waiter(msg);
    });
    child.on('exit', (code, signal) => {
      if (!worker.inbox.result) {
        log(`worker ${child.pid} exited (${signal || code}) before its result`);
        shutdown(workers, 1);
      }
    });
    child.send({
      type: 'config',
      url: cfg.url,
      mode: cfg.mode,
      token: cfg.token,
      projectId: cfg.projectId,
      sinceSeq,
      firstIndex: first,
      count,
      connectConcurrency: cfg.connectConcurrency,
      events: cfg.events,
      ackTimeoutMs: 30000,
      drainTimeoutMs: cfg.drainTimeoutMs,
    });
    workers.push(worker);
  }
  return workers;
}

// Resolves with each worker's message of the given type (already received or to come).
function allSent(workers, type) {
  return Promise.all(
    workers.map(
      (w) => w.inbox[type] || new Promise((resolve) => {
        w.waiters[type] = resolve;
      }),
    ),
  );
}

function broadcast(workers, msg) {
  for (const w of workers) w.child.send(msg);
}

function shutdown(workers, code) {
  for (const w of workers) w.child.kill();
  process.exit(code);
}

// The seed protocol has no ack, so a client cannot tell when its join took effect. Post
// unmeasured changes until every client has received one: from then on, each client's
// stream must be complete.
async function primeSeedClients(workers) {
  let ready = false;
  allSent(workers, 'ready').then(() => {
    ready = true;
  });
  for (let n = 0; !ready; n++) {
    const res = await postChange(`${PROBE_PREFIX}${n}`, nowMs());
    if (res.status !== 200) throw new Error(`probe post: ${res.status} ${res.text}`);
    await sleep(50);
  }
}

// ---- poster ------------------------------------------------------------------------

// --post-mode open: change i is due at t0 + i * interval whether or not earlier posts have
// been answered, like a watcher that does not wait for the server. --post-mode sequential:
// one post at a time, each interval after the previous answer, like an agent that waits.
function postAll() {
  return new Promise((resolve) => {
    const stats = { ok: 0, failed: 0, firstError: null, lastSeq: 0, lagMs: [], responseMs: [] };
    stats.answeredAtMs = new Float64Array(cfg.events).fill(NaN); // per post, when a 200 came back
    stats.firstIssuedMs = null; // when post 0 went out
    stats.issueSpanMs = null; // from post 0 to the last post
    const t0 = nowMs();
    let next = 0;
    let pending = 0;
    let lastIssuedMs = t0;

    // Post change i, due at dueMs; resolves once it is answered (or failed).
    const issue = (i, dueMs) => {
      const sentMs = nowMs();
      if (i === 0) stats.firstIssuedMs = sentMs;
      lastIssuedMs = sentMs;
      stats.lagMs.push(sentMs - dueMs);
      pending += 1;
      return postChange(measuredPath(i, sentMs), sentMs)
        .then(
          (res) => {
            if (res.status === 200) {
              stats.ok += 1;
              stats.answeredAtMs[i] = nowMs();
              stats.lastSeq = Math.max(stats.lastSeq, res.json.last_seq);
            } else {
              stats.failed += 1;
              stats.firstError = stats.firstError || `${res.status} ${res.text.slice(0, 300)}`;
            }
          },
          (err) => {
            stats.failed += 1;
            stats.firstError = stats.firstError || String(err.message || err);
          },
        )
        .finally(() => {
          stats.responseMs.push(nowMs() - sentMs);
          pending -= 1;
          if (next === cfg.events && pending === 0) {
            stats.issueSpanMs = lastIssuedMs - stats.firstIssuedMs;
            resolve(stats);
          }
        });
    };

    if (cfg.postMode === 'sequential') {
      // One at a time: the next post leaves interval ms after the previous one's answer.
      let due = t0;
      const step = () => {
        if (next === cfg.events) return;
        const i = next++;
        issue(i, due).finally(() => {
          due = nowMs() + cfg.intervalMs;
          setTimeout(step, cfg.intervalMs);
        });
      };
      step();
      return;
    }
    const tick = () => {
      // Issue everything that is due (catching up if a timer fired late), then sleep
      // until the next one.
      while (next < cfg.events && t0 + next * cfg.intervalMs <= nowMs()) issue(next, t0 + next++ * cfg.intervalMs);
      if (next < cfg.events) setTimeout(tick, Math.max(0, t0 + next * cfg.intervalMs - nowMs()));
    };
    tick();
  });
}

// ---- statistics --------------------------------------------------------------------

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))];
}

function summarize(values) {
  const sorted = Float64Array.from(values).sort();
  const round = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
  return {
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.length ? sorted[sorted.length - 1] : null),
    min: round(sorted.length ? sorted[0] : null),
  };
}

function sumBy(results, key) {
  return results.reduce((acc, r) => acc + r[key], 0);
}

function mergeCounts(objects) {
  const total = {};
  for (const obj of objects) for (const [k, v] of Object.entries(obj)) total[k] = (total[k] || 0) + v;
  return total;
}

// ---- main --------------------------------------------------------------------------

async function main() {
  let sinceSeq = null;
  if (cfg.mode === 'vidsync') {
    await storeContent();
    sinceSeq = await currentSeq();
  }
  log(`${cfg.subscribers} subscribers in ${cfg.procs} processes -> ${cfg.url} (${cfg.mode})`);
  const connectStart = performance.now();
  const workers = startWorkers(sinceSeq);
  await allSent(workers, 'connected');
  const connectMs = performance.now() - connectStart;
  if (cfg.mode === 'seed') await primeSeedClients(workers);
  await allSent(workers, 'ready');
  log(`all subscribed in ${(connectMs / 1000).toFixed(1)} s`);
  emit({ type: 'subscribed', subscribers: cfg.subscribers, connect_ms: Math.round(connectMs) });
  await sleep(cfg.settleMs);

  log(`posting ${cfg.events} changes, one every ${cfg.intervalMs} ms`);
  emit({ type: 'posting' });
  const posterCpuStart = process.cpuUsage();
  const posterWallStart = performance.now();
  broadcast(workers, { type: 'start' });
  const posts = await postAll();
  log(`posted: ${posts.ok} ok, ${posts.failed} failed, last_seq ${posts.lastSeq}; draining`);
  broadcast(workers, { type: 'finish', lastSeq: posts.lastSeq });
  const results = await allSent(workers, 'result');
  const posterCpu = process.cpuUsage(posterCpuStart);
  const posterCores = (posterCpu.user + posterCpu.system) / 1000 / (performance.now() - posterWallStart);

  const latencies = new Float64Array(sumBy(results, 'deliveries'));
  let offset = 0;
  for (const r of results) {
    latencies.set(r.latencies, offset);
    offset += r.latencies.length;
  }
  // Per post: when its last delivery arrived, and how long that was after the post was
  // answered. Both servers fan out before they answer, so this is the time the deliveries
  // spent after leaving the server: in the kernel and in the subscriber processes. If it
  // stays small while latency grows, the backlog is in the server, not in the load
  // generator.
  const lastDelivery = new Float64Array(cfg.events);
  for (const r of results) {
    for (let i = 0; i < cfg.events; i++) lastDelivery[i] = Math.max(lastDelivery[i], r.lastDeliveryMs[i]);
  }
  const lastDeliveryMs = Math.max(...lastDelivery);
  const afterAnswer = [];
  for (let i = 0; i < cfg.events; i++) {
    if (lastDelivery[i] > 0 && !Number.isNaN(posts.answeredAtMs[i])) afterAnswer.push(lastDelivery[i] - posts.answeredAtMs[i]);
  }
  const violations = mergeCounts(results.map((r) => r.violations));
  violations.missing = sumBy(results, 'missing');
  const violationTotal = Object.values(violations).reduce((a, b) => a + b, 0);

  emit({
    type: 'result',
    mode: cfg.mode,
    subscribers: cfg.subscribers,
    procs: cfg.procs,
    interval_ms: cfg.intervalMs,
    connect_ms: Math.round(connectMs),
    posts: {
      ok: posts.ok,
      failed: posts.failed,
      first_error: posts.firstError,
      last_seq: posts.lastSeq,
      achieved_interval_ms: cfg.events > 1 ? Math.round((posts.issueSpanMs / (cfg.events - 1)) * 1000) / 1000 : null,
      schedule_lag_ms: summarize(posts.lagMs),
      response_ms: summarize(posts.responseMs),
    },
    deliveries: latencies.length,
    expected_deliveries: posts.ok * cfg.subscribers,
    // Deliveries per second from the first post to the last measured delivery: under
    // overload this is the server's fan-out throughput.
    delivery_rate_per_s: latencies.length ? Math.round(latencies.length / ((lastDeliveryMs - posts.firstIssuedMs) / 1000)) : 0,
    // From the last post to the last delivery: how long the backlog took to clear.
    drain_ms: latencies.length ? Math.round(lastDeliveryMs - (posts.firstIssuedMs + posts.issueSpanMs)) : null,
    latency_ms: summarize(latencies),
    last_delivery_after_answer_ms: summarize(afterAnswer),
    violations,
    violation_total: violationTotal,
    violation_examples: results.flatMap((r) => r.examples).slice(0, 10),
    incomplete_clients: sumBy(results, 'incompleteClients'),
    per_client_deliveries: {
      min: Math.min(...results.map((r) => r.minPerClient)),
      max: Math.max(...results.map((r) => r.maxPerClient)),
    },
    disconnects: mergeCounts(results.map((r) => r.disconnectReasons)),
    loadgen: {
      // One entry per subscriber process, over the posting + draining window.
      event_loop_utilization: results.map((r) => Math.round(r.eventLoopUtilization * 1000) / 1000),
      cpu_cores: results.map((r) => Math.round(r.cpuCores * 1000) / 1000),
      poster_cpu_cores: Math.round(posterCores * 1000) / 1000,
    },
  });
  agent.destroy();
  // The workers leave by themselves once their result is sent.
}

main().catch((err) => {
  log(err.stack || String(err));
  process.exit(1);
});
