import type { StoreEvent } from '../model.ts'
import { ALL_TENANTS } from '../tokens.ts'
import type { Role } from '../tokens.ts'

/** Who is looking at events: an API request's principal, or a webhook's owner. */
export interface Viewer {
  /** A tenant, or `*` for an admin of all tenants. */
  tenant: string
  role?: Role
}

/**
 * The one rule for which events a viewer may see, used by the change feed,
 * the live stream and webhooks alike: a tenant's own events; events of
 * tenant `*` (agents going on- and offline) only for admins, as
 * GET /v1/agents is; and everything for an admin of all tenants.
 */
export function canSee (viewer: Viewer, event: StoreEvent): boolean {
  if (viewer.tenant === ALL_TENANTS) return true
  if (event.tenant === ALL_TENANTS) return viewer.role === 'admin'
  return event.tenant === viewer.tenant
}

/** The viewer of an authenticated request (its principal). */
export function viewerOf (req: { principal: { tenant: string, role: Role } }): Viewer {
  return { tenant: req.principal.tenant, role: req.principal.role }
}
