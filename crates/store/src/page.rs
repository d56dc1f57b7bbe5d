//! Cursor pagination as Stripe does it: newest first, `limit` 1–100, and
//! `starting_after=<id>` for the next page. Ids sort by creation time (see
//! `paybridge_core::ids`), so the cursor is a plain `id < $cursor`.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::FromRow;

use crate::Result;

#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub limit: i64,
    pub starting_after: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            has_more: self.has_more,
        }
    }
}

/// A list's `created[gte]` / `created[lte]`: unix seconds, both ends included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Created {
    pub gte: Option<i64>,
    pub lte: Option<i64>,
}

pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// A `SELECT` assembled from optional filters; `?` in a condition becomes the next
/// `$n` placeholder.
pub(crate) struct Select {
    sql: String,
    args: Vec<Arg>,
}

impl Select {
    pub fn new(base: &str) -> Select {
        Select {
            sql: base.to_owned(),
            args: Vec::new(),
        }
    }

    pub fn and(mut self, condition: &str, arg: Arg) -> Select {
        self.args.push(arg);
        let placeholder = format!("${}", self.args.len());
        self.sql.push_str(" AND ");
        self.sql.push_str(&condition.replace('?', &placeholder));
        self
    }

    pub fn and_opt(self, condition: &str, arg: Option<Arg>) -> Select {
        match arg {
            Some(a) => self.and(condition, a),
            None => self,
        }
    }

    /// A condition with several `?`, each the next of `args` (nothing when `None`): as
    /// many arguments as `?`, or the statement would bind the wrong values.
    pub fn and_each(mut self, condition: &str, args: Option<Vec<Arg>>) -> Select {
        let Some(args) = args else { return self };
        debug_assert_eq!(
            condition.matches('?').count(),
            args.len(),
            "placeholders and arguments of `{condition}`"
        );
        let mut parts = condition.split('?');
        let mut sql = parts.next().unwrap_or_default().to_owned();
        for (part, arg) in parts.zip(args) {
            self.args.push(arg);
            sql.push_str(&format!("${}", self.args.len()));
            sql.push_str(part);
        }
        self.sql.push_str(" AND ");
        self.sql.push_str(&sql);
        self
    }

    /// `created` within a range (unix seconds, both ends included).
    pub fn created(self, range: &Created) -> Select {
        self.and_opt("created >= ?", range.gte.map(Arg::Int))
            .and_opt("created <= ?", range.lte.map(Arg::Int))
    }

    pub async fn page<T>(self, reader: crate::Reader<'_>, params: &ListParams) -> Result<Page<T>>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        let limit = params.limit.clamp(1, 100);
        let mut s = self.and_opt("id < ?", params.starting_after.clone().map(Arg::Text));
        s.sql
            .push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
        let mut data = s.fetch_all::<T, _>(reader).await?;
        let has_more = data.len() as i64 > limit;
        data.truncate(limit as usize);
        Ok(Page { data, has_more })
    }

    pub async fn fetch_all<'e, T, E>(self, pool: E) -> Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
        E: sqlx::Executor<'e, Database = sqlx::Any>,
    {
        let mut q = sqlx::query_as::<_, T>(&self.sql);
        for a in self.args {
            q = match a {
                Arg::Int(i) => q.bind(i),
                Arg::Text(t) => q.bind(t),
            };
        }
        Ok(q.fetch_all(pool).await?)
    }
}

/// `$from, $from+1, …` for `n` values: the placeholders of a short `IN (…)` list.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The placeholders of a statement whose size grows with its input (multi-row inserts,
/// long `IN` lists). SQLite looks a `$N` up by name in a list, once when it prepares the
/// statement and once more when sqlx binds it, so a statement with n of them costs
/// O(n²): at a thousand values, 18 % of the SQLite writer's time under webhook load
/// (BENCHMARKS.md). A bare `?` is numbered by position and costs nothing to find. So
/// these statements use `?` on SQLite and `$N` on PostgreSQL, and their text must name
/// every value exactly once, in the order the values are bound.
pub(crate) struct Params {
    positional: bool,
    next: usize,
}

