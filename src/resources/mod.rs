//! The configuration resources (partners, buyers, offers, campaigns, contracts), each declared
//! once, in one [`resource!`] in its own file here. From that one declaration come:
//!
//! - the row type and its [`Table`] (name, select list, written columns), which the admin
//!   store (`store::admin`) and the configuration snapshot (`store::snapshot`) read;
//! - the answer type of the admin API with its OpenAPI schema, and its conversion from the row;
//! - the stored values a body is read into, the body's writable keys (`FIELDS`), and the
//!   reading of every field from a body ([`Declared::read_fields`]).
//!
//! Each field names its [`Kind`]: how its column becomes its answer and how a body's value
//! becomes its stored value. The plain kinds are in [`kinds`]; a field needing more (amounts
//! in cents, masked secrets, sections the auction compiles) names a kind written beside its
//! logic, in the resource's HTTP module (`api::admin::config::<name>`), as do checks across
//! fields or against other rows (its `Resource::check`). See `docs/admin-resources.md`.

pub mod buyers;
pub mod campaigns;
pub mod contracts;
pub mod kinds;
pub mod offers;
pub mod partners;
pub mod suppression_lists;

/// What a declaration names: the plain kinds and the types of the answers, so that a new
/// field needs no import (`use super::prelude::*;` in each declaration).
pub mod prelude {
    pub use super::buyers::Buyers;
    pub use super::kinds::*;
    pub use super::offers::Offers;
    pub use super::partners::Partners;
    pub use super::suppression_lists::SuppressionLists;
    pub use crate::auction::{Mode, PayoutRule, Status};
    pub use crate::money::Money;
    pub use serde_json::Value;
    pub use uuid::Uuid;
}

use serde::Serialize;

use crate::api::admin::input::Input;
use crate::store::admin::Table;

