// Follows one project's event log: Socket.IO when it works (WebSocket, or Engine.IO's
// long-polling when WebSocket is refused), plain HTTP long-polling on /events?wait= when
// Socket.IO cannot connect at all. Whatever carries the events, the stream remembers the last
// seq it delivered and resumes after it, so a reconnect neither loses nor repeats an event.
import { type Socket, io } from 'socket.io-client';
import { type Lock, type ProjectEvent, type Role, ApiError, api } from './api';

export type Transport = 'websocket' | 'polling' | 'http';

export type ConnectionState =
  | { kind: 'connecting' }
  | { kind: 'live'; transport: Transport }
  /** nextRetryAt is null while a try is under way. */
  | { kind: 'reconnecting'; nextRetryAt: number | null; attempt: number }
  /** The browser says it has no network; the stream waits for it to come back. */
  | { kind: 'offline' }
  /** The server ended access to the project (member removed, project deleted); final. */
  | { kind: 'ended'; reason: string }
  /** The token is no longer accepted (logged out elsewhere); final. */
  | { kind: 'signed-out' };

export interface StreamOptions {
  projectId: string;
  token: string;
  /** Seq of the snapshot (or of the last event) the page already shows. */
  sinceSeq: number;
  /** New events, in seq order, each delivered exactly once. */
  onEvents: (events: ProjectEvent[]) => void;
  onState: (state: ConnectionState) => void;
  /** Every lock of the project: after each (re)subscription, and on each HTTP long-poll. */
  onLocks?: (locks: Lock[]) => void;
  /** One path locked (`lock`) or unlocked (null). */
  onLock?: (change: LockChange) => void;
  /** The owner changed the caller's role. */
  onRole?: (role: Role) => void;
  /** `project:upload`: a file the owner is uploading now (Socket.IO only; not in the log). */
  onUpload?: (msg: UploadMessage) => void;
}

/** `project:upload` as docs/protocol.md describes it (`blocks`, on "started", is not used here). */
export interface UploadMessage {
  project_id: string;
  path: string;
  hash: string;
  size: number;
  state: 'started' | 'progress' | 'stored' | 'failed';
  ready_blocks: number;
  ready_bytes: number;
}

export interface LockChange {
  path: string;
  lock: Lock | null;
  reason: 'locked' | 'released' | 'broken' | 'expired' | 'member_left';
  by?: { id: string; name: string };
}

type Ack = { ok: true; last_seq: number } | { ok: false; error: { code: string; message: string } };

const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 10_000;
/** While on the HTTP fallback, how often to see whether Socket.IO works again. */
const SOCKET_RETRY_ON_HTTP_MS = 30_000;
const CONNECT_TIMEOUT_MS = 10_000;
/** Generous: the server replays what the page missed before it answers. */
const ACK_TIMEOUT_MS = 30_000;
const LONG_POLL_WAIT_S = 25;
const LONG_POLL_LIMIT = 500;

/** Exponential backoff with ±20 % jitter, so many pages don't all come back in the same tick. */
function retryDelay(attempt: number): number {
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** attempt);
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** `project:removed` reasons as the server words them, said to the person. */
function describeRemoval(reason: string): string {
  switch (reason) {
    case 'removed from project':
      return 'The owner removed you from this project.';
    case 'project deleted':
      return 'The owner deleted this project.';
    default:
      return reason;
  }
}

export class ProjectEventStream {
  private readonly socket: Socket;
  private lastSeq: number;
  private state: ConnectionState = { kind: 'connecting' };
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while the HTTP long-poll loop runs; aborting it ends the loop. */
  private poll: AbortController | null = null;
  private closed = false;

  constructor(private readonly opts: StreamOptions) {
    this.lastSeq = opts.sinceSeq;
    this.socket = io({
      // No auth payload: the browser sends the HttpOnly session cookie with the handshake.
      // WebSocket first; if the server refuses it, the same attempt goes on over long-polling
      // (which then stays put: no upgrade is tried, the server having just refused WebSocket).
      // Replays and live batches both arrive as `project:events`, since we subscribe with batch.
      transports: ['websocket', 'polling'],
      tryAllTransports: true,
      // Reconnection is done here rather than by Socket.IO, so that the page can say when the
      // next try is, and so that each new connection subscribes again from the last seq shown.
      reconnection: false,
      autoConnect: false,
      forceNew: true,
      timeout: CONNECT_TIMEOUT_MS,
    });
    this.socket.on('connect', this.handleConnect);
    this.socket.on('connect_error', this.handleConnectError);
    this.socket.on('disconnect', this.handleDisconnect);
    this.socket.on('project:events', (batch: { events: ProjectEvent[] }) =>
      this.deliver(batch.events),
    );
    this.socket.on('project:upload', (msg: UploadMessage) => {
      if (!this.closed && msg.project_id === this.opts.projectId) this.opts.onUpload?.(msg);
    });
    this.socket.on('project:locks', (msg: { locks: Lock[] }) => this.opts.onLocks?.(msg.locks));
    this.socket.on('project:lock', (msg: LockChange) => this.opts.onLock?.(msg));
    this.socket.on('project:role', (msg: { role: Role }) => this.opts.onRole?.(msg.role));
    this.socket.on('project:removed', (msg: { reason: string }) =>
      this.finish({ kind: 'ended', reason: describeRemoval(msg.reason) }),
    );
  }

  start(): void {
    window.addEventListener('offline', this.handleOffline);
    window.addEventListener('online', this.handleOnline);
    if (navigator.onLine) this.connect();
    else this.setState({ kind: 'offline' });
  }

