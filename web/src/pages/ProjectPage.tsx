import { useCallback, useEffect, useState } from 'react';
import { ActivityFeed } from '../components/ActivityFeed';
import { ConnectionIndicator } from '../components/ConnectionIndicator';
import { DeletedFiles } from '../components/DeletedFiles';
import { LockBadge, LockControls } from '../components/FileLock';
import { type Download, type FileExtras, FileTree, type Play } from '../components/FileTree';
import { MediaPlayer } from '../components/MediaPlayer';
import { InvitesPanel } from '../components/InvitesPanel';
import { MembersPanel } from '../components/MembersPanel';
import { StorageUsage } from '../components/StorageUsage';
import { SyncBadge } from '../components/SyncBadge';
import { VersionsPanel } from '../components/VersionsPanel';
import { UploadProgress } from '../components/UploadProgress';
import { useLocks } from '../hooks/useLocks';
import { useProjectEvents } from '../hooks/useProjectEvents';
import { useUploads } from '../hooks/useUploads';
import { useSyncBadge } from '../hooks/useSyncBadge';
import {
  type Member,
  type Project,
  type ProjectEvent,
  type Role,
  type Usage,
  ApiError,
  api,
} from '../lib/api';
import { useAuth } from '../lib/auth';
import { ROLE_AS_YOU, mayWrite } from '../lib/roles';
import { FileTreeModel, OPEN_ALL_MAX } from '../lib/tree';
import { Link } from '../lib/router';
import { usePageTitle } from '../lib/usePageTitle';

/** Events shown in the feed on opening the page, from before the snapshot. */
const FEED_PREFILL = 50;
/** The feed keeps this many entries; the file tree holds the full state anyway. */
const FEED_MAX = 200;

interface ProjectInfo {
  project: Project;
  role: Role;
  members: Member[];
  usage?: Usage;
}

function describeLoadError(err: unknown): string {
  if (err instanceof ApiError && (err.status === 403 || err.status === 404))
    return 'This project does not exist, or you are not a member of it.';
  return err instanceof Error ? err.message : String(err);
}

