// What each role may do: DESIGN.md section 8's table, as host/src/tenants/role.rs applies
// it. The console shows an action only when the signed-in key's role (GET /v1/whoami) may
// take it; the server checks every call anyway (a 403 is shown as an error).
import type { Role } from './api';

export type Action =
  | 'administer' | 'manage_keys' | 'read_functions' | 'write_functions' | 'invoke'
  | 'read_executions' | 'control_executions' | 'callbacks' | 'manage_webhooks' | 'manage_schedules';

export function may(role: Role | undefined, a: Action): boolean {
  switch (role) {
    case 'admin': return true;
    case 'owner': return a !== 'administer';
    case 'developer': return a !== 'administer' && a !== 'manage_keys';
    case 'invoker': return a === 'invoke' || a === 'read_executions';
    case 'callback': return a === 'callbacks';
    case 'reader': return a === 'read_functions' || a === 'read_executions';
    default: return false;
  }
}