  stop(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.stopPolling();
    this.socket.disconnect();
    window.removeEventListener('offline', this.handleOffline);
    window.removeEventListener('online', this.handleOnline);
  }

  /** Skips the wait before the next reconnection try. */
  retryNow(): void {
    if (this.state.kind === 'reconnecting' && this.state.nextRetryAt !== null) this.connect();
  }

  private connect(): void {
    clearTimeout(this.retryTimer);
    if (this.state.kind === 'reconnecting') this.setState({ ...this.state, nextRetryAt: null });
    else this.setState({ kind: 'connecting' });
    this.socket.connect();
  }

  private handleConnect = (): void => {
    const socketId = this.socket.id;
    this.socket
      .timeout(ACK_TIMEOUT_MS)
      .emit(
        'subscribe:project',
        { projectId: this.opts.projectId, since_seq: this.lastSeq, batch: true },
        (err: Error | null, ack: Ack) => {
          if (this.closed || this.socket.id !== socketId) return;
          if (err) {
            // No answer: treat the connection as broken and start over.
            this.socket.disconnect();
            this.scheduleRetry();
          } else if (!ack.ok) {
            this.finish(
              ack.error.code === 'unauthorized'
                ? { kind: 'signed-out' }
                : { kind: 'ended', reason: ack.error.message },
            );
          } else {
            this.attempt = 0;
            this.stopPolling();
            this.reportSocketLive();
          }
        },
      );
  };

  private handleConnectError = (err: Error): void => {
    if (this.closed) return;
    if (err.message === 'unauthorized') this.finish({ kind: 'signed-out' });
    else if (this.poll) this.scheduleSocketRetry();
    else void this.runLongPoll();
  };

  private handleDisconnect = (reason: Socket.DisconnectReason): void => {
    if (this.closed || reason === 'io client disconnect') return;
    if (this.poll) this.scheduleSocketRetry();
    else if (reason === 'io server disconnect') void this.checkSessionThenRetry();
    else this.scheduleRetry();
  };

  /** The server drops sockets of a revoked token, and also sockets that fall too far behind. */
  private async checkSessionThenRetry(): Promise<void> {
    try {
      await api.me(this.opts.token);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        this.finish({ kind: 'signed-out' });
        return;
      }
    }
    if (!this.closed) this.scheduleRetry();
  }

  private handleOffline = (): void => {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    this.stopPolling();
    this.socket.disconnect();
    this.setState({ kind: 'offline' });
  };

  private handleOnline = (): void => {
    if (this.closed) return;
    this.attempt = 0;
    this.connect();
  };

  private scheduleRetry(): void {
    clearTimeout(this.retryTimer);
    if (!navigator.onLine) {
      this.setState({ kind: 'offline' });
      return;
    }
    const delay = retryDelay(this.attempt);
    this.attempt += 1;
    this.setState({ kind: 'reconnecting', nextRetryAt: Date.now() + delay, attempt: this.attempt });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private scheduleSocketRetry(): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.socket.connect(), SOCKET_RETRY_ON_HTTP_MS);
  }

  /**
   * Socket.IO could not connect: follow the log over GET /events?wait= instead. The first
   * request answers at once, which tells whether the server is reachable at all.
   */
  private async runLongPoll(): Promise<void> {
    const ctl = new AbortController();
    this.poll = ctl;
    let first = true;
    let waitS = 0;
    while (this.poll === ctl) {
      let page;
      try {
        page = await api.events(
          this.opts.token,
          this.opts.projectId,
          { sinceSeq: this.lastSeq, limit: LONG_POLL_LIMIT, waitS },
          ctl.signal,
        );
      } catch (err) {
        if (this.poll !== ctl) return;
        this.poll = null;
        if (err instanceof ApiError && err.status === 401) this.finish({ kind: 'signed-out' });
        else if (err instanceof ApiError && (err.status === 403 || err.status === 404))
          this.finish({ kind: 'ended', reason: err.message });
        else this.scheduleRetry();
        return;
      }
      if (this.poll !== ctl) return;
      // No live lock events over plain HTTP: the list is read again with each poll.
      if (this.opts.onLocks) {
        const locks = await api.locks(this.opts.token, this.opts.projectId).catch(() => null);
        if (this.poll !== ctl) return;
        if (locks) this.opts.onLocks(locks.locks);
      }
      if (first) {
        first = false;
        this.attempt = 0;
        this.setState({ kind: 'live', transport: 'http' });
        this.scheduleSocketRetry();
      }
      this.deliver(page.events);
      waitS = page.has_more ? 0 : LONG_POLL_WAIT_S;
    }
  }

  private stopPolling(): void {
    this.poll?.abort();
    this.poll = null;
  }

  /** Drops anything at or below the last delivered seq: replays and the HTTP/socket overlap. */
  private deliver(events: ProjectEvent[]): void {
    if (this.closed) return;
    const fresh: ProjectEvent[] = [];
    for (const event of events) {
      if (event.seq > this.lastSeq) {
        fresh.push(event);
        this.lastSeq = event.seq;
      }
    }
    if (fresh.length > 0) this.opts.onEvents(fresh);
  }

  private reportSocketLive(): void {
    const name = this.socket.io.engine.transport.name;
    this.setState({ kind: 'live', transport: name === 'websocket' ? 'websocket' : 'polling' });
  }

  private finish(state: ConnectionState): void {
    if (this.closed) return;
    this.stop();
    this.setState(state);
  }

  private setState(state: ConnectionState): void {
    this.state = state;
    this.opts.onState(state);
  }
}
