//! The agent's home directory and its registration file, `agent.json`.
//!
//! ```text
//! <home>/agent.json     server, agent id and name, credential (mode 0600)
//! <home>/journal        commands started here, one id per line, and how each ended
//! <home>/packages/      verified packages, named by their sha256
//! <home>/work/<id>/     a script's working directory while it runs
//! <home>/scripts/       a script's file while it runs
//! ```

use std::{
    fs::{self, DirBuilder, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Where the agent keeps its state unless told otherwise.
pub const DEFAULT_HOME: &str = "/var/lib/capstan-agent";

/// The agent's home directory.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn registration(&self) -> PathBuf {
        self.root.join("agent.json")
    }

    pub fn journal(&self) -> PathBuf {
        self.root.join("journal")
    }

    pub fn packages(&self) -> PathBuf {
        self.root.join("packages")
    }

    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    pub fn scripts(&self) -> PathBuf {
        self.root.join("scripts")
    }

    /// Creates the home and its directories, readable only by the agent's user: the
    /// registration holds a credential and scripts may leave secrets in their files.
    pub fn create(&self) -> io::Result<()> {
        let mut builder = DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in [
            self.root.clone(),
            self.packages(),
            self.work(),
            self.scripts(),
        ] {
            builder.create(&dir).map_err(|e| annotate(&dir, e))?;
        }
        Ok(())
    }
}

fn annotate(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Why the registration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(
        "this agent is not registered: {path} does not exist (run `capstan-agent register` first, with the same --home)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {error}")]
    Unreadable { path: PathBuf, error: io::Error },
    #[error("{path} is not a registration this agent can read: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path} already registers agent `{name}` (id {id}) with {server}; pass --force to replace it (the old agent stays on the server until an administrator deletes it)"
    )]
    Exists {
        path: PathBuf,
        name: String,
        id: i64,
        server: String,
    },
    #[error("cannot write {path}: {error}")]
    Unwritable { path: PathBuf, error: io::Error },
}

/// What `capstan-agent register` stored: enough to poll without the token again.
#[derive(Debug, Clone)]
pub struct Registration {
    pub server: String,
    pub agent_id: i64,
    pub name: String,
    pub credential: SecretString,
    /// A PEM file of extra CA certificates to trust, as an absolute path.
    pub ca_cert: Option<PathBuf>,
}

/// `agent.json` as stored.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistrationFile {
    server: String,
    agent_id: i64,
    name: String,
    credential: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_cert: Option<PathBuf>,
}

impl Registration {
    /// Reads `<home>/agent.json`.
    pub fn load(home: &Home) -> Result<Self, RegistrationError> {
        let path = home.registration();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RegistrationError::Missing { path });
            }
            Err(error) => return Err(RegistrationError::Unreadable { path, error }),
        };
        let file: RegistrationFile =
            serde_json::from_slice(&bytes).map_err(|e| RegistrationError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            server: file.server,
            agent_id: file.agent_id,
            name: file.name,
            credential: SecretString::from(file.credential),
            ca_cert: file.ca_cert,
        })
    }

    /// Fails when `<home>/agent.json` already holds a registration (readable or not).
    pub fn refuse_existing(home: &Home) -> Result<(), RegistrationError> {
        let path = home.registration();
        match Self::load(home) {
            Err(RegistrationError::Missing { .. }) => Ok(()),
            Ok(existing) => Err(RegistrationError::Exists {
                path,
                name: existing.name,
                id: existing.agent_id,
                server: existing.server,
            }),
            Err(RegistrationError::Unreadable { error, .. }) => {
                Err(RegistrationError::Unreadable { path, error })
            }
            Err(_) => Err(RegistrationError::Exists {
                path,
                name: "?".to_owned(),
                id: 0,
                server: "an unknown server (the file is damaged)".to_owned(),
            }),
        }
    }

    /// Writes `<home>/agent.json`, mode 0600 from the moment it exists. Without
    /// `replace`, an existing registration is kept and reported.
    pub fn save(&self, home: &Home, replace: bool) -> Result<(), RegistrationError> {
        let path = home.registration();
        let file = RegistrationFile {
            server: self.server.clone(),
            agent_id: self.agent_id,
            name: self.name.clone(),
            credential: self.credential.expose_secret().to_owned(),
            ca_cert: self.ca_cert.clone(),
        };
        let mut json = serde_json::to_vec_pretty(&file).expect("a registration serialises");
        json.push(b'\n');
        // Written whole to a temporary name first, so a crash never leaves a
        // half-written credential where `run` would read it.
        let temporary = home
            .root()
            .join(format!(".agent.json.{}.tmp", std::process::id()));
        let unwritable = |error| RegistrationError::Unwritable {
            path: path.clone(),
            error,
        };
        let write = || -> io::Result<()> {
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            out.write_all(&json)?;
            out.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&temporary);
            return Err(unwritable(e));
        }
        let placed = if replace {
            fs::rename(&temporary, &path)
        } else {
            // A hard link fails if the name exists, where rename would overwrite a
            // registration written in the meantime.
            let linked = fs::hard_link(&temporary, &path);
            let _ = fs::remove_file(&temporary);
            linked
        };
        match placed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_file(&temporary);
                return Self::refuse_existing(home).and(Err(unwritable(e)));
            }
            Err(e) => {
                let _ = fs::remove_file(&temporary);
                return Err(unwritable(e));
            }
        }
        sync_dir(home.root()).map_err(unwritable)
    }
}

/// Makes a new or renamed entry of `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::testing::TempDir;

    fn registration(name: &str) -> Registration {
        Registration {
            server: "https://capstan.example.com".to_owned(),
            agent_id: 7,
            name: name.to_owned(),
            credential: SecretString::from("capagt_secret".to_owned()),
            ca_cert: Some(PathBuf::from("/etc/capstan/ca.pem")),
        }
    }

    #[test]
    fn registration_is_stored_readable_only_by_its_owner() {
        let dir = TempDir::new();
        let home = Home::new(dir.path().join("home"));
        home.create().unwrap();
        registration("web01").save(&home, false).unwrap();

        let mode = fs::metadata(home.registration())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        let home_mode = fs::metadata(home.root()).unwrap().permissions().mode();
        assert_eq!(home_mode & 0o777, 0o700, "mode {home_mode:o}");

        let loaded = Registration::load(&home).unwrap();
        assert_eq!(loaded.name, "web01");
        assert_eq!(loaded.agent_id, 7);
        assert_eq!(loaded.credential.expose_secret(), "capagt_secret");
        assert_eq!(loaded.ca_cert, Some(PathBuf::from("/etc/capstan/ca.pem")));
        let leftovers: Vec<_> = fs::read_dir(home.root())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn an_existing_registration_is_replaced_only_when_forced() {
        let dir = TempDir::new();
        let home = Home::new(dir.path());
        home.create().unwrap();
        registration("web01").save(&home, false).unwrap();

        let err = registration("web02").save(&home, false).unwrap_err();
        assert!(err.to_string().contains("`web01` (id 7)"), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
        assert!(Registration::refuse_existing(&home).is_err());
        assert_eq!(Registration::load(&home).unwrap().name, "web01");

        registration("web02").save(&home, true).unwrap();
        assert_eq!(Registration::load(&home).unwrap().name, "web02");
        let mode = fs::metadata(home.registration())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_missing_registration_says_how_to_register() {
        let dir = TempDir::new();
        let err = Registration::load(&Home::new(dir.path())).unwrap_err();
        assert!(matches!(err, RegistrationError::Missing { .. }));
        assert!(err.to_string().contains("capstan-agent register"), "{err}");
    }
}
