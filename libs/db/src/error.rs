//! Postgres errors, classified the way callers need to react to them.

/// A storage failure, classified.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("row not found")]
    NotFound,
    /// A unique constraint was violated; carries the constraint name.
    #[error("already exists ({0})")]
    UniqueViolation(String),
    /// A foreign key or check constraint refused the write.
    #[error("constraint violated ({0})")]
    ConstraintViolation(String),
    /// Serialization failure or deadlock: the transaction may be retried.
    #[error("transaction conflict: {0}")]
    Retryable(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The migrations cannot be applied (e.g. an applied one was edited).
    #[error("migrations: {0}")]
    Migration(String),
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl DbError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DbError::Retryable(_))
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => DbError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                DbError::Unavailable(e.to_string())
            }
            sqlx::Error::Database(db) => {
                let constraint = db.constraint().unwrap_or_default().to_owned();
                match db.code().as_deref() {
                    Some("23505") => DbError::UniqueViolation(constraint),
                    Some("23503") | Some("23514") | Some("23502") => {
                        DbError::ConstraintViolation(constraint)
                    }
                    Some("40001") | Some("40P01") => DbError::Retryable(db.message().to_owned()),
                    Some(code) if code.starts_with("08") || code.starts_with("57P") => {
                        DbError::Unavailable(db.message().to_owned())
                    }
                    _ => DbError::Other(e),
                }
            }
            _ => DbError::Other(e),
        }
    }
}

/// True when `e` is a unique violation (of any constraint).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
