import { type FormEvent, useEffect, useState } from 'react';
import { type ProjectSummary, ApiError, api } from '../lib/api';
import { formatDateTime, formatRelative } from '../lib/format';
import { ROLE_LABEL } from '../lib/roles';
import { Link, navigate } from '../lib/router';
import { usePageTitle } from '../lib/usePageTitle';

export function ProjectsPage({ token }: { token: string }) {
  const [projects, setProjects] = useState<ProjectSummary[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  usePageTitle('Projects');

  useEffect(() => {
    let cancelled = false;
    api
      .listProjects(token)
      .then((res) => !cancelled && setProjects(res.projects))
      .catch((err: unknown) => !cancelled && setError(err instanceof Error ? err.message : String(err)));
    return () => {
      cancelled = true;
    };
  }, [token]);

  return (
    <>
      <h1>Projects</h1>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {projects === null && !error && <p aria-busy="true">Loading projects…</p>}
      {projects && projects.length === 0 && (
        <p className="empty">You have no projects yet. Create one below, or open an invite link.</p>
      )}
      {projects && projects.length > 0 && (
        <table className="projects">
          <caption className="visually-hidden">Your projects</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Role</th>
              <th scope="col">Members</th>
              <th scope="col">Last activity</th>
            </tr>
          </thead>
          <tbody>
            {projects.map((p) => (
              <tr key={p.id} data-project-id={p.id}>
                <th scope="row" data-label="Name">
                  <Link to={`/projects/${encodeURIComponent(p.id)}`}>{p.name}</Link>
                  {p.description && <span className="project-desc">{p.description}</span>}
                </th>
                <td data-label="Role">{ROLE_LABEL[p.role]}</td>
                <td data-label="Members">{p.member_count}</td>
                <td data-label="Last activity">
                  {p.last_activity_at ? (
                    <time
                      dateTime={p.last_activity_at}
                      title={formatDateTime(new Date(p.last_activity_at))}
                    >
                      {formatRelative(new Date(p.last_activity_at))}
                    </time>
                  ) : (
                    'None yet'
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <CreateProject token={token} />
    </>
  );
}

function CreateProject({ token }: { token: string }) {
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const { project } = await api.createProject(token, name.trim(), description.trim());
      navigate(`/projects/${encodeURIComponent(project.id)}`);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="create-heading" className="panel">
      <h2 id="create-heading">New project</h2>
      <form onSubmit={(e) => void submit(e)} className="stack">
        <div className="field">
          <label htmlFor="project-name">Name</label>
          <input
            id="project-name"
            required
            value={name}
            onChange={(e) => setName(e.target.value)}
          />
        </div>
        <div className="field">
          <label htmlFor="project-description">
            Description <span className="optional">(optional)</span>
          </label>
          <input
            id="project-description"
            value={description}
            onChange={(e) => setDescription(e.target.value)}
          />
        </div>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          Create project
        </button>
      </form>
    </section>
  );
}
