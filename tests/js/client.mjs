// A Socket.IO client as the seed's app uses it, for the server tests: every event it receives is
// printed to stdout as one JSON line. Commands arrive on stdin, one JSON line each:
//   {"id": 1, "emit": "subscribe:project", "arg": {...}}  -> emits, prints {"type": "ack", id, data}
// Usage: node client.mjs URL TOKEN websocket|polling|upgrade [PROJECT_ID ...]
// Each PROJECT_ID is subscribed at once, the seed's way: socket.emit('subscribe:project', id),
// no ack, before the connection is even open (the client buffers it).
import readline from "node:readline";
import { io } from "socket.io-client";

const [url, token, mode, ...seedProjects] = process.argv.slice(2);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const socket = io(url, {
  auth: { token },
  transports: mode === "upgrade" ? ["polling", "websocket"] : [mode],
  reconnection: false,
});
socket.io.on("open", () => {
  socket.io.engine.on("upgrade", (transport) => print({ type: "upgrade", transport: transport.name }));
});
socket.on("connect", () => print({ type: "connect", transport: socket.io.engine.transport.name }));
socket.on("connect_error", (err) => print({ type: "connect_error", message: err.message, data: err.data ?? null }));
socket.on("disconnect", (reason) => print({ type: "disconnect", reason }));
socket.onAny((name, data) => print({ type: "event", name, data }));

for (const projectId of seedProjects) socket.emit("subscribe:project", projectId);

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const { id, emit, arg } = JSON.parse(line);
  socket.emit(emit, arg, (data) => print({ type: "ack", id, data }));
}).on("close", () => {
  socket.disconnect();
  process.exit(0);
});