impl Params {
    pub(crate) fn new(backend: crate::db::Backend) -> Params {
        Params {
            positional: backend == crate::db::Backend::Sqlite,
            next: 1,
        }
    }

    pub(crate) fn on(conn: &crate::db::Conn) -> Params {
        Params::new(crate::db::backend_of(conn))
    }

    /// The next value's placeholder.
    pub(crate) fn one(&mut self) -> String {
        let n = self.next;
        self.next += 1;
        if self.positional {
            "?".to_owned()
        } else {
            format!("${n}")
        }
    }

    /// The next `n` values' placeholders, comma-separated.
    pub(crate) fn list(&mut self, n: usize) -> String {
        (0..n).map(|_| self.one()).collect::<Vec<_>>().join(", ")
    }

    /// SQLite's form of `app_id = ? AND (a IN (…) OR b IN (…))`: the app is repeated in
    /// each term, `(app_id = ? AND a IN (…)) OR (app_id = ? AND b IN (…))`, over the
    /// columns whose lists are not empty, so that each term is a search of its own
    /// `(app_id, column)` index (`MULTI-INDEX OR`). With the app outside the terms,
    /// SQLite's planner read the app's every row through its `(app_id, id)` index
    /// instead, the more readily when the statement sorts by id (sort by `+id`). Bind
    /// with [`bind_app_any_in`].
    pub(crate) fn app_any_in(columns: &[(&str, &[String])]) -> String {
        let mut p = Params::new(crate::db::Backend::Sqlite);
        columns
            .iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|(column, values)| {
                let app = p.one();
                format!(
                    "(app_id = {app} AND {column} IN ({}))",
                    p.list(values.len())
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    }

    /// `a IN (…) OR b IN (…)` over the columns whose lists are not empty; bind the lists'
    /// values in the order given.
    pub(crate) fn any_in(&mut self, columns: &[(&str, &[String])]) -> String {
        columns
            .iter()
            .filter(|(_, values)| !values.is_empty())
            .map(|(column, values)| format!("{column} IN ({})", self.list(values.len())))
            .collect::<Vec<_>>()
            .join(" OR ")
    }
}

/// Binds what [`Params::app_any_in`] names: for each list that is not empty, the app
/// and then the list's values.
pub(crate) fn bind_app_any_in<'q, O>(
    mut q: sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>>,
    app: &'q str,
    columns: &[(&str, &'q [String])],
) -> sqlx::query::QueryAs<'q, sqlx::Any, O, sqlx::any::AnyArguments<'q>> {
    for (_, values) in columns.iter().filter(|(_, values)| !values.is_empty()) {
        q = q.bind(app);
        for v in values.iter() {
            q = q.bind(v);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::{Arg, Select};

    #[test]
    fn and_each_numbers_its_placeholders_after_the_others() {
        let s = Select::new("SELECT 1 WHERE 1 = 1")
            .and("a = ?", Arg::Int(1))
            .and_each(
                "b >= ? AND b < ?",
                Some(vec![Arg::Text("x".into()), Arg::Text("y".into())]),
            );
        assert_eq!(
            s.sql,
            "SELECT 1 WHERE 1 = 1 AND a = $1 AND b >= $2 AND b < $3"
        );
        assert_eq!(s.args.len(), 3);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "placeholders and arguments")]
    fn and_each_refuses_fewer_arguments_than_placeholders() {
        let _ = Select::new("SELECT 1 WHERE 1 = 1")
            .and_each("b >= ? AND b < ?", Some(vec![Arg::Int(1)]));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "placeholders and arguments")]
    fn and_each_refuses_more_arguments_than_placeholders() {
        let _ = Select::new("SELECT 1 WHERE 1 = 1")
            .and_each("b = ?", Some(vec![Arg::Int(1), Arg::Int(2)]));
    }
}
