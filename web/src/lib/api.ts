// Typed client for the HTTP contract in docs/protocol.md.
//
// The page never holds a token: login and register ask the server for an HttpOnly session cookie
// (`cookie: true`), which the browser then sends on every same-origin request, Socket.IO
// included. Every request says `X-Requested-With`, which the server wants (with a same-origin
// `Origin`) before a cookie may change anything: a page elsewhere cannot send it. The `session`
// argument the calls take is not a secret: it says whether the page believes it is signed in
// (see lib/auth.tsx), so that a 401 can sign it out.

export interface User {
  id: string;
  email: string;
  name: string | null;
}

export type Role = 'owner' | 'editor' | 'viewer';
/** The roles an invite grants and the owner gives. */
export type MemberRole = 'editor' | 'viewer';

/** Who wrote an event, or holds a lock: the user's id and name (as it was then). */
export interface Author {
  id: string;
  name: string;
}

export interface Lock {
  path: string;
  user: Author;
  acquired_at: string;
  expires_at: string;
}

export interface Project {
  id: string;
  name: string;
  description: string | null;
  owner_id: string;
  created_at: string;
}

export interface ProjectSummary extends Project {
  role: Role;
  member_count: number;
  last_seq: number;
  last_activity_at: string | null;
}

export interface Member {
  user_id: string;
  email: string;
  name: string | null;
  role: Role;
  joined_at: string;
}

export interface Invite {
  code: string;
  created_at: string;
  expires_at: string;
  max_uses: number | null;
  uses: number;
  role: MemberRole;
}

export type Op = 'create' | 'update' | 'delete';

/** `mtime` is in milliseconds since the Unix epoch, or null when the owner's agent did not send it. */
export interface Change {
  path: string;
  op: Op;
  hash: string | null;
  size: number | null;
  mtime: number | null;
}

export interface ProjectEvent {
  project_id: string;
  seq: number;
  change: Change;
  created_at: string;
  /** Null only for an event a server of an earlier release relayed. */
  author: Author | null;
}

export interface FileEntry {
  path: string;
  hash: string;
  size: number;
  mtime: number | null;
  seq: number;
}

/** A folder in a folder listing, with totals over everything under it. */
export interface FolderEntry {
  /** With its trailing slash: `clips/day01/`. */
  path: string;
  file_count: number;
  size: number;
  mtime: number | null;
}

/** One level of the project's files (`GET /files?dir=`), as of `seq`. */
export interface FolderListing {
  files: FileEntry[];
  folders: FolderEntry[];
  seq: number;
}

/** One version of a path, from the event log (`available`: its content is still stored). */
export interface Version {
  seq: number;
  path: string;
  op: Op;
  hash: string | null;
  size: number | null;
  mtime: number | null;
  author: { id: string; name: string | null } | null;
  created_at: string;
  available: boolean;
}

export interface DeletedFile {
  path: string;
  deleted_seq: number;
  deleted_at: string;
  last_version: Version;
}

/** Bytes of distinct stored blocks (shared ones counted once). */
export interface Usage {
  live_bytes: number;
  history_bytes: number;
  pending_bytes: number;
  reclaimable_bytes: number;
  stored_bytes: number;
  quota_bytes: number;
  retention_s: number;
}

export interface PlayLink {
  url: string;
  expires_at: string;
  media_type: string;
  /** Null for audio, or when the server cannot make poster frames (no ffmpeg). */
  poster_url: string | null;
}

export interface EventsPage {
  events: ProjectEvent[];
  last_seq: number;
  has_more: boolean;
}

/** An error answered by the server (`{"error": {code, message}}`) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

type Json = Record<string, unknown>;

/** Called when any request answers 401, so the app can drop a session the server no longer accepts. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

/** Marks a request as the web UI's own (the server's CSRF check for the session cookie). */
export const CSRF_HEADERS = { 'X-Requested-With': 'vidsync-web' } as const;

export async function request<T>(
  method: string,
  path: string,
  session: string | null,
  body?: Json,
  signal?: AbortSignal,
): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...CSRF_HEADERS };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal,
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError(0, 'network', 'Cannot reach the server.');
  }
  if (res.status === 204) return undefined as T;
  const data: unknown = await res.json().catch(() => null);
  if (!res.ok) {
    const error = (data as { error?: { code?: string; message?: string } } | null)?.error;
    if (res.status === 401 && session) onUnauthorized();
    throw new ApiError(
      res.status,
      error?.code ?? `http_${res.status}`,
      error?.message ?? `The server answered ${res.status}.`,
    );
  }
  return data as T;
}

const enc = encodeURIComponent;

