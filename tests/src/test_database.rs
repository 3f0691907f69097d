//! A fresh database per test: a new Postgres database on the test server, or a SQLite file in
//! a temporary directory. Both are removed when the test ends.

use std::path::PathBuf;

use proctor_server::config::DatabaseTarget;
use sea_orm::{ConnectionTrait, Database};
use url::Url;

use crate::infra::unique_suffix;

/// A database that exists only for one test.
pub struct TestDatabase {
    target: DatabaseTarget,
    cleanup: Cleanup,
}

enum Cleanup {
    DropPostgres {
        admin_url: String,
        name: String,
    },
    /// Held only so the directory lives as long as the database.
    RemoveDirectory {
        _directory: tempfile::TempDir,
    },
}

impl TestDatabase {
    /// Creates `proctor_test_<unique>` on the Postgres server at `admin_url`.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn postgres(admin_url: &str) -> Self {
        let name = format!("proctor_test_{}", unique_suffix());
        let admin = Database::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("connect to the test Postgres ({admin_url}): {e}"));
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create a test database");
        admin.close().await.expect("close the admin connection");
        let mut url = Url::parse(admin_url).expect("PROCTOR_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            target: DatabaseTarget::Postgres { url },
            cleanup: Cleanup::DropPostgres {
                admin_url: admin_url.to_owned(),
                name,
            },
        }
    }

    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        Self {
            target: DatabaseTarget::Sqlite {
                path: directory.path().join("proctor.db"),
            },
            cleanup: Cleanup::RemoveDirectory {
                _directory: directory,
            },
        }
    }

    /// Where the database is, as the server's settings take it.
    pub fn target(&self) -> &DatabaseTarget {
        &self.target
    }

    /// The connection URL (for child processes and direct connections).
    pub fn url(&self) -> String {
        match &self.target {
            DatabaseTarget::Postgres { url } => url.to_string(),
            DatabaseTarget::Sqlite { path } => format!("sqlite://{}", path.display()),
        }
    }

    /// The SQLite file, for SQLite databases.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        match &self.target {
            DatabaseTarget::Sqlite { path } => Some(path.clone()),
            DatabaseTarget::Postgres { .. } => None,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Cleanup::DropPostgres { admin_url, name } = &self.cleanup else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived
        // thread with its own runtime does the clean-up. FORCE ends the server's connections.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let admin = Database::connect(&admin_url).await.ok()?;
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: could not drop test database {}", self.url());
        }
    }
}
