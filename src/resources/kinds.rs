//! The plain kinds of field: how a column is answered and how a body's value is read into it
//! (every rule broken noted with the field's pointer, a default taken where the field may be
//! left out).

use serde_json::Value;
use uuid::Uuid;

use super::Kind;
use crate::api::admin::input::Input;
use crate::auction::{ConfigError, Status};
use crate::money::Money;
use crate::store::admin::{Table, rows};

/// A required name: 1 to 200 characters, trimmed.
pub struct Name;

impl Kind for Name {
    type Row = String;
    type View = String;
    type Stored = String;
    fn view(row: &String) -> String {
        row.clone()
    }
    fn read(input: &mut Input<'_>, key: &str) -> String {
        input.name(key)
    }
}

/// An optional text of at most 10,000 characters; absent or `null` is none.
pub struct Text;

impl Kind for Text {
    const NULLABLE: bool = true;
    type Row = Option<String>;
    type View = Option<String>;
    type Stored = Option<String>;
    fn view(row: &Option<String>) -> Option<String> {
        row.clone()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Option<String> {
        input.text(key, 10_000)
    }
}

/// `status`: `active` (the default), `paused` or `archived`.
pub struct State;

impl Kind for State {
    type Row = String;
    type View = Status;
    type Stored = Status;
    fn view(row: &String) -> Status {
        rows::status(row)
    }
    fn read(input: &mut Input<'_>, _key: &str) -> Status {
        input.status()
    }
}

/// An amount of at least zero (default zero), stored in cents (`<key>_cents`).
pub struct Cents;

impl Kind for Cents {
    type Row = i64;
    type View = Money;
    type Stored = i64;
    fn view(row: &i64) -> Money {
        Money::from_cents(*row)
    }
    fn read(input: &mut Input<'_>, key: &str) -> i64 {
        input.money(key, Money::ZERO).cents()
    }
}

/// A whole number from `MIN` to `MAX`, `DEFAULT` when left out.
pub struct Int<const MIN: i64, const MAX: i64, const DEFAULT: i64>;

impl<const MIN: i64, const MAX: i64, const DEFAULT: i64> Kind for Int<MIN, MAX, DEFAULT> {
    type Row = i32;
    type View = i32;
    type Stored = i64;
    fn view(row: &i32) -> i32 {
        *row
    }
    fn read(input: &mut Input<'_>, key: &str) -> i64 {
        input.integer(key, MIN..=MAX, DEFAULT)
    }
}

/// A whole number from `MIN` to `MAX`, or none.
pub struct OptionalInt<const MIN: i64, const MAX: i64>;

impl<const MIN: i64, const MAX: i64> Kind for OptionalInt<MIN, MAX> {
    const NULLABLE: bool = true;
    type Row = Option<i32>;
    type View = Option<i32>;
    type Stored = Option<i64>;
    fn view(row: &Option<i32>) -> Option<i32> {
        *row
    }
    fn read(input: &mut Input<'_>, key: &str) -> Option<i64> {
        input.value(key).map(|_| input.integer(key, MIN..=MAX, MIN))
    }
}

/// A required id (whether it names a row is the resource's `check`).
pub struct Id;

impl Kind for Id {
    type Row = Uuid;
    type View = Uuid;
    type Stored = Uuid;
    fn view(row: &Uuid) -> Uuid {
        *row
    }
    fn read(input: &mut Input<'_>, key: &str) -> Uuid {
        input.id(key)
    }
}

/// A required id of a row of `T`, which must be the tenant's ("no such …" otherwise).
pub struct IdOf<T>(std::marker::PhantomData<T>);

impl<T: Table> Kind for IdOf<T> {
    type Row = Uuid;
    type View = Uuid;
    type Stored = Uuid;
    fn view(row: &Uuid) -> Uuid {
        *row
    }
    fn read(input: &mut Input<'_>, key: &str) -> Uuid {
        input.id(key)
    }
    fn refers(stored: &Uuid) -> Option<(&'static str, Uuid)> {
        Some((T::NAME, *stored))
    }
}

/// A JSON list, empty when left out (checked by the resource's `check`).
pub struct List;

impl Kind for List {
    type Row = Value;
    type View = Value;
    type Stored = Value;
    fn view(row: &Value) -> Value {
        row.clone()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Value {
        input
            .value(key)
            .cloned()
            .unwrap_or(Value::Array(Vec::new()))
    }
}

/// A JSON value or none (checked by the resource's `check`).
pub struct OptionalJson;

impl Kind for OptionalJson {
    const NULLABLE: bool = true;
    type Row = Option<Value>;
    type View = Option<Value>;
    type Stored = Option<Value>;
    fn view(row: &Option<Value>) -> Option<Value> {
        row.clone()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Option<Value> {
        input.value(key).cloned()
    }
}

/// A list of ids, empty when left out: at most 20, each once (whether each names a row is the
/// resource's `check`: offers' and contracts' suppression lists).
pub struct IdList;

/// The most ids an [`IdList`] holds.
pub const MAX_IDS: usize = 20;

impl Kind for IdList {
    type Row = Vec<Uuid>;
    type View = Vec<Uuid>;
    type Stored = Vec<Uuid>;
    fn view(row: &Vec<Uuid>) -> Vec<Uuid> {
        row.clone()
    }
    fn read(input: &mut Input<'_>, key: &str) -> Vec<Uuid> {
        let Some(value) = input.value(key) else {
            return Vec::new();
        };
        let Some(items) = value.as_array() else {
            input.error(key, "must be a list of ids");
            return Vec::new();
        };
        if items.len() > MAX_IDS {
            input.error(key, format!("at most {MAX_IDS} ids"));
            return Vec::new();
        }
        let mut ids = Vec::new();
        for (n, item) in items.iter().enumerate() {
            match item.as_str().and_then(|text| text.parse::<Uuid>().ok()) {
                Some(id) if !ids.contains(&id) => ids.push(id),
                Some(_) => input.push(vec![ConfigError::new(
                    format!("/{key}/{n}"),
                    "listed twice",
                )]),
                None => input.push(vec![ConfigError::new(
                    format!("/{key}/{n}"),
                    "must be an id",
                )]),
            }
        }
        ids
    }
}

/// A count kept by the database, answered and never written.
pub struct Count;

impl Kind for Count {
    type Row = i64;
    type View = i64;
    type Stored = i64;
    fn view(row: &i64) -> i64 {
        *row
    }
    fn read(_input: &mut Input<'_>, _key: &str) -> i64 {
        0
    }
}
