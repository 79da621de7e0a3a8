//! Roles and what each may do: the table of DESIGN.md section 8, as one function.

use serde::{Deserialize, Serialize};

/// One role per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, in every tenant: tenants, quotas, any tenant's keys, `/metrics`.
    Admin,
    /// Everything inside its own tenant, including its keys (not `admin` keys).
    Owner,
    /// Functions, invoke, executions (read, stop), callbacks, webhooks, schedules.
    Developer,
    /// Invoke, read executions.
    Invoker,
    /// Complete and heartbeat callbacks only: the key an external system holds.
    Callback,
    /// Read functions and executions.
    Reader,
}

/// What a request does, as far as permissions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create, change, delete tenants and their quotas; keys of any tenant; metrics.
    Administer,
    /// Create, list and revoke the keys of one's own tenant.
    ManageKeys,
    ReadFunctions,
    /// Upload, configure, delete functions.
    WriteFunctions,
    Invoke,
    ReadExecutions,
    /// Stop, redrive and fork executions (and start bulk redrive jobs).
    ControlExecutions,
    /// Complete, fail and heartbeat callbacks.
    Callbacks,
    /// Create, change, delete webhooks; read and retry their deliveries.
    ManageWebhooks,
    /// Create, change, pause, trigger, delete and read schedules.
    ManageSchedules,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Owner,
        Role::Developer,
        Role::Invoker,
        Role::Callback,
        Role::Reader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Owner => "owner",
            Role::Developer => "developer",
            Role::Invoker => "invoker",
            Role::Callback => "callback",
            Role::Reader => "reader",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a key of this role may do `a` (inside the tenant it acts in).
    pub fn may(self, a: Action) -> bool {
        use Action as A;
        match self {
            Role::Admin => true,
            Role::Owner => a != A::Administer,
            Role::Developer => !matches!(a, A::Administer | A::ManageKeys),
            Role::Invoker => matches!(a, A::Invoke | A::ReadExecutions),
            Role::Callback => a == A::Callbacks,
            Role::Reader => matches!(a, A::ReadFunctions | A::ReadExecutions),
        }
    }
}

impl Action {
    pub fn describe(self) -> &'static str {
        match self {
            Action::Administer => "administer tenants",
            Action::ManageKeys => "manage API keys",
            Action::ReadFunctions => "read functions",
            Action::WriteFunctions => "change functions",
            Action::Invoke => "invoke functions",
            Action::ReadExecutions => "read executions",
            Action::ControlExecutions => "stop, redrive or fork executions",
            Action::Callbacks => "complete callbacks",
            Action::ManageWebhooks => "manage webhooks",
            Action::ManageSchedules => "manage schedules",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of DESIGN.md section 8, row by row: the actions each role may take.
    #[test]
    fn roles_may_what_the_design_table_says() {
        use Action as A;
        let all = [
            A::Administer,
            A::ManageKeys,
            A::ReadFunctions,
            A::WriteFunctions,
            A::Invoke,
            A::ReadExecutions,
            A::ControlExecutions,
            A::Callbacks,
            A::ManageWebhooks,
            A::ManageSchedules,
        ];
        let table: [(Role, &[Action]); 6] = [
            (Role::Admin, &all),
            (Role::Owner, &all[1..]),
            (Role::Developer, &all[2..]),
            (Role::Invoker, &[A::Invoke, A::ReadExecutions]),
            (Role::Callback, &[A::Callbacks]),
            (Role::Reader, &[A::ReadFunctions, A::ReadExecutions]),
        ];
        for (role, allowed) in table {
            for a in all {
                assert_eq!(role.may(a), allowed.contains(&a), "{role:?} {a:?}");
            }
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
