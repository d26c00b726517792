import { type FormEvent, useCallback, useEffect, useId, useState } from 'react';
import { type Invite, type MemberRole, ApiError, api } from '../lib/api';
import { formatDateTime } from '../lib/format';
import { ROLE_LABEL } from '../lib/roles';

const EXPIRY_CHOICES: { label: string; seconds: number }[] = [
  { label: '1 hour', seconds: 3_600 },
  { label: '1 day', seconds: 86_400 },
  { label: '7 days', seconds: 604_800 },
  { label: '30 days', seconds: 2_592_000 },
];

export function inviteLink(code: string): string {
  return `${window.location.origin}/join/${encodeURIComponent(code)}`;
}

export function InvitesPanel({ projectId, token }: { projectId: string; token: string }) {
  const [invites, setInvites] = useState<Invite[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [expiry, setExpiry] = useState('2');
  const [maxUses, setMaxUses] = useState('');
  const [role, setRole] = useState<MemberRole>('viewer');
  const [busy, setBusy] = useState(false);
  const [copied, setCopied] = useState<string | null>(null);
  const formId = useId();

  const load = useCallback(async () => {
    try {
      setInvites((await api.listInvites(token, projectId)).invites);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  }, [token, projectId]);

  useEffect(() => {
    void load();
  }, [load]);

  async function create(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const uses = maxUses.trim() === '' ? null : Number(maxUses);
      await api.createInvite(token, projectId, EXPIRY_CHOICES[Number(expiry)]!.seconds, uses, role);
      await load();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  async function revoke(code: string) {
    setError(null);
    try {
      await api.revokeInvite(token, projectId, code);
      await load();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  }

  async function copy(code: string) {
    try {
      await navigator.clipboard.writeText(inviteLink(code));
      setCopied(code);
    } catch {
      setError('Copying is not allowed here; select the link and copy it by hand.');
    }
  }

  return (
    <section aria-labelledby="invites-heading" className="panel">
      <h2 id="invites-heading">Invite links</h2>
      <form className="invite-form" onSubmit={(e) => void create(e)}>
        <div className="field">
          <label htmlFor={`${formId}-expiry`}>Expires after</label>
          <select id={`${formId}-expiry`} value={expiry} onChange={(e) => setExpiry(e.target.value)}>
            {EXPIRY_CHOICES.map((c, i) => (
              <option key={c.label} value={i}>
                {c.label}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor={`${formId}-uses`}>Maximum uses</label>
          <input
            id={`${formId}-uses`}
            type="number"
            min={1}
            inputMode="numeric"
            placeholder="Unlimited"
            value={maxUses}
            onChange={(e) => setMaxUses(e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor={`${formId}-role`}>Joins as</label>
          <select
            id={`${formId}-role`}
            value={role}
            onChange={(e) => setRole(e.target.value as MemberRole)}
          >
            <option value="viewer">{ROLE_LABEL.viewer} (reads)</option>
            <option value="editor">{ROLE_LABEL.editor} (reads and writes)</option>
          </select>
        </div>
        <button type="submit" disabled={busy}>
          Create invite link
        </button>
      </form>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {invites && invites.length === 0 && <p className="empty">No active invite links.</p>}
      {invites && invites.length > 0 && (
        <ul className="invites">
          {invites.map((inv) => (
            <li key={inv.code} className="invite" data-code={inv.code}>
              <label className="visually-hidden" htmlFor={`${formId}-${inv.code}`}>
                Invite link
              </label>
              <input
                id={`${formId}-${inv.code}`}
                className="invite-link"
                readOnly
                value={inviteLink(inv.code)}
                onFocus={(e) => e.target.select()}
              />
              <span className="invite-meta">
                {ROLE_LABEL[inv.role ?? 'viewer']} · {inv.uses}
                {inv.max_uses !== null ? ` / ${inv.max_uses}` : ''} uses ·{' '}
                expires{' '}
                <time dateTime={inv.expires_at}>{formatDateTime(new Date(inv.expires_at))}</time>
              </span>
              <span className="invite-actions">
                <button
                  type="button"
                  onClick={() => void copy(inv.code)}
                  aria-label={`Copy invite link ${inv.code}`}
                >
                  {copied === inv.code ? 'Copied' : 'Copy'}
                </button>
                <button
                  type="button"
                  onClick={() => void revoke(inv.code)}
                  aria-label={`Revoke invite link ${inv.code}`}
                >
                  Revoke
                </button>
              </span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
