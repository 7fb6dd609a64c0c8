//! What sql-sink and sql-source share: which database a URL names, the plain SQL names both
//! put into statements, and (feature `postgres`) PostgreSQL's connection settings, a shown
//! address without the password, and which of its errors are worth waiting out.

use runnel_config::FieldError;

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Postgres(String),
    /// The file (or `:memory:`).
    Sqlite(String),
}

impl Database {
    /// The database `url` names: `postgres://`, `postgresql://` or `sqlite:PATH`
    /// (`sqlite://PATH`, `sqlite::memory:`); `verb` says what the connector does with it,
    /// for the error.
    pub fn from_url(url: &str, verb: &str) -> Result<Database, FieldError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_string()));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(FieldError::new(
                    "url",
                    "sqlite: needs a file (sqlite:/var/lib/app.db) or :memory:",
                ));
            }
            return Ok(Database::Sqlite(path.to_string()));
        }
        let scheme = url.split(':').next().unwrap_or_default();
        Err(FieldError::new(
            "url",
            format!(
                "{scheme:?} is not a database this connector {verb}: give postgres://, postgresql:// or sqlite:"
            ),
        ))
    }
}

/// A name that goes into SQL as it is (unquoted, as Fluvio's sink writes names): letters,
/// digits, `_` and `$`, not starting with a digit, optionally `schema.name`.
pub fn plain_name(what: &str, n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.split('.').count() <= 2
        && n.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {n:?} is not a plain SQL name (letters, digits, _ and $, optionally schema.name)"
        ))
    }
}

#[cfg(feature = "postgres")]
pub mod pg {
    //! PostgreSQL through tokio-postgres.

    use std::time::Duration;

    use tokio_postgres::{Config, error::SqlState};

    /// The client settings of `url` with `connect_timeout` and, unless the URL names one,
    /// `application_name`; and the address to show in logs (`user@host:port/db`, never
    /// the password).
    pub fn config(
        url: &str,
        connect_timeout: Duration,
        application_name: &str,
    ) -> Result<(Config, String), String> {
        let mut config: Config = url
            .parse()
            .map_err(|e| format!("url: not a PostgreSQL URL: {e}"))?;
        config.connect_timeout(connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        let host = config
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let shown = format!(
            "{}@{host}:{port}/{}",
            config.get_user().unwrap_or(""),
            config.get_dbname().unwrap_or("")
        );
        Ok((config, shown))
    }

    /// Whether a failure is the connection's or the server's state (try again later)
    /// rather than the statement's.
    pub fn transient(e: &tokio_postgres::Error) -> bool {
        match e.code() {
            None => true,
            Some(code) => {
                let c = code.code();
                c.starts_with("08")
                    || c.starts_with("40")
                    || c.starts_with("53")
                    || c.starts_with("57")
                    || c.starts_with("58")
                    || *code == SqlState::LOCK_NOT_AVAILABLE
            }
        }
    }

    /// A refused login or a database that does not exist: waiting will not change it.
    pub fn refused(e: &tokio_postgres::Error) -> bool {
        e.code()
            .is_some_and(|c| c.code().starts_with("28") || *c == SqlState::INVALID_CATALOG_NAME)
    }

    /// The server's message (and its detail), or the client's chain of causes.
    pub fn describe(e: &tokio_postgres::Error) -> String {
        match e.as_db_error() {
            Some(db) => match db.detail() {
                Some(d) => format!("{} ({d})", db.message()),
                None => db.message().to_string(),
            },
            None => runnel_runtime::chain(e),
        }
    }
}
