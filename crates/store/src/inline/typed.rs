//! The typed side of the driver, which sqlx's `Database` requires and `Any` never
//! reaches: its rows, columns, values and statements have no values (they cannot be
//! made), and its arguments refuse every value.

use std::borrow::Cow;
use std::marker::PhantomData;

use sqlx::any::{AnyQueryResult, AnyTypeInfo};
use sqlx::{Either, Error};

use super::driver::{unsupported, InlineTransactionManager};
use super::{InlineConnection, SCHEME};

/// The database type behind the driver (`Any` reaches it only through its connection).
#[derive(Debug)]
pub struct InlineSqlite;

#[derive(Debug, Clone, Copy)]
pub enum Never {}

#[derive(Debug)]
pub struct InlineRow(Never);
#[derive(Debug)]
pub struct InlineColumn(Never);
#[derive(Debug)]
pub struct InlineValue(Never);
#[derive(Debug)]
pub struct InlineValueRef<'r>(Never, PhantomData<&'r ()>);
#[derive(Debug)]
pub struct InlineStatement<'q>(Never, PhantomData<&'q ()>);
#[derive(Debug, Default)]
pub struct InlineArguments<'q>(PhantomData<&'q ()>);

impl sqlx::Database for InlineSqlite {
    type Connection = InlineConnection;
    type TransactionManager = InlineTransactionManager;
    type Row = InlineRow;
    type QueryResult = AnyQueryResult;
    type Column = InlineColumn;
    type TypeInfo = AnyTypeInfo;
    type Value = InlineValue;
    type ValueRef<'r> = InlineValueRef<'r>;
    type Arguments<'q> = InlineArguments<'q>;
    type ArgumentBuffer<'q> = ();
    type Statement<'q> = InlineStatement<'q>;

    const NAME: &'static str = "SQLite";
    const URL_SCHEMES: &'static [&'static str] = &[SCHEME];
}

impl sqlx::Row for InlineRow {
    type Database = InlineSqlite;

    fn columns(&self) -> &[InlineColumn] {
        match self.0 {}
    }

    fn try_get_raw<I>(&self, _index: I) -> Result<InlineValueRef<'_>, Error>
    where
        I: sqlx::ColumnIndex<Self>,
    {
        match self.0 {}
    }
}

impl sqlx::Column for InlineColumn {
    type Database = InlineSqlite;

    fn ordinal(&self) -> usize {
        match self.0 {}
    }

    fn name(&self) -> &str {
        match self.0 {}
    }

    fn type_info(&self) -> &AnyTypeInfo {
        match self.0 {}
    }
}

impl sqlx::Value for InlineValue {
    type Database = InlineSqlite;

    fn as_ref(&self) -> InlineValueRef<'_> {
        match self.0 {}
    }

    fn type_info(&self) -> Cow<'_, AnyTypeInfo> {
        match self.0 {}
    }

    fn is_null(&self) -> bool {
        match self.0 {}
    }
}

impl<'r> sqlx::ValueRef<'r> for InlineValueRef<'r> {
    type Database = InlineSqlite;

    fn to_owned(&self) -> InlineValue {
        match self.0 {}
    }

    fn type_info(&self) -> Cow<'_, AnyTypeInfo> {
        match self.0 {}
    }

    fn is_null(&self) -> bool {
        match self.0 {}
    }
}

impl<'q> sqlx::Arguments<'q> for InlineArguments<'q> {
    type Database = InlineSqlite;

    fn reserve(&mut self, _additional: usize, _size: usize) {}

    fn add<T>(&mut self, _value: T) -> Result<(), sqlx::error::BoxDynError>
    where
        T: 'q + sqlx::Encode<'q, InlineSqlite> + sqlx::Type<InlineSqlite>,
    {
        Err(unsupported("typed arguments").into())
    }

    fn len(&self) -> usize {
        0
    }
}

impl<'q> sqlx::IntoArguments<'q, InlineSqlite> for InlineArguments<'q> {
    fn into_arguments(self) -> InlineArguments<'q> {
        self
    }
}

impl<'q> sqlx::Statement<'q> for InlineStatement<'q> {
    type Database = InlineSqlite;

    fn to_owned(&self) -> InlineStatement<'static> {
        match self.0 {}
    }

    fn sql(&self) -> &str {
        match self.0 {}
    }

    fn parameters(&self) -> Option<Either<&[AnyTypeInfo], usize>> {
        match self.0 {}
    }

    fn columns(&self) -> &[InlineColumn] {
        match self.0 {}
    }

    sqlx_core::impl_statement_query!(InlineArguments<'_>);
}
