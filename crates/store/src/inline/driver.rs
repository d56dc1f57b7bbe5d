//! The sqlx side of the driver: `Any`'s connection interface, the options the writer's
//! URL gives, and transactions.

use std::borrow::Cow;
use std::str::FromStr;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::any::{
    AnyArguments, AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo,
};
use sqlx::{Any, Describe, Either, Error};
use sqlx_core::any::AnyConnectionBackend;

use super::typed::InlineSqlite;
use super::{InlineConnection, SCHEME};

impl AnyConnectionBackend for InlineConnection {
    fn name(&self) -> &str {
        "SQLite"
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, Result<(), Error>> {
        Box::pin(InlineConnection::close(*self))
    }

    fn close_hard(self: Box<Self>) -> BoxFuture<'static, Result<(), Error>> {
        self.close()
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn begin(&mut self, statement: Option<Cow<'static, str>>) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            let sql = match statement {
                Some(_) if self.depth > 0 => return Err(Error::InvalidSavePointStatement),
                Some(s) => s,
                None => sqlx_core::transaction::begin_ansi_transaction_sql(self.depth),
            };
            self.execute(&sql).await?;
            self.depth += 1;
            Ok(())
        })
    }

    fn commit(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if self.depth > 0 {
                let sql = sqlx_core::transaction::commit_ansi_transaction_sql(self.depth);
                self.execute(&sql).await?;
                self.depth -= 1;
            }
            Ok(())
        })
    }

    fn rollback(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            if self.depth > 0 {
                let sql = sqlx_core::transaction::rollback_ansi_transaction_sql(self.depth);
                self.execute(&sql).await?;
                self.depth -= 1;
            }
            Ok(())
        })
    }

    fn start_rollback(&mut self) {
        if self.depth > 0 {
            // Here if nothing is pending on the disk thread (a rollback syncs nothing),
            // else queued there behind it; either way before any later statement.
            let sql = sqlx_core::transaction::rollback_ansi_transaction_sql(self.depth);
            if let Some(Err(e)) = futures::FutureExt::now_or_never(self.run(&sql, Vec::new())) {
                tracing::warn!(error = %e, "rolling back a dropped transaction failed");
            }
            self.depth -= 1;
        }
    }

    fn get_transaction_depth(&self) -> usize {
        self.depth
    }

    fn shrink_buffers(&mut self) {}

    fn flush(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn should_flush(&self) -> bool {
        false
    }

    fn fetch_many<'q>(
        &'q mut self,
        query: &'q str,
        _persistent: bool,
        arguments: Option<AnyArguments<'q>>,
    ) -> BoxStream<'q, Result<Either<AnyQueryResult, AnyRow>, Error>> {
        let results = self.fetch(query, arguments);
        stream::once(results)
            .flat_map(|r| match r {
                Ok(items) => stream::iter(items.into_iter().map(Ok)).left_stream(),
                Err(e) => stream::iter(std::iter::once(Err(e))).right_stream(),
            })
            .boxed()
    }

    fn fetch_optional<'q>(
        &'q mut self,
        query: &'q str,
        _persistent: bool,
        arguments: Option<AnyArguments<'q>>,
    ) -> BoxFuture<'q, Result<Option<AnyRow>, Error>> {
        let results = self.fetch(query, arguments);
        Box::pin(async move {
            Ok(results.await?.into_iter().find_map(|r| match r {
                Either::Right(row) => Some(row),
                Either::Left(_) => None,
            }))
        })
    }

    fn prepare_with<'c, 'q: 'c>(
        &'c mut self,
        _sql: &'q str,
        _parameters: &[AnyTypeInfo],
    ) -> BoxFuture<'c, Result<AnyStatement<'q>, Error>> {
        Box::pin(async { Err(unsupported("prepared statement handles")) })
    }

    fn describe<'q>(&'q mut self, _sql: &'q str) -> BoxFuture<'q, Result<Describe<Any>, Error>> {
        Box::pin(async { Err(unsupported("describe")) })
    }
}

pub(super) fn unsupported(what: &str) -> Error {
    Error::AnyDriverError(format!("paybridge's SQLite driver does not offer {what}").into())
}

/// Where the writer's connection opens: `sqlite-inline://<path>[?…]`. Of the query,
/// only `pb_durability=<id>` is read: the [`super::Durability`] that `Db::connect` left
/// for this connection (`durable::hand_over`), which then makes its commits durable.
/// sqlx's SQLite options (`mode=rwc` and the rest) are not: the file exists by then,
/// and the writer sets its pragmas itself.
#[derive(Debug, Clone)]
pub struct InlineOptions {
    path: String,
    durability: Option<u64>,
}

