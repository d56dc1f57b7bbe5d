//! Running statements on the writer's `rusqlite` connection, with values, parameters
//! and errors as sqlx's own SQLite driver has them for `Any`.

use std::borrow::Cow;
use std::ffi::c_int;
use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ffi, ToSql};
use sqlx::any::{AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::{Either, Error};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;

use super::{Inner, Results, STATEMENT_CACHE};

pub(super) struct Shape {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    columns: Vec<AnyColumn>,
    /// The kind a NULL in each column has: its declared type's, as sqlx's driver says.
    null_kinds: Vec<AnyTypeInfoKind>,
}

/// The `Any` kind of a declared column type, as sqlx's SQLite driver reads it.
fn declared_kind(decl: Option<&str>) -> AnyTypeInfoKind {
    let Some(d) = decl.map(str::to_ascii_lowercase) else {
        return AnyTypeInfoKind::Null;
    };
    match &*d {
        "int4" => AnyTypeInfoKind::Integer,
        "int8" => AnyTypeInfoKind::BigInt,
        "boolean" | "bool" | "date" | "time" | "datetime" | "timestamp" => AnyTypeInfoKind::Null,
        _ if d.contains("int") => AnyTypeInfoKind::BigInt,
        _ if d.contains("char") || d.contains("clob") || d.contains("text") => {
            AnyTypeInfoKind::Text
        }
        _ if d.contains("blob") => AnyTypeInfoKind::Blob,
        _ if d.contains("real") || d.contains("floa") || d.contains("doub") => {
            AnyTypeInfoKind::Double
        }
        _ => AnyTypeInfoKind::Null,
    }
}

pub(super) fn owned(v: AnyValueKind<'_>) -> AnyValueKind<'static> {
    match v {
        AnyValueKind::Text(t) => AnyValueKind::Text(Cow::Owned(t.into_owned())),
        AnyValueKind::Blob(b) => AnyValueKind::Blob(Cow::Owned(b.into_owned())),
        AnyValueKind::Null(k) => AnyValueKind::Null(k),
        AnyValueKind::Bool(b) => AnyValueKind::Bool(b),
        AnyValueKind::SmallInt(i) => AnyValueKind::SmallInt(i),
        AnyValueKind::Integer(i) => AnyValueKind::Integer(i),
        AnyValueKind::BigInt(i) => AnyValueKind::BigInt(i),
        AnyValueKind::Real(r) => AnyValueKind::Real(r),
        AnyValueKind::Double(d) => AnyValueKind::Double(d),
        other => other_value(other),
    }
}

fn other_value(v: AnyValueKind<'_>) -> AnyValueKind<'static> {
    // `AnyValueKind` is `#[non_exhaustive]`; sqlx 0.8 has no other kind.
    unreachable!("a value kind sqlx did not have when this driver was written: {v:?}")
}

/// One argument, bound as sqlx's SQLite driver binds it.
struct Bind<'a, 'q>(&'a AnyValueKind<'q>);

impl ToSql for Bind<'_, '_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            AnyValueKind::Null(_) => ValueRef::Null,
            AnyValueKind::Bool(b) => ValueRef::Integer(*b as i64),
            AnyValueKind::SmallInt(i) => ValueRef::Integer(*i as i64),
            AnyValueKind::Integer(i) => ValueRef::Integer(*i as i64),
            AnyValueKind::BigInt(i) => ValueRef::Integer(*i),
            AnyValueKind::Real(r) => ValueRef::Real(*r as f64),
            AnyValueKind::Double(d) => ValueRef::Real(*d),
            AnyValueKind::Text(t) => ValueRef::Text(t.as_bytes()),
            AnyValueKind::Blob(b) => ValueRef::Blob(b),
            other => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    format!("unsupported value {other:?}").into(),
                ))
            }
        }))
    }
}

