//! A private PostgreSQL with `ssl=on`, for the TLS tests: a fresh cluster in a
//! temporary directory on a free loopback port, serving a certificate signed by a
//! CA made here with rcgen. Stopped (and its files removed) when dropped, also when
//! the test panics. Needs the PostgreSQL server binaries (`scripts/deps.sh`); a
//! machine without them fails the test, never skips it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A running private server.
pub(super) struct PrivateServer {
    bin: PathBuf,
    data: PathBuf,
    /// Its port on 127.0.0.1.
    pub(super) port: u16,
    /// PEM of the CA that signed the server's certificate.
    pub(super) ca_pem: String,
    dir: tempfile::TempDir,
}

/// A CA: its certificate (PEM) and what signs with it.
pub(super) fn make_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// The highest installed PostgreSQL's `bin` directory.
fn pg_bin() -> PathBuf {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    bins.sort_by_key(|p| {
        let version = p.parent().and_then(|v| v.file_name());
        version.and_then(|v| v.to_str()?.parse::<u32>().ok())
    });
    bins.pop().expect(
        "no PostgreSQL server binaries under /usr/lib/postgresql (install them with \
         scripts/deps.sh): the TLS tests need a private server",
    )
}

fn is_root() -> bool {
    // /proc/self belongs to the effective user.
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Runs a PostgreSQL tool, as user postgres when we are root (the server refuses
/// to run as root); panics with its output if it fails.
fn run(program: &Path, args: &[&str]) {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = command.args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Gives `path` to user postgres when we are root.
fn give_to_postgres(path: &Path) {
    if is_root() {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "chown postgres {}", path.display());
    }
}

impl PrivateServer {
    /// Makes a CA and a certificate for `127.0.0.1` and `localhost`, then initialises
    /// and starts the server.
    pub(super) fn start() -> PrivateServer {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("mc-pgtls-")
            .tempdir()
            .unwrap();
        give_to_postgres(dir.path());

        let (ca_pem, ca) = make_ca("monitoring test CA");
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let cert_file = dir.path().join("server.crt");
        let key_file = dir.path().join("server.key");
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        // The server refuses a key others can read.
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        give_to_postgres(&cert_file);
        give_to_postgres(&key_file);

        let data = dir.path().join("data");
        let data_arg = data.to_str().unwrap().to_owned();
        run(
            &bin.join("initdb"),
            &[
                "-D",
                &data_arg,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // fsync off: a throwaway cluster, and the shared 2-core CI machine is slow.
        let options = format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}",
            dir = dir.path().display(),
            cert = cert_file.display(),
            key = key_file.display(),
        );
        let log = dir.path().join("server.log");
        let server = PrivateServer {
            bin,
            data,
            port,
            ca_pem,
            dir,
        };
        run(
            &server.bin.join("pg_ctl"),
            &[
                "-D",
                &data_arg,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
        server
    }

    /// The URL of database `postgres` as user postgres, with `options` (`sslmode=...`).
    pub(super) fn url(&self, options: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{options}",
            self.port
        )
    }

    /// Writes `pem` to a file in the server's directory and returns its path.
    pub(super) fn write_file(&self, name: &str, pem: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let Some(data) = self.data.to_str() else {
            return;
        };
        let stopped = std::panic::catch_unwind(|| {
            run(
                &self.bin.join("pg_ctl"),
                &["-D", data, "-m", "immediate", "-w", "stop"],
            )
        });
        if stopped.is_err() {
            eprintln!("could not stop the private PostgreSQL in {data}");
        }
    }
}
