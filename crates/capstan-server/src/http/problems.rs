//! Every problem of a request, gathered and answered as one 422: an operator fixing a
//! body should not have to send it once per mistake.
//!
//! The answer is problem+json whose `detail` lists every problem and whose `errors`
//! member holds them one by one as `{"field", "detail"}`, `field` being a path into the
//! request such as `variables[2].value` (the shape a process's problems have always had).

use capstan_api::{Problem, Warning};

use super::ApiError;

/// The most problems one answer lists; a batch of thousands of bad tasks is told
/// how many more there are.
const MAX_LISTED: usize = 50;

/// The problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    listed: Vec<Warning>,
    unlisted: usize,
}

impl Problems {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn add(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        if self.listed.len() == MAX_LISTED {
            self.unlisted += 1;
            return;
        }
        self.listed.push(Warning {
            field: field.into(),
            detail: detail.into(),
        });
    }

    /// A 422 for one problem.
    pub(crate) fn one(field: impl Into<String>, detail: impl Into<String>) -> ApiError {
        let mut problems = Self::new();
        problems.add(field, detail);
        problems.into()
    }

    /// The value of `result`, or `None` with its error kept as a problem of `field`.
    pub(crate) fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        result.map_err(|e| self.add(field, e.to_string())).ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// `Ok` when nothing was found, else the 422 listing everything.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        if self.listed.is_empty() {
            Ok(())
        } else {
            Err(self.into())
        }
    }
}

impl From<Problems> for ApiError {
    fn from(problems: Problems) -> Self {
        let mut listed = problems
            .listed
            .iter()
            .map(|p| {
                if p.field.is_empty() {
                    p.detail.clone()
                } else {
                    format!("{}: {}", p.field, p.detail)
                }
            })
            .collect::<Vec<_>>();
        let total = listed.len() + problems.unlisted;
        if problems.unlisted > 0 {
            listed.push(format!("and {} more", problems.unlisted));
        }
        let detail = match listed.as_slice() {
            [one] => one.clone(),
            many => format!("{total} problems: {}", many.join("; ")),
        };
        let mut error = ApiError::unprocessable(detail.clone());
        error.problem = Some(Box::new(
            Problem::new(422, "Unprocessable Entity", detail).with("errors", &problems.listed),
        ));
        error
    }
}
