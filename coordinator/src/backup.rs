//! `asdsweep db backup`: an online, consistent copy of a SQLite queue database.
//!
//! SQLite's `VACUUM INTO` writes a snapshot of the database as one transaction sees it, so a
//! coordinator may go on writing meanwhile (its write-ahead log is read, never copied
//! half-way). The copy is written under a temporary name beside the target and renamed into
//! place when complete, so an interrupted backup leaves no file that looks finished. The
//! source is opened read-only and never migrated. Postgres has its own tools (`pg_dump`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};

use crate::error::{Error, Result};
use crate::server::redact;

/// Copies the SQLite database at `url` (`sqlite://PATH…`) into the new file `dest`; returns
/// the copy's size in bytes. Refuses a Postgres URL (naming `pg_dump`) and an existing `dest`.
pub async fn backup_sqlite(url: &str, dest: &Path) -> Result<u64> {
    if !url.starts_with("sqlite:") {
        return Err(Error::InvalidArgument(format!(
            "db backup copies SQLite databases; {} is not one (back Postgres up with pg_dump, e.g. `pg_dump -Fc -f FILE DBNAME`, or its continuous archiving)",
            redact(url)
        )));
    }
    let source = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if !Path::new(source).is_file() {
        return Err(Error::InvalidArgument(format!(
            "{source}: no such database file (from --db {url})"
        )));
    }
    if dest.exists() {
        return Err(Error::InvalidArgument(format!(
            "{} exists: a backup goes to a new file",
            dest.display()
        )));
    }
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.sqlx_logging(false)
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10));
    opts.map_sqlx_sqlite_opts(|o| {
        o.read_only(true)
            .create_if_missing(false)
            .busy_timeout(Duration::from_secs(10))
    });
    let db = Database::connect(opts).await?;
    let tmp = temporary_beside(dest)?;
    let copied = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "VACUUM INTO ?",
            [tmp.to_string_lossy().into_owned().into()],
        ))
        .await;
    db.close().await?;
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    let finished = copied
        .map_err(Error::from)
        .and_then(|_| std::fs::metadata(&tmp).map_err(io(&tmp)))
        .and_then(|m| {
            // Renaming does not replace a file that appeared meanwhile: hard-link, then unlink.
            std::fs::hard_link(&tmp, dest).map_err(io(dest))?;
            Ok(m.len())
        });
    let _ = std::fs::remove_file(&tmp);
    finished
}

/// A name for the copy in progress, in `dest`'s directory (which must exist).
fn temporary_beside(dest: &Path) -> Result<PathBuf> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{}: no such directory for the backup",
            dir.display()
        )));
    }
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    Ok(dir.join(format!(".{name}.partial-{}", std::process::id())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn a_backup_of_a_database_in_use_holds_every_row_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
        let store = Store::open(&url, None).await.unwrap();
        let count = |db: &sea_orm::DatabaseConnection| {
            let db = db.clone();
            async move {
                db.query_one_raw(Statement::from_string(
                    DbBackend::Sqlite,
                    "SELECT COUNT(*) AS n FROM seaql_migrations",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
            }
        };
        let migrations = count(store.connection()).await;
        assert!(migrations > 0);

        // The store stays open (its log not yet written back): the copy still has it all.
        let dest = dir.path().join("backup.db");
        let bytes = backup_sqlite(&url, &dest).await.unwrap();
        assert_eq!(bytes, std::fs::metadata(&dest).unwrap().len());
        let copy = Store::open(&format!("sqlite://{}", dest.display()), None)
            .await
            .unwrap();
        assert_eq!(count(copy.connection()).await, migrations);
        copy.close().await.unwrap();
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let err = backup_sqlite(&url, &dest).await.unwrap_err().to_string();
        assert!(err.contains("backup.db exists"), "{err}");
        let err = backup_sqlite("postgres://u:pw@h/db", &dir.path().join("x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("pg_dump") && !err.contains("pw"), "{err}");
        let missing = format!("sqlite://{}", dir.path().join("none.db").display());
        assert!(
            backup_sqlite(&missing, &dir.path().join("y"))
                .await
                .is_err()
        );
        store.close().await.unwrap();
    }
}