/// How a field of one column goes between its column, its answer and a body.
pub trait Kind {
    /// The column's type in the row.
    type Row;
    /// The answer's type.
    type View;
    /// The written value, named as the column is.
    type Stored: Serialize + Send + Sync;
    fn view(row: &Self::Row) -> Self::View;
    /// Reads the body's `key`, each broken rule noted in `input` with its pointer.
    fn read(input: &mut Input<'_>, key: &str) -> Self::Stored;
    /// The table and id of the row the value refers to, which must be the tenant's
    /// (`kinds::IdOf`).
    fn refers(_stored: &Self::Stored) -> Option<(&'static str, uuid::Uuid)> {
        None
    }
    /// Whether a PATCH may send `null`: a value of its own (none), not a reset to a default.
    const NULLABLE: bool = false;
}

/// A field answered from several columns of the row (a campaign's payout rule); its stored
/// value is flattened into the columns it writes.
pub trait RowKind<Row> {
    type View;
    type Stored: Serialize + Send + Sync;
    fn view(row: &Row) -> Self::View;
    fn read(input: &mut Input<'_>, key: &str) -> Self::Stored;
}

/// What a [`resource!`] generates for its answer type.
pub trait Declared: Serialize + From<<Self::Table as Table>::Row> + Send + Sized {
    /// Its table.
    type Table: Table;
    /// The stored values of its written columns, named as the columns are.
    type Values: Serialize + Send + Sync;
    /// The writable fields of a body; any other key is an error.
    const FIELDS: &'static [&'static str];
    /// Reads every field of a body, in the declaration's order.
    fn read_fields(input: &mut Input<'_>) -> Self::Values;
    /// The rows the values refer to (`kinds::IdOf`): the field's key, the table, the id.
    fn references(values: &Self::Values) -> Vec<(&'static str, &'static str, uuid::Uuid)>;
    /// Whether the field `key` may be `null` in a PATCH ([`Kind::NULLABLE`]).
    fn nullable(key: &str) -> bool;
}

/// A column of the select list: its name, or its SQL expression named as the field.
macro_rules! column {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident = $expr:literal) => {
        concat!($expr, " AS ", stringify!($field))
    };
}
pub(crate) use column;

macro_rules! loaded {
    () => {
        "TRUE"
    };
    ($condition:literal) => {
        $condition
    };
}
pub(crate) use loaded;

/// Declares a resource: its answer type, row, table and stored values, then its fields in
/// the answer's order. Every row also has `tenant_id`, `id`, `created_at` and `updated_at`,
/// and every answer `id`, `created_at` and `updated_at` (read-only).
///
/// ```text
/// resource! {
///     /// The answer's description.
///     view Buyer, row BuyerRow, table Buyers = "buyers", values BuyerValues;
///     // optional: `, loads "<SQL condition>"` before the `;`: the rows the snapshot loads
///     fields {
///         name: String = Name,                                // key: answer type = kind
///         partner_id: Uuid = IdOf<Partners>,                  // must be the tenant's row
///         credit_limit as credit_limit_cents: Money = Cents,  // key as column
///         #[schema(read_only)]
///         read_only balance as balance_cents: Money = Cents,  // answered, never written
///         payout: PayoutRule = row Payout => [payout_type, …], // several columns
///         column payout_type: String,                         // a column only
///         column percent_bp: Option<i32> = "(percent * 100)::int", // computed column
///         created posting_key_hash: Vec<u8>,                  // written by a create only
///         #[serde(skip)]
///         hidden stored_secrets: [Value; 2] = stored_secrets, // from the row, never shown
///     }
/// }
/// ```
macro_rules! resource {
    (
        $(#[$doc:meta])*
        view $view:ident, row $row:ident, table $table:ident = $name:literal,
        values $values:ident $(, loads $loaded:literal)?;
        fields { $($lines:tt)* }
    ) => {
        $crate::resources::resource!(@line $row
            ($(#[$doc])* $view $table $name $values [$($loaded)?])
            [] [] [] [] [] []
            $($lines)*
        );
    };

    // A column only.
    (@line $row:ident $head:tt [$($rows:tt)*] $written:tt $created:tt $view:tt $fields:tt
        $values:tt column $col:ident: $ty:ty $(= $expr:literal)?, $($rest:tt)*) => {
        $crate::resources::resource!(@line $row $head
            [$($rows)* ($col, $ty, [$col $(= $expr)?])] $written $created $view $fields $values
            $($rest)*);
    };
    // A column written by a create only.
    (@line $row:ident $head:tt [$($rows:tt)*] $written:tt [$($created:tt)*] $view:tt
        $fields:tt $values:tt created $col:ident: $ty:ty, $($rest:tt)*) => {
        $crate::resources::resource!(@line $row $head
            [$($rows)* ($col, $ty, [$col])] $written [$($created)* stringify!($col),] $view
            $fields $values $($rest)*);
    };
    // Answered from the row, never shown nor written.
    (@line $row:ident $head:tt $rows:tt $written:tt $created:tt [$($view:tt)*] $fields:tt
        $values:tt $(#[$a:meta])* hidden $key:ident: $ty:ty = $fun:path, $($rest:tt)*) => {
        $crate::resources::resource!(@line $row $head $rows $written $created
            [$($view)* { [$(#[$a])*] $key: $ty = |row: &$row| $fun(row) }] $fields $values
            $($rest)*);
    };
    // Answered, never written.
    (@line $row:ident $head:tt [$($rows:tt)*] $written:tt $created:tt [$($view:tt)*]
        $fields:tt $values:tt
        $(#[$a:meta])* read_only $key:ident as $col:ident: $ty:ty = $kind:ty, $($rest:tt)*) => {
        $crate::resources::resource!(@line $row $head
            [$($rows)* ($col, <$kind as $crate::resources::Kind>::Row, [$col])]
            $written $created
            [$($view)* { [$(#[$a])*] $key: $ty =
                |row: &$row| <$kind as $crate::resources::Kind>::view(&row.$col) }]
            $fields $values $($rest)*);
    };
    // A field of several columns.
    (@line $row:ident $head:tt $rows:tt [$($written:tt)*] $created:tt [$($view:tt)*]
        [$($fields:tt)*] [$($values:tt)*]
        $(#[$a:meta])* $key:ident: $ty:ty = row $kind:ty => [$($w:ident),* $(,)?],
        $($rest:tt)*) => {
        $crate::resources::resource!(@line $row $head $rows
            [$($written)* $(stringify!($w),)*] $created
            [$($view)* { [$(#[$a])*] $key: $ty =
                |row: &$row| <$kind as $crate::resources::RowKind<$row>>::view(row) }]
            [$($fields)* stringify!($key),]
            [$($values)* { [#[serde(flatten)]] $key:
                <$kind as $crate::resources::RowKind<$row>>::Stored =
                |input: &mut $crate::api::admin::input::Input<'_>|
                    <$kind as $crate::resources::RowKind<$row>>::read(input, stringify!($key)),
                |_: &<$kind as $crate::resources::RowKind<$row>>::Stored| None,
                stringify!($key), false }]
            $($rest)*);
    };
    // A field of one column, named as its key.
    (@line $row:ident $head:tt $rows:tt $written:tt $created:tt $view:tt $fields:tt $values:tt
        $(#[$a:meta])* $key:ident: $ty:ty = $kind:ty, $($rest:tt)*) => {
        $crate::resources::resource!(@line $row $head $rows $written $created $view $fields
            $values $(#[$a])* $key as $key: $ty = $kind, $($rest)*);
    };
    // A field of one column.
    (@line $row:ident $head:tt [$($rows:tt)*] [$($written:tt)*] $created:tt [$($view:tt)*]
        [$($fields:tt)*] [$($values:tt)*]
        $(#[$a:meta])* $key:ident as $col:ident: $ty:ty = $kind:ty, $($rest:tt)*) => {
        $crate::resources::resource!(@line $row $head
            [$($rows)* ($col, <$kind as $crate::resources::Kind>::Row, [$col])]
            [$($written)* stringify!($col),] $created
            [$($view)* { [$(#[$a])*] $key: $ty =
                |row: &$row| <$kind as $crate::resources::Kind>::view(&row.$col) }]
            [$($fields)* stringify!($key),]
            [$($values)* { [] $col: <$kind as $crate::resources::Kind>::Stored =
                |input: &mut $crate::api::admin::input::Input<'_>|
                    <$kind as $crate::resources::Kind>::read(input, stringify!($key)),
                <$kind as $crate::resources::Kind>::refers,
                stringify!($key), <$kind as $crate::resources::Kind>::NULLABLE }]
            $($rest)*);
    };

    (@line $row:ident
        ($(#[$doc:meta])* $view:ident $table:ident $name:literal $values:ident [$($loaded:literal)?])
        [$(($rcol:ident, $rty:ty, [$($rsel:tt)*]))*]
        [$($written:expr,)*]
        [$($created:expr,)*]
        [$({ [$(#[$va:meta])*] $vkey:ident: $vty:ty = $vinit:expr })*]
        [$($field:expr,)*]
        [$({ [$(#[$xa:meta])*] $xcol:ident: $xty:ty = $xread:expr, $xrefers:expr, $xkey:expr,
            $xnull:expr })*]
    ) => {
        #[doc = concat!("A row of `", $name, "` (one field per column).")]
        // No `Debug`: contracts carry buyers' header secrets, campaigns a key's hash.
        #[derive(sqlx::FromRow)]
        pub struct $row {
            pub tenant_id: uuid::Uuid,
            pub id: uuid::Uuid,
            $(pub $rcol: $rty,)*
            pub created_at: chrono::DateTime<chrono::Utc>,
            pub updated_at: chrono::DateTime<chrono::Utc>,
        }

        #[doc = concat!("The table `", $name, "`.")]
        pub struct $table;

        impl $crate::store::admin::Table for $table {
            const NAME: &'static str = $name;
            const COLUMNS: &'static str = concat!(
                "tenant_id, id, ",
                $($crate::resources::column!($($rsel)*), ", ",)*
                "created_at, updated_at"
            );
            const WRITTEN: &'static [&'static str] = &[$($written),*];
            const CREATED: &'static [&'static str] = &[$($created),*];
            const LOADED: &'static str = $crate::resources::loaded!($($loaded)?);
            type Row = $row;
            fn id(row: &$row) -> uuid::Uuid {
                row.id
            }
        }

        $(#[$doc])*
        #[derive(serde::Serialize, utoipa::ToSchema)]
        pub struct $view {
            #[schema(read_only)]
            pub id: uuid::Uuid,
            $($(#[$va])* pub $vkey: $vty,)*
            #[schema(read_only)]
            pub created_at: chrono::DateTime<chrono::Utc>,
            #[schema(read_only)]
            pub updated_at: chrono::DateTime<chrono::Utc>,
        }

        impl From<$row> for $view {
            fn from(row: $row) -> Self {
                $view {
                    id: row.id,
                    $($vkey: ($vinit)(&row),)*
                    created_at: row.created_at,
                    updated_at: row.updated_at,
                }
            }
        }

        #[doc = concat!("The written columns of `", $name, "`, as a body is read into them.")]
        #[derive(serde::Serialize)]
        pub struct $values {
            $($(#[$xa])* pub $xcol: $xty,)*
        }

        impl $crate::resources::Declared for $view {
            type Table = $table;
            type Values = $values;
            const FIELDS: &'static [&'static str] = &[$($field),*];
            fn read_fields(input: &mut $crate::api::admin::input::Input<'_>) -> $values {
                $values {
                    $($xcol: ($xread)(input),)*
                }
            }
            fn references(
                values: &$values,
            ) -> Vec<(&'static str, &'static str, uuid::Uuid)> {
                let mut references = Vec::new();
                $(
                    if let Some((table, id)) = ($xrefers)(&values.$xcol) {
                        references.push(($xkey, table, id));
                    }
                )*
                references
            }
            fn nullable(key: &str) -> bool {
                false $(|| ($xnull && key == $xkey))*
            }
        }
    };
}
pub(crate) use resource;

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;
    use crate::resources::{buyers, campaigns, contracts, offers, partners};

    /// The keys of the values read from an empty body: every written column, once.
    fn value_keys<R: Declared>() -> Vec<String> {
        let body = Map::new();
        let mut input = Input::new(&body, R::FIELDS);
        match serde_json::to_value(R::read_fields(&mut input)) {
            Ok(Value::Object(object)) => object.keys().cloned().collect(),
            other => panic!("{other:?}"),
        }
    }

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_values_read_are_the_written_columns_of_each_declaration() {
        fn check<R: Declared>() {
            assert_eq!(
                value_keys::<R>(),
                sorted(R::Table::WRITTEN),
                "{}",
                R::Table::NAME
            );
        }
        check::<partners::Partner>();
        check::<buyers::Buyer>();
        check::<offers::Offer>();
        check::<campaigns::Campaign>();
        check::<contracts::Contract>();
    }

    #[test]
    fn a_field_is_a_key_a_column_and_a_written_column_at_once() {
        assert_eq!(
            buyers::Buyer::FIELDS,
            ["name", "status", "credit_limit", "caps"]
        );
        assert_eq!(
            buyers::Buyers::WRITTEN,
            ["name", "status", "credit_limit_cents", "caps"]
        );
        assert_eq!(
            buyers::Buyers::COLUMNS,
            "tenant_id, id, name, status, credit_limit_cents, balance_cents, caps, created_at, updated_at"
        );
        assert_eq!(
            campaigns::Campaigns::WRITTEN,
            [
                "partner_id",
                "offer_id",
                "status",
                "payout_type",
                "payout_percent",
                "payout_amount_cents",
                "min_payout_cents",
                "ping_rate_per_second",
            ]
        );
        assert_eq!(campaigns::Campaign::FIELDS[3], "payout");
        assert_eq!(campaigns::Campaigns::CREATED, ["posting_key_hash"]);
    }

    #[test]
    fn only_fields_whose_null_means_none_may_be_patched_to_null() {
        assert!(contracts::Contract::nullable("schedule"));
        assert!(campaigns::Campaign::nullable("ping_rate_per_second"));
        assert!(!contracts::Contract::nullable("filters"));
        assert!(!campaigns::Campaign::nullable("payout"));
        assert!(!partners::Partner::nullable("name"));
    }
}
