//! Blob store failures, explained in the words an operator searches for: which URL,
//! and whether the store is unreachable, refuses the credentials, lacks the bucket or
//! denies permission.

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The object does not exist (a normal answer, not a store failure).
    #[error("{0} does not exist in the blob store")]
    NotFound(String),
    /// The store failed doing `what`.
    #[error("blob store {url}: {what}: {cause}")]
    Failed {
        url: String,
        what: String,
        cause: String,
    },
}

impl ObjectError {
    /// `key` names the object for a `NotFound`; `what` the failed operation otherwise.
    pub(crate) fn from_store(url: &str, key: &str, what: &str, e: &object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => Self::NotFound(key.to_owned()),
            other => Self::Failed {
                url: url.to_owned(),
                what: what.to_owned(),
                cause: explain(other),
            },
        }
    }

    /// The cause alone, without the URL and operation.
    pub fn cause(&self) -> String {
        match self {
            Self::NotFound(key) => format!("{key} vanished while being read"),
            Self::Failed { cause, .. } => cause.clone(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// Names the cause of a store error first, then gives the store's own words.
pub(crate) fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let chain = capstan_core::error_chain(e);
    let lower = chain.to_ascii_lowercase();
    let cause = if lower.contains("signaturedoesnotmatch")
        || lower.contains("invalidaccesskeyid")
        || lower.contains("signature")
        || lower.contains("credential")
    {
        "bad credentials (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    } else if lower.contains("nosuchbucket") || lower.contains("bucket does not exist") {
        "no such bucket"
    } else if lower.contains("accessdenied")
        || lower.contains("permission denied")
        || lower.contains("403 forbidden")
        || lower.contains("read-only file system")
        || lower.contains("operation not permitted")
    {
        "permission denied"
    } else if lower.contains("connection refused")
        || lower.contains("error sending request")
        || lower.contains("dns error")
        || lower.contains("timed out")
        || lower.contains("connect")
    {
        "unreachable"
    } else {
        return chain;
    };
    format!("{cause}: {chain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_named_first() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied");
        assert!(explain(&io).starts_with("permission denied: "));
        let io = std::io::Error::other("tcp connect error: Connection refused (os error 111)");
        assert!(explain(&io).starts_with("unreachable: "));
        let io = std::io::Error::other("<Code>SignatureDoesNotMatch</Code>");
        assert!(explain(&io).starts_with("bad credentials"));
        let io = std::io::Error::other("<Code>NoSuchBucket</Code>");
        assert!(explain(&io).starts_with("no such bucket: "));
        let io = std::io::Error::other("something else");
        assert_eq!(explain(&io), "something else");
    }
}