/// Runs every statement of `sql`, in order, each bound from `args` as sqlx binds them
/// (`$N` and `?N` by number, a bare `?` by position across the statements).
pub(super) fn run(
    inner: &mut Inner,
    sql: &str,
    args: &[AnyValueKind<'_>],
) -> Result<Results, Error> {
    let mut out = Vec::new();
    if !may_hold_several(sql) {
        run_one(inner, sql, args, 0, &mut out)?;
        return Ok(out);
    }
    if let Some(ranges) = inner.splits.get(sql).cloned() {
        let mut offset = 0;
        for r in ranges.iter() {
            offset += run_one(inner, &sql[r.clone()], args, offset, &mut out)?;
        }
        return Ok(out);
    }
    // A text not seen before: find its statements one after another (each is run
    // before the next is prepared, as sqlx does, so that one may use what the one
    // before made), and keep where they are.
    let mut ranges = Vec::new();
    let (mut start, mut offset) = (0, 0);
    while let Some(len) = first_statement(&inner.conn, &sql[start..])? {
        let r = start..start + len;
        offset += run_one(inner, &sql[r.clone()], args, offset, &mut out)?;
        ranges.push(r);
        start += len;
    }
    if inner.splits.len() >= STATEMENT_CACHE {
        inner.splits.clear();
    }
    inner.splits.insert(sql.into(), ranges.into());
    Ok(out)
}

/// Whether a text may hold more than one statement: a `;` with more after it. (A `;`
/// in a literal makes a text look so; SQLite's parser then finds the one statement.)
pub(super) fn may_hold_several(sql: &str) -> bool {
    sql.trim_end().trim_end_matches(';').contains(';')
}

/// The length in bytes of the first statement of `sql` (with the `;` and the space
/// after it), or `None` if `sql` holds no more statements.
fn first_statement(conn: &rusqlite::Connection, sql: &str) -> Result<Option<usize>, Error> {
    if sql.trim().is_empty() {
        return Ok(None);
    }
    let len =
        c_int::try_from(sql.len()).map_err(|_| Error::Protocol("a statement over 2 GiB".into()))?;
    let mut stmt = std::ptr::null_mut();
    let mut tail = std::ptr::null();
    // SAFETY: `conn.handle()` is the open connection, used by this thread alone (the
    // caller holds its mutex); `sql` outlives the call and `len` is its length; the
    // statement made is finalized before returning.
    let (rc, used) = unsafe {
        let rc = ffi::sqlite3_prepare_v2(
            conn.handle(),
            sql.as_ptr().cast(),
            len,
            &mut stmt,
            &mut tail,
        );
        ffi::sqlite3_finalize(stmt);
        let used = if tail.is_null() {
            sql.len()
        } else {
            tail.cast::<u8>().offset_from(sql.as_ptr()) as usize
        };
        (rc, used)
    };
    if rc != ffi::SQLITE_OK {
        return Err(to_sqlx(rusqlite::Error::SqliteFailure(
            ffi::Error::new(rc),
            Some(conn_message(conn)),
        )));
    }
    if stmt.is_null() {
        // Only comments or white space were left.
        return Ok(None);
    }
    Ok(Some(used.max(1)))
}

fn conn_message(conn: &rusqlite::Connection) -> String {
    // SAFETY: as in `first_statement`; `sqlite3_errmsg` returns a NUL-terminated
    // string owned by the connection, copied before anything else runs on it.
    unsafe {
        std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(conn.handle()))
            .to_string_lossy()
            .into_owned()
    }
}

