//! Keyset pages over ids: `?limit=&cursor=` in, `{"items", "next"}` out. Lists read
//! one row more than the page to know whether another page follows.

use super::ApiError;

/// The largest page any list serves.
pub const MAX_PAGE: u32 = 500;

/// A checked `limit` and `cursor`.
#[derive(Debug, Clone, Copy)]
pub struct Keyset {
    pub limit: u32,
    /// The id the previous page ended at.
    pub cursor: Option<i64>,
}

impl Keyset {
    pub fn parse(limit: Option<u32>, cursor: Option<&str>, default: u32) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(default);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "`limit` must be between 1 and {MAX_PAGE}, got {limit}"
            )));
        }
        let cursor = match cursor {
            None => None,
            Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!(
                    "`cursor` must be the `next` of a previous page, got `{cursor}`"
                ))
            })?),
        };
        Ok(Self { limit, cursor })
    }

    /// How many rows to read: one more than the page.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the rows read to the page, and gives the cursor of the next page if
    /// there is one.
    pub fn page<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<String>) {
        if rows.len() > self.limit as usize {
            rows.truncate(self.limit as usize);
            let next = rows.last().map(|row| id(row).to_string());
            (rows, next)
        } else {
            (rows, None)
        }
    }
}
