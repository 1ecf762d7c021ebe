//! Problems with a request's input, gathered by field so that every one of them can be
//! answered at once (an operator fixing a body should not have to send it once per
//! mistake). Services and handlers both collect into it; it knows nothing of HTTP, and
//! the HTTP layer turns it into one 422 (`http/problems.rs`).

/// The most problems one answer lists; a batch of thousands of bad tasks is told how
/// many more there are.
const MAX_LISTED: usize = 50;

/// One problem: `field` is a path into the input such as `packages[2].version`, empty
/// when the problem is the input's as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub detail: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            detail: detail.into(),
        }
    }
}

/// The problems found so far, in the order they were found: the first
/// [`MAX_LISTED`] of them, and how many more.
#[derive(Debug, Default)]
pub struct FieldProblems {
    listed: Vec<FieldProblem>,
    unlisted: usize,
}

impl FieldProblems {
    pub fn new() -> Self {
        Self::default()
    }

    /// Just this problem.
    pub fn one(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let mut problems = Self::new();
        problems.add(field, detail);
        problems
    }

    pub fn add(&mut self, field: impl Into<String>, detail: impl Into<String>) {
        if self.listed.len() == MAX_LISTED {
            self.unlisted += 1;
            return;
        }
        self.listed.push(FieldProblem::new(field, detail));
    }

    /// The value of `result`, or `None` with its error kept as a problem of `field`.
    pub fn check<T, E: std::fmt::Display>(
        &mut self,
        field: &str,
        result: Result<T, E>,
    ) -> Option<T> {
        result.map_err(|e| self.add(field, e.to_string())).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// `Ok` when nothing was found, else everything that was.
    pub fn finish(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The problems listed, and how many more were found beyond them.
    pub fn listed(&self) -> (&[FieldProblem], usize) {
        (&self.listed, self.unlisted)
    }
}
