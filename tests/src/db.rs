//! A fresh, isolated database per test, on either backend.
//!
//! SQLite: a file in a new temporary directory. PostgreSQL: a new schema under
//! `TEST_DATABASE_URL`, selected through the connection's `search_path` (the URL's `options`
//! parameter, which sqlx passes to the server as `-c search_path=…`), so every object the store
//! creates, the `_sqlx_migrations` table included, lands in that schema and tests run in
//! parallel without seeing each other's rows. A schema per test rather than a database per test:
//! `create schema` is a catalog insert, `create database` copies a template and is much slower.

use sqlx::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// One test's database; dropping it removes it (the temporary directory, or the schema).
pub struct TestDb {
    /// What to give `chat_shared::store::connect` or `--database-url`.
    pub url: String,
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: `(TEST_DATABASE_URL, schema)`, for the cleanup on drop.
    schema: Option<(String, String)>,
}

impl TestDb {
    /// The PostgreSQL schema holding this test's tables (`None` on SQLite).
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_ref().map(|(_, schema)| schema.as_str())
    }
}

/// Prefix of the schemas made here; the creation time (Unix seconds) follows it, so schemas
/// left behind by a killed test process can be recognised as stale and dropped later.
const SCHEMA_PREFIX: &str = "chat_t_";
/// A schema older than this is left over from an earlier run (no test runs this long).
const STALE_AFTER: Duration = Duration::from_secs(3600);

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static JANITOR: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// A fresh empty database for one test; `None` (with the reason printed) when the PostgreSQL
/// leg cannot run. With `REQUIRE_POSTGRES=1` (CI) a missing `TEST_DATABASE_URL` fails instead.
pub async fn fresh_db(backend: Backend) -> Option<TestDb> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("chat.db").display());
            Some(TestDb {
                url,
                backend,
                _dir: Some(dir),
                schema: None,
            })
        }
        Backend::Postgres => {
            let Ok(base) = std::env::var("TEST_DATABASE_URL") else {
                assert!(
                    std::env::var("REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set: the PostgreSQL leg \
                     must run (e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
                );
                crate::say("SKIP postgres leg: TEST_DATABASE_URL is not set");
                return None;
            };
            let mut admin = sqlx::PgConnection::connect(&base)
                .await
                .unwrap_or_else(|e| panic!("TEST_DATABASE_URL ({base}) unreachable: {e}"));
            JANITOR.get_or_init(|| drop_stale_schemas(&mut admin)).await;
            // Only [a-z0-9_]: safe to splice into SQL and into the URL unquoted.
            let schema = format!(
                "{SCHEMA_PREFIX}{}_{}_{}",
                unix_secs(),
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create schema {schema}")))
                .execute(&mut admin)
                .await
                .expect("create schema");
            admin.close().await.ok();
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
            Some(TestDb {
                url,
                backend,
                _dir: None,
                schema: Some((base, schema)),
            })
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, schema)) = self.schema.take() else {
            return;
        };
        // Drop cannot await, and the test's runtime may be single-threaded (blocking on it
        // would deadlock), so the cleanup gets its own thread and runtime. Failures are ignored:
        // a schema left behind is dropped as stale by a later run.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let Ok(mut conn) = sqlx::PgConnection::connect(&base).await else {
                    return;
                };
                drop_schema(&mut conn, &schema).await;
                conn.close().await.ok();
            });
        });
        cleanup.join().ok();
    }
}

/// Drops the schemas of earlier runs that outlived their tests (killed process, or a cleanup
/// that timed out), once per test process.
async fn drop_stale_schemas(conn: &mut sqlx::PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("select nspname::text from pg_namespace where starts_with(nspname, $1)")
            .bind(SCHEMA_PREFIX)
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    let now = unix_secs();
    for name in names {
        let created = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| now.saturating_sub(created) > STALE_AFTER.as_secs()) {
            drop_schema(conn, &name).await;
        }
    }
}

async fn drop_schema(conn: &mut sqlx::PgConnection, schema: &str) {
    // A connection still inside a transaction on these tables (a test that panicked mid-way)
    // would block the drop: give up quickly instead of hanging the test run.
    let sql = format!("set lock_timeout = '2s'; drop schema if exists {schema} cascade");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await
        .ok();
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
