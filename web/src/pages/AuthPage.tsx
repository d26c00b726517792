import { type FormEvent, useEffect, useState } from 'react';
import { ApiError, api } from '../lib/api';
import { useAuth } from '../lib/auth';
import { safeNext, withNext } from '../lib/next';
import { Link, navigate } from '../lib/router';
import { usePageTitle } from '../lib/usePageTitle';

export function AuthPage({ mode }: { mode: 'login' | 'signup' }) {
  const { token, signIn } = useAuth();
  const next = safeNext(window.location.search);
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [name, setName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const signup = mode === 'signup';
  usePageTitle(signup ? 'Sign up' : 'Log in');

  useEffect(() => {
    if (token) navigate(next, { replace: true });
  }, [token, next]);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const res = signup
        ? await api.register(email.trim(), password, name.trim())
        : await api.login(email.trim(), password);
      signIn(res.user);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
      setBusy(false);
    }
  }

  return (
    <div className="auth">
      <h1>{signup ? 'Create your account' : 'Log in'}</h1>
      {next.startsWith('/join/') && (
        <p className="note">
          {signup ? 'Sign up' : 'Log in'} to join the project you were invited to.
        </p>
      )}
      <form onSubmit={(e) => void submit(e)} className="stack">
        {signup && (
          <div className="field">
            <label htmlFor="auth-name">
              Name <span className="optional">(optional)</span>
            </label>
            <input
              id="auth-name"
              autoComplete="name"
              value={name}
              onChange={(e) => setName(e.target.value)}
            />
          </div>
        )}
        <div className="field">
          <label htmlFor="auth-email">Email</label>
          <input
            id="auth-email"
            type="email"
            autoComplete="email"
            required
            value={email}
            onChange={(e) => setEmail(e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor="auth-password">Password</label>
          <input
            id="auth-password"
            type="password"
            autoComplete={signup ? 'new-password' : 'current-password'}
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </div>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {signup ? 'Sign up' : 'Log in'}
        </button>
      </form>
      <p>
        {signup ? 'Already have an account? ' : 'New here? '}
        <Link to={withNext(signup ? '/login' : '/signup', next)}>
          {signup ? 'Log in' : 'Create an account'}
        </Link>
      </p>
    </div>
  );
}
