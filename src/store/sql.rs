//! SQL implementations of [`super::Store`] for SQLite and PostgreSQL.

use std::sync::Arc;

use super::{Store, StoreError, StoreOptions};

pub async fn open(_options: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    todo!("store implementation")
}
