import type { Role } from './api';

/** A role as the page says it. */
export const ROLE_LABEL: Record<Role, string> = {
  owner: 'Owner',
  editor: 'Editor',
  viewer: 'Viewer',
};

/** "You are …" on the project page. */
export const ROLE_AS_YOU: Record<Role, string> = {
  owner: 'the owner',
  editor: 'an editor',
  viewer: 'a viewer',
};

/** Who may change the project's files (post changes, restore, lock): the server's rule too. */
export function mayWrite(role: Role | undefined): boolean {
  return role === 'owner' || role === 'editor';
}
