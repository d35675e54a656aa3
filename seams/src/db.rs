//! The database seam: a sqlx `Any` pool chosen by URL (`sqlite://FILE` embedded,
//! `postgres://…` distributed), with the schema migrated at connect time. Queries are written once in the SQL both
//! backends speak: `$N` parameters, integer flags and Unix-second times.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};

pub type Db = sqlx::AnyPool;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a pool talks to, for the few queries that differ (text search).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend(db: &Db) -> Backend {
    match db.connect_options().database_url.scheme() {
        "postgres" | "postgresql" => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Connects without migrating (for roles that must not race migrations).
pub async fn connect_only(url: &str) -> Result<Db, DbError> {
    install_default_drivers();
    if is_postgres(url) {
        return Ok(AnyPoolOptions::new()
            .max_connections(16)
            // A database that stops answering fails a request in seconds (the breaker
            // then refuses the rest at once).
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // The server ends a statement stuck on a lock, and the transaction
                    // of a process that froze while holding one.
                    for limit in STATEMENT_LIMITS {
                        sqlx::query(limit).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?);
    }
    connect_sqlite(url).await
}

/// Time limits every PostgreSQL session runs under. A request has its own limit in
/// the HTTP layer; these bound work nobody waits on.
const STATEMENT_LIMITS: [&str; 2] = [
    "SET statement_timeout = '30s'",
    "SET idle_in_transaction_session_timeout = '60s'",
];

/// Applies pending migrations (`lectern migrate`, and every start of the embedded world).
pub async fn migrate(db: &Db) -> Result<(), DbError> {
    match backend(db) {
        Backend::Postgres => {
            // Rebuilding a large table may take longer than a statement's limit.
            let mut conn = db.acquire().await?;
            sqlx::query("SET statement_timeout = 0")
                .execute(&mut *conn)
                .await?;
            POSTGRES_MIGRATIONS.run(&mut *conn).await?;
            sqlx::query(STATEMENT_LIMITS[0]).execute(&mut *conn).await?;
        }
        Backend::Sqlite => SQLITE_MIGRATIONS.run(db).await?,
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("creating the database folder: {0}")]
    Io(#[from] std::io::Error),
}

/// Connects to the database a URL names and brings its schema up to date.
pub async fn connect(url: &str) -> Result<Db, DbError> {
    let db = connect_only(url).await?;
    migrate(&db).await?;
    Ok(db)
}

async fn connect_sqlite(url: &str) -> Result<Db, DbError> {
    let Some(rest) = url.strip_prefix("sqlite://") else {
        return Err(DbError::UnsupportedUrl(url.to_string()));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    let url = if query.contains("mode=") {
        url.to_string()
    } else if query.is_empty() {
        format!("{url}?mode=rwc")
    } else {
        format!("{url}&mode=rwc")
    };
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _| {
            Box::pin(async move {
                // WAL lets readers go on while a writer commits; the wait covers
                // writers from the other roles sharing the file.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("PRAGMA busy_timeout = 10000")
                    .execute(&mut *conn)
                    .await?;
                sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .connect(&url)
        .await?;
    Ok(pool)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn connects_migrates_and_reconnects() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/sub/lectern.db", dir.path().display());
        let db = super::connect(&url).await.unwrap();
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(n, 0);
        db.close().await;
        super::connect(&url).await.unwrap();
        assert!(super::connect("mysql://x").await.is_err());
    }
}
