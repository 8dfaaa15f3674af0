//! Opaque pagination cursors (base64url of a small JSON position) and the page body that
//! carries them.
//!
//! A cursor is only a keyset position, never an authorization: the tenant always comes from
//! the token, so a cursor copied from another tenant's page reveals and reaches nothing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppError;
use crate::store::Page;

/// Longer cursors were not issued by this API; refuse them before decoding.
pub const MAX_CURSOR_CHARS: usize = 1024;

/// One page of a list: the items and the cursor of the next page, `null` on the last.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageBody<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> PageBody<T> {
    /// The body of `page`; when more follows, the cursor holds `position` of its last item.
    pub fn from_page<P: Serialize>(page: Page<T>, position: impl FnOnce(&T) -> P) -> Self {
        let next_cursor = page
            .items
            .last()
            .filter(|_| page.has_more)
            .map(|last| encode(&position(last)));
        PageBody {
            items: page.items,
            next_cursor,
        }
    }
}

/// Position in the integration list, ordered by `(name, integrationId)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListCursor {
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "i")]
    pub id: Uuid,
}

/// Position in a tenant's audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditCursor {
    #[serde(rename = "s")]
    pub sequence: i64,
}

pub fn encode<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).expect("a cursor always serializes"))
}

pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T, AppError> {
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(AppError::InvalidCursor);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| AppError::InvalidCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| AppError::InvalidCursor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let position = ListCursor {
            name: "harbor ✓".into(),
            id: Uuid::now_v7(),
        };
        let cursor = encode(&position);
        assert!(!cursor.contains('=') && !cursor.contains('+') && !cursor.contains('/'));
        assert_eq!(decode::<ListCursor>(&cursor).unwrap(), position);
        let audit = encode(&AuditCursor { sequence: 42 });
        assert_eq!(decode::<AuditCursor>(&audit).unwrap().sequence, 42);
        for bad in [
            "",
            "not a cursor",
            "e30",                             // {}
            &audit,                            // another list's cursor
            &URL_SAFE_NO_PAD.encode(b"[1,2]"), // not an object
            &"A".repeat(MAX_CURSOR_CHARS + 1), // too long
        ] {
            assert!(
                matches!(decode::<ListCursor>(bad), Err(AppError::InvalidCursor)),
                "{bad}"
            );
        }
    }
}