/// Runs one statement; returns how many positional (`?`) parameters it used.
fn run_one(
    inner: &mut Inner,
    sql: &str,
    args: &[AnyValueKind<'_>],
    offset: usize,
    out: &mut Results,
) -> Result<usize, Error> {
    let Inner { conn, shapes, .. } = inner;
    let mut stmt = match conn.prepare_cached(sql) {
        Ok(s) => s,
        Err(e) => return Err(to_sqlx(e)),
    };
    let mut positional = offset;
    for i in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(i) {
            Some(name) => {
                let digits = name.strip_prefix('?').or_else(|| name.strip_prefix('$'));
                match digits.and_then(|d| d.parse::<usize>().ok()) {
                    Some(n) => n,
                    None => {
                        return Err(Error::Protocol(format!("unsupported SQL parameter {name}")))
                    }
                }
            }
            None => {
                positional += 1;
                positional
            }
        };
        // As sqlx: parameters beyond the arguments given stay NULL.
        if n == 0 || n > args.len() {
            break;
        }
        stmt.raw_bind_parameter(i, Bind(&args[n - 1]))
            .map_err(to_sqlx)?;
    }
    let ncols = stmt.column_count();
    let shape = if ncols == 0 {
        None
    } else if let Some(s) = shapes.get(sql) {
        Some(s.clone())
    } else {
        let mut names = sqlx_core::HashMap::default();
        let mut columns = Vec::with_capacity(ncols);
        let mut null_kinds = Vec::with_capacity(ncols);
        for (i, column) in stmt.columns().into_iter().enumerate() {
            null_kinds.push(declared_kind(column.decl_type()));
            let name = UStr::new(column.name());
            names.insert(name.clone(), i);
            columns.push(AnyColumn {
                ordinal: i,
                name,
                type_info: AnyTypeInfo {
                    kind: AnyTypeInfoKind::Null,
                },
            });
        }
        let s = Arc::new(Shape {
            names: Arc::new(names),
            columns,
            null_kinds,
        });
        if shapes.len() >= STATEMENT_CACHE {
            shapes.clear();
        }
        shapes.insert(sql.into(), s.clone());
        Some(s)
    };
    {
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(to_sqlx)? {
            let shape = shape.as_ref().expect("a statement with rows has columns");
            let mut values = Vec::with_capacity(ncols);
            let mut columns = shape.columns.clone();
            for (i, column) in columns.iter_mut().enumerate() {
                let v = row.get_ref(i).map_err(to_sqlx)?;
                let kind = value_of(v, shape.null_kinds[i]).map_err(|e| Error::ColumnDecode {
                    index: column.name.to_string(),
                    source: e.into(),
                })?;
                column.type_info = AnyTypeInfo {
                    kind: kind_of(&kind),
                };
                values.push(AnyValue { kind });
            }
            out.push(Either::Right(AnyRow {
                column_names: shape.names.clone(),
                columns,
                values,
            }));
        }
    }
    out.push(Either::Left(AnyQueryResult {
        rows_affected: conn.changes(),
        last_insert_id: None,
    }));
    Ok(positional - offset)
}

fn value_of(
    v: ValueRef<'_>,
    null_kind: AnyTypeInfoKind,
) -> Result<AnyValueKind<'static>, std::str::Utf8Error> {
    Ok(match v {
        ValueRef::Null => AnyValueKind::Null(null_kind),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(f) => AnyValueKind::Double(f),
        ValueRef::Text(t) => AnyValueKind::Text(Cow::Owned(std::str::from_utf8(t)?.to_owned())),
        ValueRef::Blob(b) => AnyValueKind::Blob(Cow::Owned(b.to_vec())),
    })
}

fn kind_of(v: &AnyValueKind<'_>) -> AnyTypeInfoKind {
    match v {
        AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
        AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
        AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
        AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
        _ => AnyTypeInfoKind::Null,
    }
}

/// A failed statement, as sqlx's SQLite driver reports it.
#[derive(Debug)]
struct SqliteFailure {
    code: c_int,
    message: String,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

pub(super) fn to_sqlx(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => Error::Database(Box::new(SqliteFailure {
            code: f.extended_code,
            message: message.unwrap_or_else(|| f.to_string()),
        })),
        other => Error::Protocol(other.to_string()),
    }
}
