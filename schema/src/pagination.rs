//! Relay-style cursor pagination for lists that grow (audit events, executions, schedules),
//! newest first. A cursor is the opaque string form of a row id; pages are fetched by
//! `id < cursor` on the primary key, so they stay stable while new rows arrive.

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};

use crate::error::ApiError;

/// Page size when `first` is omitted.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// Largest page a client may ask for.
pub const MAX_PAGE_SIZE: u64 = 100;

/// The cost of a field that looks one object up by its key (`execution`, `proc`, `schedule`):
/// a database read, so aliasing it many times costs what it is.
pub const LOOKUP_COST: usize = 10;

/// Log lines are plain values read in pages: ten of them cost what one list item does.
pub const LINES_PER_COST: usize = 10;

/// The cost multiplier of a paged list field: the items it may return (what `first` asks
/// for, the default when omitted, never more than `max`), used by the list fields'
/// `complexity` attributes so a query's cost counts list sizes.
pub fn list_cost(first: Option<i32>, default: u64, max: u64, child_complexity: usize) -> usize {
    let items = first.map_or(default, |n| u64::try_from(n.max(0)).unwrap_or(0).min(max));
    usize::try_from(items)
        .unwrap_or(usize::MAX)
        .saturating_mul(child_complexity)
        .max(1)
}

/// A validated page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// How many items to return.
    pub first: u64,
    /// Return items older than this id.
    pub before_id: Option<i64>,
}

impl PageRequest {
    /// Checks `first` (0..=100) and `after` (a cursor this API returned).
    pub fn new(first: Option<i32>, after: Option<String>) -> Result<Self, ApiError> {
        let first = match first {
            None => DEFAULT_PAGE_SIZE,
            Some(n) if (0..=MAX_PAGE_SIZE as i32).contains(&n) => n as u64,
            Some(_) => {
                return Err(ApiError::bad_input(
                    "first",
                    format!("must be between 0 and {MAX_PAGE_SIZE}"),
                ));
            }
        };
        let before_id = match after {
            None => None,
            Some(cursor) => Some(decode_cursor(&cursor)?),
        };
        Ok(Self { first, before_id })
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> u64 {
        self.first + 1
    }
}

/// The cursor of the row with `id`.
pub fn encode_cursor(id: i64) -> String {
    id.to_string()
}

fn decode_cursor(cursor: &str) -> Result<i64, ApiError> {
    cursor
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_input("after", "is not a cursor returned by this API"))
}

/// Builds a connection from rows fetched with [`PageRequest::fetch_limit`], newest first.
pub fn connection<T: OutputType>(
    page: PageRequest,
    mut rows: Vec<(i64, T)>,
) -> Connection<String, T> {
    let has_next = rows.len() as u64 > page.first;
    rows.truncate(page.first as usize);
    let mut connection = Connection::new(page.before_id.is_some(), has_next);
    connection.edges.extend(
        rows.into_iter()
            .map(|(id, node)| Edge::new(encode_cursor(id), node)),
    );
    connection
}
