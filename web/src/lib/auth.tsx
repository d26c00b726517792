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

const TOKEN_KEY = 'vidsync.token';

interface AuthState {
  token: string | null;
  user: User | null;
  /** True until a stored token has been checked against the server. */
  checking: boolean;
  signIn: (token: string, user: User) => void;
  signOut: () => Promise<void>;
}

const AuthContext = createContext<AuthState | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const [token, setToken] = useState<string | null>(() => localStorage.getItem(TOKEN_KEY));
  const [user, setUser] = useState<User | null>(null);
  const [checking, setChecking] = useState(token !== null);

  const forget = useCallback(() => {
    localStorage.removeItem(TOKEN_KEY);
    setToken(null);
    setUser(null);
  }, []);

  useEffect(() => setUnauthorizedHandler(forget), [forget]);

  // A stored token may have been revoked (logout elsewhere) or expired: ask who it belongs to.
  useEffect(() => {
    if (!token || user) return;
    let cancelled = false;
    api
      .me(token)
      .then(({ user: me }) => !cancelled && setUser(me))
      .catch((err: unknown) => {
        // A network failure keeps the token: the server may just be restarting.
        if (!cancelled && err instanceof ApiError && err.status === 401) forget();
      })
      .finally(() => !cancelled && setChecking(false));
    return () => {
      cancelled = true;
    };
  }, [token, user, forget]);

  const signIn = useCallback((newToken: string, newUser: User) => {
    localStorage.setItem(TOKEN_KEY, newToken);
    setToken(newToken);
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