export const api = {
  register: (email: string, password: string, name: string) =>
    request<{ user: User }>('POST', '/api/auth/register', null, {
      email,
      password,
      cookie: true,
      ...(name ? { name } : {}),
    }),
  login: (email: string, password: string) =>
    request<{ user: User }>('POST', '/api/auth/login', null, { email, password, cookie: true }),
  logout: (token: string) => request<void>('POST', '/api/auth/logout', token),
  me: (token: string) => request<{ user: User }>('GET', '/api/auth/me', token),

  listProjects: (token: string) =>
    request<{ projects: ProjectSummary[] }>('GET', '/api/projects', token),
  createProject: (token: string, name: string, description: string) =>
    request<{ project: Project }>('POST', '/api/projects', token, {
      name,
      ...(description ? { description } : {}),
    }),
  getProject: (token: string, id: string) =>
    request<{ project: Project; role: Role; members: Member[]; usage?: Usage }>(
      'GET',
      `/api/projects/${enc(id)}`,
      token,
    ),
  setMemberRole: (token: string, id: string, userId: string, role: MemberRole) =>
    request<{ member: Member }>('PATCH', `/api/projects/${enc(id)}/members/${enc(userId)}`, token, {
      role,
    }),
  removeMember: (token: string, id: string, userId: string) =>
    request<void>('DELETE', `/api/projects/${enc(id)}/members/${enc(userId)}`, token),

  listInvites: (token: string, id: string) =>
    request<{ invites: Invite[] }>('GET', `/api/projects/${enc(id)}/invites`, token),
  createInvite: (
    token: string,
    id: string,
    expiresInS: number,
    maxUses: number | null,
    role: MemberRole = 'viewer',
  ) =>
    request<{ invite: Invite }>('POST', `/api/projects/${enc(id)}/invites`, token, {
      expires_in_s: expiresInS,
      role,
      ...(maxUses !== null ? { max_uses: maxUses } : {}),
    }),
  revokeInvite: (token: string, id: string, code: string) =>
    request<void>('DELETE', `/api/projects/${enc(id)}/invites/${enc(code)}`, token),
  join: (token: string, inviteCode: string) =>
    request<{ project: Project; role: Role }>('POST', '/api/projects/join', token, {
      invite_code: inviteCode,
    }),

  locks: (token: string, id: string) =>
    request<{ locks: Lock[] }>('GET', `/api/projects/${enc(id)}/locks`, token),
  lock: (token: string, id: string, path: string) =>
    request<{ lock: Lock }>('POST', `/api/projects/${enc(id)}/locks`, token, { path }),
  /** The holder releases a lock; the owner may break anyone's. */
  unlock: (token: string, id: string, path: string) =>
    request<void>(
      'DELETE',
      `/api/projects/${enc(id)}/locks?${new URLSearchParams({ path })}`,
      token,
    ),

  files: (token: string, id: string) =>
    request<{ files: FileEntry[]; seq: number }>('GET', `/api/projects/${enc(id)}/files`, token),
  /** The files directly in a folder (`''` the root, else `dir/`) and its folders' totals. */
  folder: (token: string, id: string, dir: string) =>
    request<FolderListing>(
      'GET',
      `/api/projects/${enc(id)}/files?${new URLSearchParams({ dir: dir || '/' })}`,
      token,
    ),
  /** A short-lived URL the browser opens without a header: a file, or a folder as a zip. */
  downloadLink: (token: string, id: string, target: { path: string } | { prefix: string }) =>
    request<{ url: string; expires_at: string }>(
      'POST',
      `/api/projects/${enc(id)}/download-links`,
      token,
      target,
    ),
  /** A path's versions, newest first (`dir/` a folder's, `/` everything). */
  history: (token: string, id: string, path: string, beforeSeq?: number) => {
    const params = new URLSearchParams({ path, limit: '100' });
    if (beforeSeq !== undefined) params.set('before_seq', String(beforeSeq));
    return request<{ versions: Version[]; has_more: boolean }>(
      'GET',
      `/api/projects/${enc(id)}/files/history?${params}`,
      token,
    );
  },
  deleted: (token: string, id: string, after?: string) => {
    const params = new URLSearchParams({ limit: '100' });
    if (after !== undefined) params.set('after', after);
    return request<{ files: DeletedFile[]; has_more: boolean }>(
      'GET',
      `/api/projects/${enc(id)}/files/deleted?${params}`,
      token,
    );
  },
  /** Brings a version back as a new change, which every mirror applies. */
  restore: (token: string, id: string, path: string, seq: number) =>
    request<{ results: { path: string; op: Op; seq: number }[]; last_seq: number }>(
      'POST',
      `/api/projects/${enc(id)}/files/restore`,
      token,
      { path, seq },
    ),
  /** A URL to play an allow-listed audio or video file in the page (ranges, its media type). */
  playLink: (token: string, id: string, path: string) =>
    request<PlayLink>('POST', `/api/projects/${enc(id)}/download-links`, token, {
      path,
      inline: true,
      expires_in_s: 3600,
    }),
  events: (
    token: string,
    id: string,
    query: { sinceSeq: number; limit?: number; waitS?: number },
    signal?: AbortSignal,
  ) => {
    const params = new URLSearchParams({ since_seq: String(query.sinceSeq) });
    if (query.limit !== undefined) params.set('limit', String(query.limit));
    if (query.waitS !== undefined) params.set('wait', String(query.waitS));
    return request<EventsPage>(
      'GET',
      `/api/projects/${enc(id)}/events?${params}`,
      token,
      undefined,
      signal,
    );
  },
};
