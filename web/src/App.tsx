import { type ReactNode, useEffect, useRef } from 'react';
import { useAuth } from './lib/auth';
import { withNext } from './lib/next';
import { Link, matchPath, navigate, useLocation } from './lib/router';
import { AuthPage } from './pages/AuthPage';
import { JoinPage } from './pages/JoinPage';
import { ProjectPage } from './pages/ProjectPage';
import { ProjectsPage } from './pages/ProjectsPage';
import { usePageTitle } from './lib/usePageTitle';

export function App() {
  const location = useLocation();
  const path = location.split('?')[0]!;
  const mainRef = useRef<HTMLElement>(null);

  // After a client-side navigation, put focus at the top of the new page, as a page load would.
  const firstRender = useRef(true);
  useEffect(() => {
    if (firstRender.current) firstRender.current = false;
    else mainRef.current?.focus();
  }, [path]);

  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <Header />
      <main id="main" ref={mainRef} tabIndex={-1}>
        <Route path={path} location={location} />
      </main>
    </>
  );
}

function Header() {
  const { token, user, signOut } = useAuth();
  return (
    <header className="site-header">
      <Link to="/" className="brand">
        Vidsync
      </Link>
      {token && (
        <nav aria-label="Account" className="account">
          <Link to="/">Projects</Link>
          {user && <span className="who">{user.name || user.email}</span>}
          <button
            type="button"
            onClick={() => void signOut().then(() => navigate('/login', { replace: true }))}
          >
            Log out
          </button>
        </nav>
      )}
    </header>
  );
}

function Route({ path, location }: { path: string; location: string }) {
  if (path === '/login') return <AuthPage mode="login" />;
  if (path === '/signup') return <AuthPage mode="signup" />;
  if (path === '/') return <RequireAuth location={location}>{(t) => <ProjectsPage token={t} />}</RequireAuth>;
  const project = matchPath('/projects/:id', path);
  if (project)
    return (
      <RequireAuth location={location}>
        {(t) => <ProjectPage key={project.id} token={t} projectId={project.id!} />}
      </RequireAuth>
    );
  const join = matchPath('/join/:code', path);
  if (join)
    return (
      <RequireAuth location={location} signupFirst>
        {(t) => <JoinPage token={t} code={join.code!} />}
      </RequireAuth>
    );
  return <NotFound />;
}

/** Renders its page for a signed-in user; sends anyone else to log in and come back. */
function RequireAuth({
  location,
  signupFirst = false,
  children,
}: {
  location: string;
  /** Invite links mostly reach people without an account yet. */
  signupFirst?: boolean;
  children: (token: string) => ReactNode;
}) {
  const { token, checking } = useAuth();
  useEffect(() => {
    if (!checking && !token)
      navigate(withNext(signupFirst ? '/signup' : '/login', location), { replace: true });
  }, [checking, token, location, signupFirst]);
  if (checking) return <p aria-busy="true">Loading…</p>;
  return token ? children(token) : null;
}

function NotFound() {
  usePageTitle('Not found');
  return (
    <>
      <h1>Page not found</h1>
      <p>
        <Link to="/">Go to your projects</Link>
      </p>
    </>
  );
}
