//! RFC 9457 problem details: the body of every error the API returns.

use serde::{Deserialize, Serialize};

/// The media type of a [`Problem`] body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error as the API reports it. `detail` is written for a human at 3 a.m.: it says
/// what was wrong with the request and, where it can, what to do instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type", default = "about_blank")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Extra members, such as the failed checks of a ping.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl Problem {
    /// A problem with the given status, its standard title, and a detail.
    pub fn new(status: u16, title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            problem_type: about_blank(),
            title: title.into(),
            status,
            detail: detail.into(),
            extensions: serde_json::Map::new(),
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.extensions.insert(key.to_owned(), value);
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}
