import { useState } from 'react';
import { type Member, type MemberRole, ApiError, api } from '../lib/api';
import { formatDateTime } from '../lib/format';
import { ROLE_LABEL } from '../lib/roles';

interface Props {
  projectId: string;
  token: string;
  members: readonly Member[];
  /** Only the owner sees the role choices and the Remove buttons. */
  canManage: boolean;
  onChanged: () => void;
}

export function MembersPanel({ projectId, token, members, canManage, onChanged }: Props) {
  // Removal asks for confirmation in place rather than in a blocking dialog.
  const [confirming, setConfirming] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function changeRole(member: Member, role: MemberRole) {
    setBusy(true);
    setError(null);
    try {
      await api.setMemberRole(token, projectId, member.user_id, role);
      onChanged();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  async function remove(member: Member) {
    setBusy(true);
    setError(null);
    try {
      await api.removeMember(token, projectId, member.user_id);
      setConfirming(null);
      onChanged();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="members-heading" className="panel">
      <h2 id="members-heading">Members ({members.length})</h2>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <ul className="members">
        {members.map((m) => {
          const who = m.name ? `${m.name} (${m.email})` : m.email;
          return (
            <li key={m.user_id} className="member" data-email={m.email} data-role={m.role}>
              <div className="member-who">
                <span className="member-name">{who}</span>
                <span className="member-meta">
                  {canManage && m.role !== 'owner' ? (
                    <select
                      className="member-role"
                      aria-label={`Role of ${m.email}`}
                      value={m.role}
                      disabled={busy}
                      onChange={(e) => void changeRole(m, e.target.value as MemberRole)}
                    >
                      <option value="viewer">{ROLE_LABEL.viewer}: reads</option>
                      <option value="editor">{ROLE_LABEL.editor}: reads and writes</option>
                    </select>
                  ) : (
                    ROLE_LABEL[m.role]
                  )}{' '}
                  · joined{' '}
                  <time dateTime={m.joined_at}>{formatDateTime(new Date(m.joined_at))}</time>
                </span>
              </div>
              {canManage && m.role !== 'owner' && (
                <div className="member-actions">
                  {confirming === m.user_id ? (
                    <>
                      <button
                        type="button"
                        className="danger"
                        disabled={busy}
                        onClick={() => void remove(m)}
                        aria-label={`Confirm removing ${m.email}`}
                      >
                        Confirm remove
                      </button>
                      <button type="button" onClick={() => setConfirming(null)} disabled={busy}>
                        Cancel
                      </button>
                    </>
                  ) : (
                    <button
                      type="button"
                      onClick={() => setConfirming(m.user_id)}
                      aria-label={`Remove ${m.email}`}
                    >
                      Remove
                    </button>
                  )}
                </div>
              )}
            </li>
          );
        })}
      </ul>
    </section>
  );
}
