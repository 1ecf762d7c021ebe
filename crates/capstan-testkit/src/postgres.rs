//! A private PostgreSQL cluster that a test may stop and start, for outage tests.
//! PostgreSQL refuses to run as root, so as root it runs as the `postgres` user.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use crate::{TempDir, free_port};

pub struct PrivatePostgres {
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect(
                "PostgreSQL server binaries in /usr/lib/postgresql (apt-get install postgresql)",
            )
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = TempDir::new("capstan-pg");
        let _ = Command::new("chown")
            .args(["postgres:", &dir.0.display().to_string()])
            .status();
        let pg = Self {
            port: free_port(),
            dir,
            bin,
        };
        pg.as_postgres(&format!(
            "{}/initdb -D {}/data -U postgres --auth=trust --no-sync > {}/initdb.log 2>&1",
            pg.bin.display(),
            pg.dir.0.display(),
            pg.dir.0.display()
        ));
        pg.resume();
        pg
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        self.as_postgres(&format!(
            "{}/pg_ctl -D {}/data -m fast -w stop",
            self.bin.display(),
            self.dir.0.display()
        ));
    }

    /// Starts the server again on the same port and data.
    pub fn resume(&self) {
        self.as_postgres(&format!(
            "{}/pg_ctl -D {d}/data -l {d}/pg.log -w -o '-c listen_addresses=127.0.0.1 -p {} -k {d} -c fsync=off' start",
            self.bin.display(),
            self.port,
            d = self.dir.0.display()
        ));
    }

    fn as_postgres(&self, script: &str) {
        let running_as_root = std::env::var("USER").map(|u| u == "root").unwrap_or(true);
        let status = if running_as_root {
            Command::new("su")
                .args(["postgres", "-s", "/bin/bash", "-c", script])
                .stdout(Stdio::null())
                .status()
        } else {
            Command::new("bash")
                .args(["-c", script])
                .stdout(Stdio::null())
                .status()
        }
        .expect("running a PostgreSQL command");
        assert!(status.success(), "`{script}` failed");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new("su")
            .args([
                "postgres",
                "-s",
                "/bin/bash",
                "-c",
                &format!(
                    "{}/pg_ctl -D {}/data -m immediate -w stop",
                    self.bin.display(),
                    self.dir.0.display()
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