impl InlineOptions {
    /// The writer's URL for a normalised `sqlite://` one.
    pub(crate) fn url_for(sqlite_url: &str, durability: Option<u64>) -> String {
        let rest = sqlite_url
            .strip_prefix("sqlite://")
            .or_else(|| sqlite_url.strip_prefix("sqlite:"))
            .unwrap_or(sqlite_url);
        match durability {
            None => format!("{SCHEME}://{rest}"),
            Some(id) => {
                let sep = if rest.contains('?') { '&' } else { '?' };
                format!("{SCHEME}://{rest}{sep}pb_durability={id}")
            }
        }
    }
}

impl FromStr for InlineOptions {
    type Err = Error;

    fn from_str(url: &str) -> Result<Self, Error> {
        let rest = url
            .strip_prefix("sqlite-inline://")
            .or_else(|| url.strip_prefix("sqlite-inline:"))
            .ok_or_else(|| Error::Configuration(format!("not a {SCHEME} URL").into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        // The last one: `url_for` appends it after whatever the operator's URL held.
        let durability = query
            .split('&')
            .rev()
            .find_map(|kv| kv.strip_prefix("pb_durability="))
            .map(|id| {
                id.parse::<u64>()
                    .map_err(|_| Error::Configuration("pb_durability is not an id".into()))
            })
            .transpose()?;
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|e| Error::Configuration(e.into()))?;
        if path.is_empty() {
            return Err(Error::Configuration("the SQLite URL names no file".into()));
        }
        Ok(InlineOptions {
            path: path.into_owned(),
            durability,
        })
    }
}

impl<'a> TryFrom<&'a AnyConnectOptions> for InlineOptions {
    type Error = Error;

    fn try_from(opts: &'a AnyConnectOptions) -> Result<Self, Error> {
        opts.database_url.as_str().parse()
    }
}

impl sqlx::ConnectOptions for InlineOptions {
    type Connection = InlineConnection;

    fn from_url(url: &url::Url) -> Result<Self, Error> {
        url.as_str().parse()
    }

    fn connect(&self) -> BoxFuture<'_, Result<InlineConnection, Error>> {
        let durability = self.durability.map(super::durable::take);
        let path = self.path.clone();
        Box::pin(async move {
            match durability {
                Some(None) => Err(Error::Configuration(
                    "the writer's Durability was taken already, or never left".into(),
                )),
                Some(d) => InlineConnection::open(path, d).await,
                None => InlineConnection::open(path, None).await,
            }
        })
    }

    fn log_statements(self, _level: log_level::LevelFilter) -> Self {
        self
    }

    fn log_slow_statements(
        self,
        _level: log_level::LevelFilter,
        _duration: std::time::Duration,
    ) -> Self {
        self
    }
}

mod log_level {
    pub use log::LevelFilter;
}

impl sqlx::Connection for InlineConnection {
    type Database = InlineSqlite;
    type Options = InlineOptions;

    fn close(self) -> BoxFuture<'static, Result<(), Error>> {
        AnyConnectionBackend::close(Box::new(self))
    }

    fn close_hard(self) -> BoxFuture<'static, Result<(), Error>> {
        AnyConnectionBackend::close(Box::new(self))
    }

    fn ping(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        AnyConnectionBackend::ping(self)
    }

    fn begin(&mut self) -> BoxFuture<'_, Result<sqlx::Transaction<'_, InlineSqlite>, Error>> {
        sqlx::Transaction::begin(self, None)
    }

    fn shrink_buffers(&mut self) {}

    fn flush(&mut self) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async { Ok(()) })
    }

    fn should_flush(&self) -> bool {
        false
    }
}

pub struct InlineTransactionManager;

impl sqlx::TransactionManager for InlineTransactionManager {
    type Database = InlineSqlite;

    fn begin<'conn>(
        conn: &'conn mut InlineConnection,
        statement: Option<Cow<'static, str>>,
    ) -> BoxFuture<'conn, Result<(), Error>> {
        AnyConnectionBackend::begin(conn, statement)
    }

    fn commit(conn: &mut InlineConnection) -> BoxFuture<'_, Result<(), Error>> {
        AnyConnectionBackend::commit(conn)
    }

    fn rollback(conn: &mut InlineConnection) -> BoxFuture<'_, Result<(), Error>> {
        AnyConnectionBackend::rollback(conn)
    }

    fn start_rollback(conn: &mut InlineConnection) {
        AnyConnectionBackend::start_rollback(conn)
    }

    fn get_transaction_depth(conn: &InlineConnection) -> usize {
        conn.depth
    }
}