export function ProjectPage({ token, projectId }: { token: string; projectId: string }) {
  const { signOut, user } = useAuth();
  const [info, setInfo] = useState<ProjectInfo | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  // Built once from the snapshot, then changed in place by events; `treeVersion` re-renders.
  const [tree, setTree] = useState<FileTreeModel | null>(null);
  const [treeVersion, setTreeVersion] = useState(0);
  const [baseSeq, setBaseSeq] = useState<number | null>(null);
  const [lastSeq, setLastSeq] = useState<number | null>(null);
  const [feed, setFeed] = useState<ProjectEvent[]>([]);
  const [downloadError, setDownloadError] = useState<string | null>(null);
  const [lockError, setLockError] = useState<string | null>(null);
  // Said once the owner changes the caller's role while the page is open.
  const [roleNotice, setRoleNotice] = useState<string | null>(null);
  const { locks, replaceLocks, changeLock } = useLocks();
  // The file whose versions are shown, if any.
  const [versionsOf, setVersionsOf] = useState<string | null>(null);
  const [playing, setPlaying] = useState<string | null>(null);
  const { badge, showEvents } = useSyncBadge();
  usePageTitle(info?.project.name ?? 'Project');

  const loadInfo = useCallback(async () => {
    try {
      setInfo(await api.getProject(token, projectId));
    } catch (err) {
      setLoadError(describeLoadError(err));
    }
  }, [token, projectId]);

  // After the files' first listing: the project's answer counts its storage, a walk over the
  // whole log that would otherwise compete with the listing of a large project.
  const treeReady = baseSeq !== null;
  useEffect(() => {
    if (treeReady) void loadInfo();
  }, [loadInfo, treeReady]);

  // The listing first; live events then resume from its seq, so nothing falls in between. A
  // small project loads whole; a large one shows its top folder, the rest loading as it opens.
  useEffect(() => {
    let cancelled = false;
    (async () => {
      const top = await api.folder(token, projectId, '');
      let model: FileTreeModel;
      let seq: number;
      const total = top.files.length + top.folders.reduce((n, f) => n + f.file_count, 0);
      if (total <= OPEN_ALL_MAX) {
        const snapshot = await api.files(token, projectId);
        model = FileTreeModel.whole(snapshot.files, snapshot.seq);
        seq = snapshot.seq;
      } else {
        model = FileTreeModel.byFolder(top, (dir) => api.folder(token, projectId, dir));
        seq = top.seq;
      }
      if (cancelled) return;
      model.onChange = () => !cancelled && setTreeVersion(model.version);
      setTree(model);
      setBaseSeq(seq);
      setLastSeq(seq);
      const recent = await api.events(token, projectId, {
        sinceSeq: Math.max(0, seq - FEED_PREFILL),
        limit: FEED_PREFILL,
      });
      if (cancelled) return;
      // Live events may already be in the feed; these are older, so they go below.
      const older = recent.events.filter((e) => e.seq <= seq).reverse();
      setFeed((prev) => [...prev, ...older].slice(0, FEED_MAX));
    })().catch((err: unknown) => !cancelled && setLoadError(describeLoadError(err)));
    return () => {
      cancelled = true;
    };
  }, [token, projectId]);

  const onEvents = (events: ProjectEvent[]) => {
    if (tree) {
      tree.apply(events);
      setTreeVersion(tree.version);
    }
    setFeed((prev) => [...[...events].reverse(), ...prev].slice(0, FEED_MAX));
    setLastSeq(events[events.length - 1]!.seq);
    showEvents(events);
  };
  const { uploads, onUpload } = useUploads();
  const { state, retryNow } = useProjectEvents(projectId, token, baseSeq, onEvents, onUpload, {
    onLocks: replaceLocks,
    onLock: changeLock,
    onRole: (role) => {
      setRoleNotice(
        mayWrite(role)
          ? `The owner made you ${ROLE_AS_YOU[role]}: you can now change this project's files.`
          : `The owner made you ${ROLE_AS_YOU[role]}: you can no longer change this project's files.`,
      );
      void loadInfo();
    },
  });

  // The server answers with a short-lived signed URL that the browser can open without the
  // token: the file (or the folder as a zip) then downloads as an attachment, page untouched.
  const download: Download = (node) => {
    setDownloadError(null);
    const target = node.kind === 'file' ? { path: node.path } : { prefix: node.path };
    api
      .downloadLink(token, projectId, target)
      .then(({ url }) => {
        const link = document.createElement('a');
        link.href = url;
        link.download = '';
        document.body.append(link);
        link.click();
        link.remove();
      })
      .catch((err: unknown) =>
        setDownloadError(`Cannot download ${node.path}: ${err instanceof Error ? err.message : err}`),
      );
  };

  const play: Play = (node) => setPlaying(node.path);

  // The socket was refused for the token: drop it, which leads to the login page.
  useEffect(() => {
    if (state.kind === 'signed-out') void signOut();
  }, [state.kind, signOut]);

  if (loadError) {
    return (
      <>
        <h1>Project unavailable</h1>
        <p role="alert" className="error">
          {loadError}
        </p>
        <p>
          <Link to="/">Back to your projects</Link>
        </p>
      </>
    );
  }

  const isOwner = info?.role === 'owner';
  // Who may write: restore and lock are writes.
  const canWrite = mayWrite(info?.role);
  const live = state.kind !== 'ended';
  const fileExtras: FileExtras = {
    badge: (node) => {
      const lock = locks.get(node.path);
      return lock && <LockBadge lock={lock} mine={lock.user.id === user?.id} />;
    },
    actions: (node) =>
      live && (
        <LockControls
          projectId={projectId}
          token={token}
          path={node.path}
          lock={locks.get(node.path)}
          userId={user?.id}
          canLock={canWrite}
          isOwner={isOwner}
          onError={setLockError}
        />
      ),
  };
  return (
    <>
      <div className="project-head">
        <div>
          <h1>{info?.project.name ?? 'Loading project…'}</h1>
          {info?.project.description && <p className="project-desc">{info.project.description}</p>}
          {info && (
            <p className="project-meta">
              You are {ROLE_AS_YOU[info.role]}
              {lastSeq !== null && <> · event {lastSeq}</>}
            </p>
          )}
        </div>
        <ConnectionIndicator state={state} onRetry={retryNow} />
      </div>

      {state.kind === 'ended' && (
        <div role="alert" className="banner ended">
          <p>
            <strong>You no longer receive updates from this project.</strong> {state.reason}
          </p>
          <p>
            <Link to="/">Back to your projects</Link>
          </p>
        </div>
      )}

      {roleNotice && (
        <div role="status" className="banner role-notice">
          <p>{roleNotice}</p>
        </div>
      )}

      <SyncBadge badge={badge} />

      <div className="project-grid">
        <section aria-labelledby="files-heading" className="panel files-panel">
          <h2 id="files-heading">Files</h2>
          {downloadError && (
            <p role="alert" className="error">
              {downloadError}
            </p>
          )}
          <UploadProgress uploads={live ? uploads : []} />
          {lockError && (
            <p role="alert" className="error">
              {lockError}
            </p>
          )}
          {baseSeq === null || tree === null ? (
            <p aria-busy="true">Loading files…</p>
          ) : (
            <FileTree
              model={tree}
              version={treeVersion}
              baseSeq={baseSeq}
              download={state.kind === 'ended' ? undefined : download}
              showVersions={live ? (node) => setVersionsOf(node.path) : undefined}
              play={live ? play : undefined}
              extras={fileExtras}
            />
          )}
        </section>
        {playing !== null && (
          <MediaPlayer
            key={playing}
            token={token}
            projectId={projectId}
            path={playing}
            onClose={() => setPlaying(null)}
            onDownload={() => {
              const file = tree?.get(playing);
              if (file) download({ kind: 'file', name: playing, path: playing, file });
            }}
          />
        )}
        <section aria-labelledby="activity-heading" className="panel activity-panel">
          <h2 id="activity-heading">Activity</h2>
          <ActivityFeed events={feed} />
        </section>
      </div>

      {live && versionsOf !== null && (
        <VersionsPanel
          projectId={projectId}
          token={token}
          path={versionsOf}
          canRestore={canWrite}
          lastSeq={lastSeq}
          onClose={() => setVersionsOf(null)}
        />
      )}
      {live && (
        <DeletedFiles
          projectId={projectId}
          token={token}
          canRestore={canWrite}
          lastSeq={lastSeq}
          showVersions={setVersionsOf}
        />
      )}
      {info?.usage && <StorageUsage usage={info.usage} />}

      {/* After a removal the member list is stale and no longer theirs to see. */}
      {info && state.kind !== 'ended' && (
        <MembersPanel
          projectId={projectId}
          token={token}
          members={info.members}
          canManage={isOwner}
          onChanged={() => void loadInfo()}
        />
      )}
      {isOwner && <InvitesPanel projectId={projectId} token={token} />}
    </>
  );
}
