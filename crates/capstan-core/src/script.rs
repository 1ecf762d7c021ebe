//! Script interpreters, shared by process steps and agent commands.

use serde::{Deserialize, Serialize};

/// Which interpreter runs a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ScriptSyntax {
    #[default]
    Bash,
    Sh,
    /// `pwsh` (or `powershell`), when installed.
    PowerShell,
}

impl ScriptSyntax {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bash => "bash",
            Self::Sh => "sh",
            Self::PowerShell => "powershell",
        }
    }
}
