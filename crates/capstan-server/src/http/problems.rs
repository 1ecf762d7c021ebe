//! Every problem of a request answered as one 422: problem+json whose `detail` lists
//! every problem and whose `errors` member holds them one by one as `{"field",
//! "detail"}`, `field` being a path into the request such as `variables[2].value` (the
//! shape a process's problems have always had). Handlers collect them with the same
//! [`FieldProblems`] services use; `?` turns it into this answer.

use capstan_api::{Problem, Warning};

use super::ApiError;
pub(crate) use crate::invalid::FieldProblems as Problems;

impl From<Problems> for ApiError {
    fn from(problems: Problems) -> Self {
        let (found, unlisted) = problems.listed();
        let mut listed = found
            .iter()
            .map(|p| {
                if p.field.is_empty() {
                    p.detail.clone()
                } else {
                    format!("{}: {}", p.field, p.detail)
                }
            })
            .collect::<Vec<_>>();
        let total = listed.len() + unlisted;
        if unlisted > 0 {
            listed.push(format!("and {unlisted} more"));
        }
        let detail = match listed.as_slice() {
            [one] => one.clone(),
            many => format!("{total} problems: {}", many.join("; ")),
        };
        let errors: Vec<Warning> = found
            .iter()
            .map(|p| Warning {
                field: p.field.clone(),
                detail: p.detail.clone(),
            })
            .collect();
        let mut error = ApiError::unprocessable(detail.clone());
        error.problem = Some(Box::new(
            Problem::new(422, "Unprocessable Entity", detail).with("errors", &errors),
        ));
        error
    }
}
