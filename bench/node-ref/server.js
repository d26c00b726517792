// Reference fan-out server in the shape of the original Node design (the phase-2C
// WebSocket guide): Express and socket.io on one HTTP port, one room per project, and
// POST /files/update broadcasting each change with io.to(room).emit().
//
// It exists only so the benchmark has a baseline to compare our server against, so it
// keeps the seed's behaviour and nothing more: no auth (any token is accepted and
// ignored), no persistence (seq is an in-memory counter per project), no replay.
//
// Usage: node server.js [--port 5000] [--host 127.0.0.1]

const { createServer } = require('node:http');
const { parseArgs } = require('node:util');
const express = require('express');
const { Server } = require('socket.io');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.PORT || '5000' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});

const app = express();
// One change per request is the benchmark's case, but a client may batch, so allow room.
app.use(express.json({ limit: '10mb' }));

const httpServer = createServer(app);
const io = new Server(httpServer, {
  cors: { origin: '*' },
  transports: ['websocket', 'polling'],
});

io.on('connection', (socket) => {
  socket.on('subscribe:project', (projectId) => {
    socket.join(`project:${projectId}`);
  });
  socket.on('unsubscribe:project', (projectId) => {
    socket.leave(`project:${projectId}`);
  });
});

// Last assigned seq per project id; a project "exists" as soon as something is posted to it.
const lastSeqByProject = new Map();

app.post('/api/projects/:id/files/update', (req, res) => {
  const projectId = req.params.id;
  const changes = req.body && req.body.changes;
  if (!Array.isArray(changes)) {
    res.status(400).json({ error: { code: 'bad_request', message: 'changes must be an array' } });
    return;
  }
  let seq = lastSeqByProject.get(projectId) || 0;
  const results = [];
  for (const change of changes) {
    seq += 1;
    const event = { project_id: projectId, seq, change, created_at: new Date().toISOString() };
    io.to(`project:${projectId}`).emit('project:event', event);
    results.push({ path: change.path, op: change.op, seq });
  }
  lastSeqByProject.set(projectId, seq);
  res.json({ results, last_seq: seq });
});

httpServer.listen(Number(args.port), args.host, () => {
  const { address, port } = httpServer.address();
  console.log(`node-ref listening on http://${address}:${port}`);
});

// Exit cleanly on the signals the benchmark driver sends, so its RSS/CPU readings end with
// the process rather than with a kill.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
