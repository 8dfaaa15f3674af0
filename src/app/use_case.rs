//! The use cases the application offers, each with the scope it needs. A transport names the
//! use case a request is for (REST by its route, NATS by its subject) and the application
//! decides what that requires.

use crate::auth::Scope;

/// One use case of the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UseCase {
    List,
    Get,
    Create,
    Update,
    Delete,
    Submit,
    Test,
    Pause,
    Resume,
    Activate,
    Health,
    History,
    Audit,
    ListWindows,
    GetWindow,
    CreateWindow,
    UpdateWindow,
    DeleteWindow,
    Export,
    Import,
    GetStatusPage,
    PutStatusPage,
}

impl UseCase {
    pub const ALL: [UseCase; 22] = [
        UseCase::List,
        UseCase::Get,
        UseCase::Create,
        UseCase::Update,
        UseCase::Delete,
        UseCase::Submit,
        UseCase::Test,
        UseCase::Pause,
        UseCase::Resume,
        UseCase::Activate,
        UseCase::Health,
        UseCase::History,
        UseCase::Audit,
        UseCase::ListWindows,
        UseCase::GetWindow,
        UseCase::CreateWindow,
        UseCase::UpdateWindow,
        UseCase::DeleteWindow,
        UseCase::Export,
        UseCase::Import,
        UseCase::GetStatusPage,
        UseCase::PutStatusPage,
    ];

    /// The use case's name; also its NATS endpoint name where NATS offers it.
    pub fn name(self) -> &'static str {
        match self {
            UseCase::List => "list",
            UseCase::Get => "get",
            UseCase::Create => "create",
            UseCase::Update => "update",
            UseCase::Delete => "delete",
            UseCase::Submit => "submit",
            UseCase::Test => "test",
            UseCase::Pause => "pause",
            UseCase::Resume => "resume",
            UseCase::Activate => "activate",
            UseCase::Health => "health",
            UseCase::History => "history",
            UseCase::Audit => "audit",
            UseCase::ListWindows => "list_maintenance_windows",
            UseCase::GetWindow => "get_maintenance_window",
            UseCase::CreateWindow => "create_maintenance_window",
            UseCase::UpdateWindow => "update_maintenance_window",
            UseCase::DeleteWindow => "delete_maintenance_window",
            UseCase::Export => "export",
            UseCase::Import => "import",
            UseCase::GetStatusPage => "get_status_page",
            UseCase::PutStatusPage => "put_status_page",
        }
    }

    /// Reading an integration needs the read scope; changes, tests and the audit trail need
    /// admin (which implies read).
    pub fn scope(self) -> Scope {
        match self {
            UseCase::List
            | UseCase::Get
            | UseCase::Health
            | UseCase::History
            | UseCase::ListWindows
            | UseCase::GetWindow
            | UseCase::GetStatusPage => Scope::Read,
            UseCase::Create
            | UseCase::Update
            | UseCase::Delete
            | UseCase::Submit
            | UseCase::Test
            | UseCase::Pause
            | UseCase::Resume
            | UseCase::Activate
            | UseCase::Audit
            | UseCase::CreateWindow
            | UseCase::UpdateWindow
            | UseCase::DeleteWindow
            | UseCase::Export
            | UseCase::Import
            | UseCase::PutStatusPage => Scope::Admin,
        }
    }

    /// Whether the use case acts on one integration, named by its id.
    pub fn takes_id(self) -> bool {
        !matches!(
            self,
            UseCase::List
                | UseCase::Create
                | UseCase::Audit
                | UseCase::ListWindows
                | UseCase::GetWindow
                | UseCase::CreateWindow
                | UseCase::UpdateWindow
                | UseCase::DeleteWindow
                | UseCase::Export
                | UseCase::Import
                | UseCase::GetStatusPage
                | UseCase::PutStatusPage
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        let reads: Vec<&str> = UseCase::ALL
            .iter()
            .filter(|use_case| use_case.scope() == Scope::Read)
            .map(|use_case| use_case.name())
            .collect();
        assert_eq!(
            reads,
            [
                "list",
                "get",
                "health",
                "history",
                "list_maintenance_windows",
                "get_maintenance_window",
                "get_status_page"
            ]
        );
        assert!(!UseCase::List.takes_id() && UseCase::Pause.takes_id());
    }
}
