import { useState } from 'react';
import { ApiError, api } from '../lib/api';
import { useAuth } from '../lib/auth';
import { navigate } from '../lib/router';
import { usePageTitle } from '../lib/usePageTitle';

/**
 * Opened from an invite link. Joining waits for a click: it spends one use of the
 * invite, and the person should see whose account joins.
 */
export function JoinPage({ token, code }: { token: string; code: string }) {
  const { user, signOut } = useAuth();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  usePageTitle('Join a project');

  async function join() {
    setBusy(true);
    setError(null);
    try {
      const { project } = await api.join(token, code);
      navigate(`/projects/${encodeURIComponent(project.id)}`, { replace: true });
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
      setBusy(false);
    }
  }

  return (
    <div className="auth">
      <h1>Join a project</h1>
      <p>
        You were invited to follow a project. As a viewer you see its files and every change live.
      </p>
      {user && (
        <p>
          You will join as <strong>{user.email}</strong>.{' '}
          {/* Signing out leads back here through the login page, via ?next=. */}
          <button type="button" className="link-button" onClick={() => void signOut()}>
            Use another account
          </button>
        </p>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <button type="button" className="primary" disabled={busy} onClick={() => void join()}>
        Join project
      </button>
    </div>
  );
}
