import {
  type ReactNode,
  createContext,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useState,
} from 'react';
import { type User, ApiError, api, setUnauthorizedHandler } from './api';

/**
 * The session's credential is an HttpOnly cookie that no script can read (lib/api.ts). What the
 * page keeps is only whether it is signed in: `token` is the non-secret marker SESSION then, null
 * otherwise (the name stays so that pages pass it on to the API calls as before).
 */
const SESSION = 'cookie-session';
/**
 * Not a secret: remembers that a session cookie was set, so that a signed-out visitor's page asks
 * the server nothing, and a signed-in one stays signed in while the server restarts.
 */
const SIGNED_IN_KEY = 'vidsync.signedIn';
/** Where earlier versions kept the bearer token itself: removed on sight. */
const LEGACY_TOKEN_KEY = 'vidsync.token';

interface AuthState {
  token: string | null;
  user: User | null;
  /** True until the session cookie (if any) has been checked against the server. */
  checking: boolean;
  signIn: (user: User) => void;
  signOut: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [token, setToken] = useState<string | null>(() =>
    localStorage.getItem(SIGNED_IN_KEY) ? SESSION : null,
  );
  const [user, setUser] = useState<User | null>(null);
  const [checking, setChecking] = useState(token !== null);

  const forget = useCallback(() => {
    localStorage.removeItem(SIGNED_IN_KEY);
    setToken(null);
    setUser(null);
  }, []);

  useEffect(() => setUnauthorizedHandler(forget), [forget]);

  useEffect(() => localStorage.removeItem(LEGACY_TOKEN_KEY), []);

  // Whose session the cookie holds: it may have been revoked (logout elsewhere) or expired.
  useEffect(() => {
    if (!token || user) return;
    let cancelled = false;
    api
      .me(token)
      .then(({ user: me }) => !cancelled && setUser(me))
      .catch((err: unknown) => {
        // A network failure keeps the session: the server may just be restarting.
        if (!cancelled && err instanceof ApiError && err.status === 401) forget();
      })
      .finally(() => !cancelled && setChecking(false));
    return () => {
      cancelled = true;
    };
  }, [token, user, forget]);

  const signIn = useCallback((newUser: User) => {
    localStorage.setItem(SIGNED_IN_KEY, '1');
    setToken(SESSION);
    setUser(newUser);
    setChecking(false);
  }, []);

  const signOut = useCallback(async () => {
    if (token) await api.logout(token).catch(() => undefined);
    forget();
  }, [token, forget]);

  const value = useMemo(
    () => ({ token, user, checking, signIn, signOut }),
    [token, user, checking, signIn, signOut],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthState {
  const ctx = useContext(AuthContext);
  if (!ctx) throw new Error('useAuth outside AuthProvider');
  return ctx;
}
